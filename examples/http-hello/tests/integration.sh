#!/bin/sh
# Integration test of http-hello against the real server, which cairn
# started in this sandbox (service `hello`, listening on 127.0.0.1:8080).
# Each check is one <testcase> in $OUT/junit.xml; any failure fails the step.
# (No `wget -T`: Debian's static busybox crashes with it; the step's
# timeout bounds a request that hangs.)
set -u
base=http://127.0.0.1:8080
failed=0
total=0
cases=""

xml() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/"/\&quot;/g'; }

check() { # NAME FUNCTION
    total=$((total + 1))
    if out=$("$2" 2>&1); then
        cases="$cases<testcase classname=\"http-hello\" name=\"$1\"/>"
        echo "ok   $1: $out"
    else
        failed=$((failed + 1))
        msg=$(printf '%s' "$out" | head -n 1 | xml)
        cases="$cases<testcase classname=\"http-hello\" name=\"$1\"><failure message=\"$msg\"/></testcase>"
        echo "FAIL $1: $out"
    fi
}

greets() {
    body=$(wget -q -O - "$base/")
    case $body in
        "hello from http-hello "*) echo "$body" ;;
        *) echo "unexpected greeting: $body"; return 1 ;;
    esac
}

healthy() {
    body=$(wget -q -O - "$base/healthz") && [ "$body" = ok ] || {
        echo "/healthz answered: $body"
        return 1
    }
    echo "$body"
}

unknown_path_is_404() {
    if wget -q -O - "$base/nope" 2>/dev/null; then
        echo "/nope answered 200"
        return 1
    fi
    echo "not found"
}

check greets greets
check healthy healthy
check unknown_path_is_404 unknown_path_is_404
printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="http-hello" tests="%d" failures="%d">%s</testsuite>\n' \
    "$total" "$failed" "$cases" > "$OUT/junit.xml"
[ "$failed" -eq 0 ]

#!/bin/sh
# The example's tests. Each check is one <testcase> in $OUT/junit.xml; the
# step fails (exit 1) when any check fails.
set -u
failed=0
total=0
cases=""

xml() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/"/\&quot;/g'; }

check() { # NAME FUNCTION
    total=$((total + 1))
    if out=$("$2" 2>&1); then
        cases="$cases<testcase classname=\"hello\" name=\"$1\"/>"
        echo "ok   $1"
    else
        failed=$((failed + 1))
        msg=$(printf '%s' "$out" | head -n 1 | xml)
        cases="$cases<testcase classname=\"hello\" name=\"$1\"><failure message=\"$msg\"/></testcase>"
        echo "FAIL $1: $out"
    fi
}

greets() {
    got=$(/app/bin/hello)
    want=$(cat /tests/expected.txt)
    [ "$got" = "$want" ] || { echo "expected \"$want\", got \"$got\""; return 1; }
}

prints_one_line() {
    lines=$(/app/bin/hello | wc -l)
    [ "$lines" -eq 1 ] || { echo "printed $lines lines"; return 1; }
}

check greets greets
check prints_one_line prints_one_line
printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="hello" tests="%d" failures="%d">%s</testsuite>\n' \
    "$total" "$failed" "$cases" > "$OUT/junit.xml"
[ "$failed" -eq 0 ]

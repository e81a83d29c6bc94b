#!/usr/bin/env bash
# What one page of a local store's refs costs a `cairn server`
# (`GET /v1/refs?prefix=P&limit=N&after=NAME`, `RefStore::list_page`)
# against a plain `ls` / `find` of the same directories, in one hyperfine
# call per comparison (warm page cache: a page is what a dashboard or a
# client paging a listing asks for again and again):
#
#   flat     100,000 refs in one directory (`ac/<hex>`): a page of 100 from
#            the middle  vs  `ls` (sorted) and `find -type f` of `refs/ac`,
#            and `cairn ref list ac/` (every name read and sorted, which is
#            what a page cost before it was walked)
#   nested   100,000 refs as 50 sets x 2,000 members
#            (`fleet/s<i>/prod/members/m<j>`): a page of 100 from inside
#            set 25  vs  `find refs/fleet -type f` (what listing them all
#            reads) and `ls` of set 25's directory
#
#   bash bench/refs.sh
#   CAIRN=/path/to/cairn RUNS=20 bash bench/refs.sh
#
# Knobs (environment):
#   CAIRN   cairn binary; default: build it with
#           CARGO_TARGET_DIR=<repo>/target/bench cargo build --release -p cairn-cli
#   WORK    scratch directory (default /var/tmp/cairn-bench-refs); not in the repo
#   RUNS    hyperfine runs per command (default 20)
#
# The refs are written as files in the store's documented layout
# (`refs/<name>`: `v<version>` line, then the value), which is what
# `cairn ref set` leaves, 200,000 times faster. The server is stopped by
# PID on exit; every step is bounded by `timeout`. Results:
# bench/results/refs-*.json (copy them to bench/raw/ to keep them),
# summary on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/var/tmp/cairn-bench-refs}
RUNS=${RUNS:-20}
OUT="$HERE/results"
ONLY=""
DROP=0

NAME=refs.sh
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

for t in hyperfine python3 curl timeout; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
find_cairn
unset CAIRN_STORE CAIRN_TOKEN CAIRN_CA_CERT

mkdir -p "$WORK" "$OUT"
STORE="$WORK/store"
if [[ ! -f $WORK/made ]]; then
    rm -rf "$STORE"
    timeout 60 "$CAIRN" --store "$STORE" ref set --create bench/first "made" >/dev/null
    log "writing 200,000 refs"
    python3 - "$STORE/refs" <<'PY'
import hashlib, os, sys
refs = sys.argv[1]
def put(name):
    path = os.path.join(refs, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("v1\nbench\n")
os.makedirs(os.path.join(refs, "ac"), exist_ok=True)
for i in range(100_000):
    put("ac/" + hashlib.sha256(str(i).encode()).hexdigest())
for s in range(50):
    for m in range(2_000):
        put(f"fleet/s{s:02}/prod/members/m{m:05}")
PY
    touch "$WORK/made"
fi

SERVER_PID=
cleanup() { [[ -n $SERVER_PID ]] && { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }; }
trap cleanup EXIT
outf="$WORK/server.out"
: >"$outf"
timeout 3600 "$CAIRN" server --listen 127.0.0.1:0 --store "$STORE" --anonymous-read >"$outf" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do [[ -s $outf ]] && break; sleep 0.1; done
URL=$(sed -n '1s/^listening on //p' "$outf")
[[ -n $URL ]] || die "cairn server did not start: $(cat "$WORK/server.err")"

MID=$(ls "$STORE/refs/ac" | sort | sed -n 50000p)
FLAT="$URL/v1/refs?prefix=ac/&limit=100&after=ac/$MID"
NESTED="$URL/v1/refs?prefix=fleet/&limit=100&after=fleet/s25/prod/members/m01000"
# The pages must be what they say: 100 names each, in order.
for page in "$FLAT" "$NESTED"; do
    n=$(curl -sf "$page" | python3 -c 'import json,sys; r=json.load(sys.stdin)["refs"]; assert r == sorted(r); print(len(r))')
    [[ $n == 100 ]] || die "a page of $n names from $page"
done

stamp=$(date -u +%Y%m%dT%H%MZ)
log "flat: a page of 100 in 100,000"
hyperfine -N -w 3 -r "$RUNS" --export-json "$OUT/refs-flat-$stamp.json" \
    -n "cairn page (GET /v1/refs, limit 100)" "curl -sf $FLAT -o /dev/null" \
    -n "ls refs/ac" "ls $STORE/refs/ac" \
    -n "find refs/ac -type f" "find $STORE/refs/ac -type f" \
    -n "cairn ref list ac/ (all 100,000)" "$CAIRN --store $STORE ref list ac/"
log "nested: a page of 100 inside 50 x 2,000"
hyperfine -N -w 3 -r "$RUNS" --export-json "$OUT/refs-nested-$stamp.json" \
    -n "cairn page (GET /v1/refs, limit 100)" "curl -sf $NESTED -o /dev/null" \
    -n "find refs/fleet -type f" "find $STORE/refs/fleet -type f" \
    -n "ls refs/fleet/s25/prod/members" "ls $STORE/refs/fleet/s25/prod/members" \
    -n "cairn ref list fleet/ (all 100,000)" "$CAIRN --store $STORE ref list fleet/"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); cairn: $CAIRN"

#!/usr/bin/env bash
# Benchmarks of `cairn server` and `cairn store copy` (issue 5) against the
# tools a user would otherwise use, measured in the same run:
#
#   copy20k  `cairn store copy` of the 20,000-file tree from a local store to
#            a `cairn server` on loopback  vs  `rsync -a` of the same files to
#            a local directory (rsync's local mode: two processes over a pipe,
#            whole-file transfer, no delta); cold page cache, interleaved
#            rounds; then 10 files changed and re-copied: bytes moved
#   delta    100 MiB artifact, 1 MiB changed in the middle: bytes the second
#            `cairn store copy` moves (local store -> local store, and to a
#            server), vs the whole 100 MiB a Nix path or Docker layer moves
#   wrk      GET /cas/<hex> of a 4 KiB blob, `wrk -t2 -c64 -d10s --latency`,
#            vs nginx serving the same file statically
#
#   bash bench/server.sh
#   CAIRN=/path/to/cairn ONLY="wrk" bash bench/server.sh
#
# Knobs (environment):
#   CAIRN   cairn binary; default: build it with
#           CARGO_TARGET_DIR=<repo>/target/bench cargo build --release -p cairn-cli
#   WORK    scratch directory (default /var/tmp/cairn-bench-server); not in the repo
#   TREE    the 20,000-file tree; default: bench/store.sh's (/var/tmp/cairn-bench/data/tree)
#           if present, else generated the same way (same seed) under $WORK
#   ROUNDS  interleaved rounds for copy20k (default 5)
#   ONLY    subset of: copy20k delta wrk
#   DROP    1 (default): drop the page cache before every timed copy (root); 0: sync only
#
# Every process it starts is stopped by PID on exit; every step is bounded by
# `timeout`. Results: bench/results/server-*.{json,txt}, summary on stdout and in
# bench/results/server-summary.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/var/tmp/cairn-bench-server}
ROUNDS=${ROUNDS:-5}
ONLY=${ONLY:-"copy20k delta wrk"}
DROP=${DROP:-1}
OUT="$HERE/results"

NAME=server.sh
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

missing=()
for t in hyperfine wrk nginx rsync python3 curl timeout; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (apt-get install -y hyperfine wrk nginx rsync python3 curl)"
cold_runs
find_cairn
export CAIRN
unset CAIRN_STORE CAIRN_TOKEN CAIRN_CA_CERT

mkdir -p "$WORK" "$OUT"
rm -rf "$WORK/run"
mkdir -p "$WORK/run"
RUN="$WORK/run"

# ---------------------------------------------------------------- processes
PIDFILES=()
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for f in "${PIDFILES[@]}"; do
        [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_server NAME STORE [ARGS…]: a `cairn server` on a free port; sets URL
# and SERVER_PID.
start_server() {
    local name=$1 store=$2; shift 2
    local outf="$RUN/$name.out"
    timeout 3600 "$CAIRN" server --listen 127.0.0.1:0 --store "$store" "$@" >"$outf" 2>"$RUN/$name.err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 100); do
        [[ -s $outf ]] && break
        sleep 0.1
    done
    URL=$(sed -n '1s/^listening on //p' "$outf")
    [[ -n $URL ]] || die "cairn server $name did not start: $(cat "$RUN/$name.err")"
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

metric() { # metric URL TOKEN NAME -> value
    curl -sf -H "Authorization: Bearer $2" "$1/metrics" | awk -v n="$3" '$1 == n {print $2}'
}

machine() {
    echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu:     $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) online)"
    echo "kernel:  $(uname -r)"
    echo "fs:      $(df -hT "$WORK" | awk 'NR==2 {print $2 " on " $1}')"
    echo "load:    $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "cairn:   $CAIRN ($(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD 2>/dev/null || echo ', dirty tree'))"
    echo "tools:   $(hyperfine --version), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(rsync --version | head -1 | cut -d' ' -f1-4)"
}
machine | tee "$OUT/server-machine.txt" >&2

# ---------------------------------------------------------------- data
TREE=${TREE:-}
if [[ -z $TREE ]]; then
    if [[ "$(cat /var/tmp/cairn-bench/data/.version 2>/dev/null)" == 1 ]]; then
        TREE=/var/tmp/cairn-bench/data/tree
    else
        TREE="$WORK/data/tree"
    fi
fi
if [[ ! -d $TREE ]]; then
    log "generating $TREE (bench/store.sh's generator, same seed)"
    tree20k "$TREE"
    sleep 2
fi
TREE_FILES=$(find "$TREE" -type f | wc -l)
TREE_BYTES=$(find "$TREE" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
log "tree: $TREE ($TREE_FILES files, $TREE_BYTES bytes)"

RESULTS="$OUT/server-results.txt"
# Keep the figures of parts not run this time (ONLY=…); drop the rest.
touch "$RESULTS"
for part in $ONLY; do
    case $part in copy20k) pre='copy20k_|changed10_';; delta) pre='delta_';; wrk) pre='wrk_';; *) continue;; esac
    grep -Ev "^($pre)" "$RESULTS" >"$RESULTS.tmp" || true
    mv "$RESULTS.tmp" "$RESULTS"
done
put() { echo "$1=$2" >>"$RESULTS"; }   # key=value for the summary

# ---------------------------------------------------------------- copy20k
if want copy20k; then
    log "copy20k: cairn store copy -> cairn server (loopback) vs rsync -a (local)"
    SRC="$RUN/src-store"
    DST="$RUN/dst-store"
    TOKENS="$RUN/tokens.toml"
    RSYNC_DST="$RUN/rsync-dst"
    rm -f "$OUT"/server-copy20k-round*.json
    ROOT=$(timeout 600 "$CAIRN" --store "$SRC" store add "$TREE")
    TOKEN=$("$CAIRN" server token create bench --scope read --scope write --tokens "$TOKENS" 2>/dev/null)
    PORT=$(free_port)
    SERVER_PIDFILE="$RUN/server.pid"
    PIDFILES+=("$SERVER_PIDFILE")
    # Resets the destination: stop the server, empty its store, start it
    # again on the same port, then sync and drop the page cache.
    cat >"$RUN/reset-server.sh" <<EOF
#!/usr/bin/env bash
set -e
if [[ -f $SERVER_PIDFILE ]]; then
    pid=\$(cat $SERVER_PIDFILE)
    kill \$pid 2>/dev/null || true
    for _ in \$(seq 100); do kill -0 \$pid 2>/dev/null || break; sleep 0.05; done
fi
rm -rf $DST
setsid timeout 3600 $CAIRN server --listen 127.0.0.1:$PORT --store $DST --tokens $TOKENS \
    >$RUN/copy-server.log 2>&1 </dev/null &
echo \$! >$SERVER_PIDFILE
for _ in \$(seq 100); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.05; done
$COLD
EOF
    chmod +x "$RUN/reset-server.sh"
    # setsid makes `timeout` the group leader; its PID is what we kill.
    export CAIRN_TOKEN=$TOKEN
    CAIRN_CMD="timeout 600 $CAIRN --store $SRC store copy $ROOT --to http://127.0.0.1:$PORT"
    RSYNC_CMD="timeout 600 rsync -a $TREE/ $RSYNC_DST/"
    RSYNC_PREP="rm -rf $RSYNC_DST; $COLD"
    for r in $(seq "$ROUNDS"); do
        # Alternate which goes first, so drift in machine load hits both.
        if ((r % 2)); then
            args=(--prepare "$RUN/reset-server.sh" -n cairn "$CAIRN_CMD" --prepare "$RSYNC_PREP" -n rsync "$RSYNC_CMD")
        else
            args=(--prepare "$RSYNC_PREP" -n rsync "$RSYNC_CMD" --prepare "$RUN/reset-server.sh" -n cairn "$CAIRN_CMD")
        fi
        hyperfine --style basic --runs 1 --export-json "$OUT/server-copy20k-round$r.json" "${args[@]}" 2>&1 |
            grep -E 'Time|±' >&2 || true
    done
    # The server from the last reset now holds the whole tree.
    put copy20k_rounds "$ROUNDS"
    put copy20k_load "$(cut -d' ' -f1-3 /proc/loadavg)"

    log "copy20k: change 10 files and copy again"
    TREE2="$RUN/tree2"
    cp -a "$TREE" "$TREE2"
    python3 - "$TREE2" >"$RUN/changed.txt" <<'EOF'
import random, sys, os
rng = random.Random(5)
tree = sys.argv[1]
total = 0
for n in range(10):
    p = f"{tree}/d{rng.randrange(20):02d}/s{rng.randrange(10):02d}/f{rng.randrange(100):03d}.bin"
    size = os.path.getsize(p)
    with open(p, "wb") as f:
        f.write(rng.randbytes(size))
    total += size
print(total)
EOF
    put changed10_file_bytes "$(cat "$RUN/changed.txt")"
    ROOT2=$(timeout 600 "$CAIRN" --store "$SRC" store add "$TREE2")
    base="http://127.0.0.1:$PORT"
    in0=$(metric "$base" "$TOKEN" cairn_http_request_bytes_total)
    out0=$(metric "$base" "$TOKEN" cairn_http_response_bytes_total)
    timeout 600 "$CAIRN" --json --store "$SRC" store copy "$ROOT2" --to "$base" >"$OUT/server-copy10.json"
    in1=$(metric "$base" "$TOKEN" cairn_http_request_bytes_total)
    out1=$(metric "$base" "$TOKEN" cairn_http_response_bytes_total)
    put changed10_request_body_bytes $((in1 - in0))
    put changed10_response_body_bytes $((out1 - out0))
    put changed10_report "$(tr -d '\n ' <"$OUT/server-copy10.json")"
    # rsync of the same change into its (complete) copy, for comparison.
    rsync -a --stats "$TREE2/" "$RSYNC_DST/" >"$RUN/rsync-stats.txt"
    put changed10_rsync_sent "$(awk -F': ' '/^Total bytes sent/ {gsub(",","",$2); print $2}' "$RUN/rsync-stats.txt")"
    put changed10_rsync_literal "$(awk -F': ' '/^Literal data/ {gsub(",","",$2); sub(/ bytes/,"",$2); print $2}' "$RUN/rsync-stats.txt")"
    unset CAIRN_TOKEN
    kill "$(cat "$SERVER_PIDFILE")" 2>/dev/null || true
    rm -rf "$TREE2" "$RSYNC_DST" "$DST"
fi

# ---------------------------------------------------------------- delta
if want delta; then
    log "delta: 100 MiB artifact, 1 MiB changed in the middle"
    python3 - "$RUN/v1.bin" "$RUN/v2.bin" <<'EOF'
import random, sys
rng = random.Random(3)
data = bytearray(rng.randbytes(100 << 20))
open(sys.argv[1], "wb").write(data)
mid = 50 << 20
data[mid:mid + (1 << 20)] = rng.randbytes(1 << 20)
open(sys.argv[2], "wb").write(data)
EOF
    A="$RUN/delta-a"; B="$RUN/delta-b"; C="$RUN/delta-c"
    D1=$(timeout 600 "$CAIRN" --store "$A" store add "$RUN/v1.bin")
    D2=$(timeout 600 "$CAIRN" --store "$A" store add "$RUN/v2.bin")
    timeout 600 "$CAIRN" --json --store "$A" store copy "$D1" --kind blob --to "$B" >"$OUT/server-delta-v1.json"
    timeout 600 "$CAIRN" --json --store "$A" store copy "$D2" --kind blob --to "$B" >"$OUT/server-delta-v2.json"
    put delta_v1_report "$(tr -d '\n ' <"$OUT/server-delta-v1.json")"
    put delta_v2_report "$(tr -d '\n ' <"$OUT/server-delta-v2.json")"
    # The same through a server: request body bytes for the second version.
    TOKENS="$RUN/delta-tokens.toml"
    # read + write is all a copy needs: blobs, the `chunks/<hex>` ref (the
    # chunk list) and the server-side assembly of the file from its chunks.
    TOKEN=$("$CAIRN" server token create bench --scope read --scope write --tokens "$TOKENS" 2>/dev/null)
    start_server delta "$C" --tokens "$TOKENS"
    export CAIRN_TOKEN=$TOKEN
    timeout 600 "$CAIRN" --store "$A" store copy "$D1" --kind blob --to "$URL" >/dev/null
    in0=$(metric "$URL" "$TOKEN" cairn_http_request_bytes_total)
    timeout 600 "$CAIRN" --json --store "$A" store copy "$D2" --kind blob --to "$URL" >"$OUT/server-delta-v2-http.json"
    in1=$(metric "$URL" "$TOKEN" cairn_http_request_bytes_total)
    unset CAIRN_TOKEN
    put delta_v2_http_report "$(tr -d '\n ' <"$OUT/server-delta-v2-http.json")"
    put delta_v2_http_request_body_bytes $((in1 - in0))
    stop_pid "$SERVER_PID"
    rm -rf "$A" "$B" "$C" "$RUN/v1.bin" "$RUN/v2.bin"
fi

# ---------------------------------------------------------------- wrk
if want wrk; then
    log "wrk: GET /cas/<hex> of a 4 KiB blob, cairn server vs nginx"
    S="$RUN/wrk-store"
    head -c 4096 /dev/urandom >"$RUN/blob4k"
    HEX=$(sha256sum "$RUN/blob4k" | cut -d' ' -f1)
    timeout 60 "$CAIRN" --store "$S" store add "$RUN/blob4k" >/dev/null
    NG="$RUN/nginx"
    mkdir -p "$NG/www/cas" "$NG/tmp"
    cp "$RUN/blob4k" "$NG/www/cas/$HEX"
    chmod -R a+rX "$WORK"
    NPORT=$(free_port)
    cat >"$NG/nginx.conf" <<EOF
worker_processes auto;
pid $NG/nginx.pid;
error_log $NG/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $NG/tmp;
    proxy_temp_path $NG/tmp;
    fastcgi_temp_path $NG/tmp;
    uwsgi_temp_path $NG/tmp;
    scgi_temp_path $NG/tmp;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$NPORT;
        root $NG/www;
    }
}
EOF
    wrkrun() { # wrkrun NAME URL [wrk args…]
        local name=$1 url=$2; shift 2
        curl -sf "$@" -o "$RUN/check.bin" "${url}" || die "$name: GET $url failed"
        cmp -s "$RUN/check.bin" "$RUN/blob4k" || die "$name: GET $url returned other bytes"
        timeout 60 wrk -t2 -c64 -d10s --latency "$@" "$url" >"$OUT/server-wrk-$name.txt" 2>&1
        local rps p99
        rps=$(awk '/^Requests\/sec/ {print $2}' "$OUT/server-wrk-$name.txt")
        p99=$(awk '$1 == "99%" {print $2}' "$OUT/server-wrk-$name.txt")
        put "wrk_${name}_rps" "$rps"
        put "wrk_${name}_p99" "$p99"
        put "wrk_${name}_load" "$(cut -d' ' -f1-3 /proc/loadavg)"
        printf '%s: %s req/s, p99 %s\n' "$name" "$rps" "$p99" >&2
    }
    timeout 3600 nginx -p "$NG" -c "$NG/nginx.conf" -g 'daemon off;' &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$NPORT/cas/$HEX" && break; sleep 0.05; done
    wrkrun nginx "http://127.0.0.1:$NPORT/cas/$HEX"
    stop_pid "$NGINX_PID"

    start_server wrk-anon "$S" --anonymous-read
    wrkrun cairn_anon "$URL/cas/$HEX"
    stop_pid "$SERVER_PID"

    TOKENS="$RUN/wrk-tokens.toml"
    TOKEN=$("$CAIRN" server token create bench --scope read --tokens "$TOKENS" 2>/dev/null)
    start_server wrk-token "$S" --tokens "$TOKENS"
    wrkrun cairn_token "$URL/cas/$HEX" -H "Authorization: Bearer $TOKEN"
    stop_pid "$SERVER_PID"

    # A second nginx run after cairn's, to see the machine's drift.
    timeout 3600 nginx -p "$NG" -c "$NG/nginx.conf" -g 'daemon off;' &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$NPORT/cas/$HEX" && break; sleep 0.05; done
    wrkrun nginx2 "http://127.0.0.1:$NPORT/cas/$HEX"
    stop_pid "$NGINX_PID"
fi

# ---------------------------------------------------------------- summary
python3 - "$OUT" "$RESULTS" "$TREE_FILES" "$TREE_BYTES" <<'EOF' | tee "$OUT/server-summary.md"
import glob, json, statistics, sys, os
out, results, files, tbytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = dict(l.rstrip("\n").split("=", 1) for l in open(results) if "=" in l)
def ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit) and not (unit == "s" and v.endswith(("ms", "us"))):
            return float(v[: -len(unit)]) * f
    return float("nan")
print("| benchmark | cairn | anchor | cairn ÷ anchor | target |")
print("|---|---|---|---|---|")
if "copy20k_rounds" in r:
    times = {"cairn": [], "rsync": []}
    for f in sorted(glob.glob(f"{out}/server-copy20k-round*.json")):
        for res in json.load(open(f))["results"]:
            times[res["command"]].append(res["median"])
    c, s = statistics.median(times["cairn"]), statistics.median(times["rsync"])
    ratio = c / s
    print(f"| copy 20k files, cold, median of {len(times['cairn'])} interleaved rounds (s) | {c:.3f} ({min(times['cairn']):.3f}–{max(times['cairn']):.3f}) | rsync -a local {s:.3f} ({min(times['rsync']):.3f}–{max(times['rsync']):.3f}) | {ratio:.2f}× | ≤ 1.5× {'met' if ratio <= 1.5 else 'NOT met'} |")
if "changed10_report" in r:
    rep = json.loads(r["changed10_report"])
    fb = int(r["changed10_file_bytes"])
    tree_bytes = rep["bytes_copied"] - fb
    print(f"| re-copy after 10 files changed: bytes | report {rep['bytes_copied']:,} B in {rep['blobs_copied']} blobs of {rep['blobs_total']:,}; server request bodies {int(r['changed10_request_body_bytes']):,} B, responses {int(r['changed10_response_body_bytes']):,} B | 10 files {fb:,} B + {rep['blobs_copied'] - 10} tree nodes {tree_bytes:,} B; rsync -a sent {int(r['changed10_rsync_sent']):,} B | request bodies ÷ (files + nodes) = {int(r['changed10_request_body_bytes']) / rep['bytes_copied']:.3f} | only what changed |")
if "delta_v2_report" in r:
    v1 = json.loads(r["delta_v1_report"]); v2 = json.loads(r["delta_v2_report"])
    full = 100 << 20
    print(f"| 100 MiB artifact, 1 MiB changed: bytes for the new version, local→local | {v2['bytes_copied']:,} B ({v2['blobs_copied']} of {v2['blobs_total']} blobs, {v2.get('chunks_reused','?')} of {v2.get('chunks_total','?')} chunks reused) | whole artifact {full:,} B (Nix path / Docker layer) | {v2['bytes_copied'] / full:.4f} ({full / v2['bytes_copied']:.0f}× less) | ≤ 3 MiB {'met' if v2['bytes_copied'] <= 3 << 20 else 'NOT met'} |")
if "delta_v2_http_report" in r:
    full = 100 << 20
    http = int(r["delta_v2_http_request_body_bytes"])
    hrep = json.loads(r["delta_v2_http_report"])
    print(f"| same, local→server: request body bytes the server received | {http:,} B (report {hrep['bytes_copied']:,} B, {hrep.get('chunks_reused','?')} of {hrep.get('chunks_total','?')} chunks reused) | whole artifact {full:,} B | {http / full:.4f} ({full / max(http, 1):.0f}× less) | ≤ 3 MiB {'met' if http <= 3 << 20 else 'NOT met'} |")
if "wrk_nginx_rps" in r:
    for name in ("cairn_anon", "cairn_token"):
        if f"wrk_{name}_rps" not in r: continue
        c, n = float(r[f"wrk_{name}_rps"]), float(r["wrk_nginx_rps"])
        n2 = float(r.get("wrk_nginx2_rps", n))
        cp, np_ = ms(r[f"wrk_{name}_p99"]), ms(r["wrk_nginx_p99"])
        label = "anonymous read" if name == "cairn_anon" else "bearer token"
        print(f"| GET /cas 4 KiB, wrk -t2 -c64 -d10s, {label}: req/s | {c:,.0f} | nginx {n:,.0f} (rerun after: {n2:,.0f}) | {c / n:.2f}× | |")
        print(f"| same, p99 latency (ms) | {cp:.2f} | nginx {np_:.2f} | {cp / np_:.2f}× | |")
EOF
echo >&2
log "done; raw results in $OUT/server-*"

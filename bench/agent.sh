#!/usr/bin/env bash
# Benchmarks of `cairn agent` (issue 10), on one machine:
#
#   latency  from `cairn promote` to the new version answering, with a store
#            that pushes: a local store (inotify) and a `cairn server` (SSE);
#            the agent's own timestamps give the breakdown (noticed,
#            verified, fetched, materialized, started, healthy, old stopped)
#   swaps    20 consecutive swaps of examples/http-hello under load (4
#            clients on loopback, half keep-alive): failed requests, requests
#            served, latency percentiles during swaps vs steady state
#   bytes    a release that changes one file of a 100-file artifact: bytes
#            the agent fetches for it vs for the whole artifact
#
#   bash bench/agent.sh
#   CAIRN=/path/to/cairn ONLY="swaps" bash bench/agent.sh
#
# Knobs (environment):
#   CAIRN   cairn binary; default: build it with
#           CARGO_TARGET_DIR=<repo>/target/bench
#   DRIVER  the load and timing driver (the agent_bench example of
#           cairn-cli); default: build it the same way
#   WORK    scratch directory (default /var/tmp/cairn-bench-agent); not in the repo
#   RUNS    promotions timed per store in `latency` (default 5)
#   SWAPS   swaps in `swaps` (default 20)
#   ONLY    subset of: latency swaps bytes
#
# Needs root (the sandbox), gcc and libc6-dev (the service's toolchain),
# busybox-static (the 100-file artifact's build). Every process it starts
# is stopped by PID on exit. Results: bench/results/agent-*.json, summary on
# stdout and in bench/results/agent-summary.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/var/tmp/cairn-bench-agent}
RUNS=${RUNS:-5}
SWAPS=${SWAPS:-20}
ONLY=${ONLY:-"latency swaps bytes"}
OUT="$HERE/results"

NAME=agent.sh
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

for t in python3 gcc timeout; do
    command -v "$t" >/dev/null 2>&1 || die "missing $t (apt-get install -y python3 gcc libc6-dev)"
done
[[ -x /bin/busybox ]] || die "missing /bin/busybox (apt-get install -y busybox-static)"
find_cairn
if [[ -z ${DRIVER:-} ]]; then
    log "building the driver (agent_bench example)"
    (cd "$REPO" && CARGO_TARGET_DIR="$REPO/target/bench" cargo build --release -q -p cairn-cli --example agent_bench)
    DRIVER="$REPO/target/bench/release/examples/agent_bench"
fi
[[ -x $DRIVER ]] || die "DRIVER=$DRIVER is not executable"
unset CAIRN_STORE CAIRN_TOKEN CAIRN_KEYS

rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
STORE="$WORK/store"
KEYS="$WORK/keys"
c() { "$CAIRN" --store "$STORE" --keys "$KEYS" "$@"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

log "releases of examples/http-hello (built in the sandbox)"
mkdir -p "$WORK/src"
cp -r "$REPO/examples/c-hello" "$REPO/examples/http-hello" "$WORK/src/"
rm -rf "$WORK"/src/*/toolchain
(cd "$WORK/src/http-hello" && CAIRN=$CAIRN CAIRN_STORE=$STORE ./make-toolchain.sh >/dev/null)
c key generate ci >/dev/null
PUBLIC=$(c key export ci)
declare -A REL
for v in $(seq 1 $((2 * RUNS + 2))); do
    printf '#define VERSION "%s"\n' "$v" >"$WORK/src/http-hello/src/version.h"
    REL[$v]=$(cd "$WORK/src/http-hello" && c release --key ci --version "$v" 2>/dev/null)
done

# agent NAME STORE_URL [TOKEN]: starts an agent on channel NAME; sets
# HTTP and STATUS (its addresses).
agent() {
    local name=$1 url=$2 token=${3:-}
    HTTP="127.0.0.1:$(port)"
    STATUS="127.0.0.1:$(port)"
    {
        echo "store = \"$url\""
        [[ -n $token ]] && echo "token = \"$token\""
        cat <<EOF
service = "http-hello"
channel = "$name"
set = "$name"
id = "bench"
state_dir = "$WORK/agent-$name"
poll_interval = "2s"
status_listen = "$STATUS"

[trust]
keys = ["$PUBLIC"]
threshold = 1

[sockets]
http = "$HTTP"
EOF
    } >"$WORK/agent-$name.toml"
    "$CAIRN" agent --config "$WORK/agent-$name.toml" 2>"$WORK/agent-$name.log" &
    pids+=($!)
}

# serve VERSION NAME: promotes release VERSION on NAME and waits until it answers.
serve() {
    c promote "${REL[$1]}" --channel "$2" --key ci >/dev/null
    for _ in $(seq 600); do
        curl_body=$(python3 - "$HTTP" <<'PY' 2>/dev/null || true
import socket, sys
h, p = sys.argv[1].split(":")
s = socket.create_connection((h, int(p)), timeout=2)
s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
print(s.makefile("rb").read().decode().split("\r\n\r\n", 1)[1])
PY
)
        [[ $curl_body == *"http-hello $1 "* ]] && return 0
        sleep 0.1
    done
    die "version $1 never answered on channel $2"
}

releases() { # FIRST LAST: VERSION=DIGEST,… for versions FIRST..LAST
    local out=() v
    for v in $(seq "$1" "$2"); do out+=("$v=${REL[$v]}"); done
    (IFS=,; echo "${out[*]}")
}

drive() { # MODE OUT NAME ARGS…: runs the driver against the agent just started
    local mode=$1 out=$2 name=$3; shift 3
    timeout 1200 "$DRIVER" "$mode" --cairn "$CAIRN" --store "$STORE" --keys "$KEYS" \
        --channel "$name" --http "$HTTP" --status "$STATUS" --out "$out" "$@" >/dev/null
}

if want latency; then
    log "latency: local store (inotify)"
    agent lat-local "$STORE"
    serve 1 lat-local
    drive latency "$OUT/agent-latency-local.json" lat-local --releases "$(releases 2 $((RUNS + 1)))"

    log "latency: cairn server (SSE)"
    token=$(c server token create bench-agent --scope read --scope fleet:http-hello)
    sport=$(port)
    "$CAIRN" server --listen "127.0.0.1:$sport" --store "$STORE" >/dev/null &
    pids+=($!)
    sleep 1
    agent lat-http "http://127.0.0.1:$sport" "$token"
    serve 1 lat-http
    drive latency "$OUT/agent-latency-http.json" lat-http --releases "$(releases $((RUNS + 2)) $((2 * RUNS + 1)))"
fi

if want swaps; then
    log "swaps: $SWAPS under load"
    agent swaps "$STORE"
    serve 1 swaps
    drive swaps "$OUT/agent-swaps.json" swaps --releases "$(releases 1 2)" --count "$SWAPS" --threads 4
fi

if want bytes; then
    log "bytes: one file changed in a 100-file artifact"
    proj="$WORK/files100"
    mkdir -p "$proj/data"
    cp "$REPO/examples/busybox-hello/make-rootfs.sh" "$proj/"
    (cd "$proj" && CAIRN=$CAIRN CAIRN_STORE=$STORE ./make-rootfs.sh >/dev/null)
    files100 "$proj/data" 10 65536 65536
    cat >"$proj/cairn.toml" <<'EOF'
[service]
name = "files100"
[inputs.rootfs]
path = "rootfs"
[inputs.data]
path = "data"
[steps.build]
mounts = { "/" = "rootfs", "/data" = "data" }
env = { PATH = "/bin" }
run = ["/bin/sh", "-euc", "cp -r /data/. $OUT/"]
[release]
step = "build"
[release.run]
command = ["/bin/sleep", "1000000"]
stop = { grace = "1s" }
EOF
    a=$(cd "$proj" && c release --key ci --version a 2>/dev/null)
    python3 -c 'import random,sys; open(sys.argv[1],"wb").write(random.Random(11).randbytes(64<<10))' "$proj/data/f050.bin"
    b=$(cd "$proj" && c release --key ci --version b 2>/dev/null)
    bstatus="127.0.0.1:$(port)"
    cat >"$WORK/agent-bytes.toml" <<EOF
store = "$STORE"
service = "files100"
channel = "bytes"
set = "bytes"
id = "bench"
state_dir = "$WORK/agent-bytes"
status_listen = "$bstatus"

[trust]
keys = ["$PUBLIC"]
threshold = 1
EOF
    "$CAIRN" agent --config "$WORK/agent-bytes.toml" 2>"$WORK/agent-bytes.log" &
    pids+=($!)
    fetched() { # RELEASE: waits for the update to it, prints its fetched_bytes
        python3 - "$bstatus" "$1" <<'PY'
import json, socket, sys, time
h, p = sys.argv[1].split(":")
want = sys.argv[2].split("/")[0]
for _ in range(600):
    try:
        s = socket.create_connection((h, int(p)), timeout=2)
        s.sendall(b"GET /status HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        st = json.loads(s.makefile("rb").read().decode().split("\r\n\r\n", 1)[1])
        u = st.get("last_update") or {}
        if (u.get("release") or {}).get("hash") == want and u.get("outcome"):
            print(u["fetched_bytes"], u["fetched_blobs"]); sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("no update to " + want)
PY
    }
    c promote "$a" --channel bytes --key ci >/dev/null
    read -r whole whole_blobs < <(fetched "$a")
    c promote "$b" --channel bytes --key ci >/dev/null
    read -r delta delta_blobs < <(fetched "$b")
    python3 - "$OUT/agent-bytes.json" "$whole" "$whole_blobs" "$delta" "$delta_blobs" <<'PY'
import json, sys
out, whole, wb, delta, db = sys.argv[1], *map(int, sys.argv[2:])
r = {"files": 100, "file_bytes": 65536, "whole_fetch_bytes": whole, "whole_fetch_blobs": wb,
     "one_file_changed_fetch_bytes": delta, "one_file_changed_fetch_blobs": db,
     "ratio": round(delta / whole, 4)}
json.dump(r, open(out, "w"), indent=2)
print(json.dumps(r, indent=2))
PY
fi

python3 - "$OUT" <<'PY' | tee "$OUT/agent-summary.md"
import json, os, statistics, sys
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
for kind in ("local", "http"):
    d = load(f"agent-latency-{kind}.json")
    if not d:
        continue
    print(f"\n### promote -> answering, {kind} store ({len(d['runs'])} runs, ms from the start of `cairn promote`, median [min-max])\n")
    print("| step | median | min-max |\n|---|---|---|")
    for k in ("promote_command", "noticed", "verified", "fetched", "materialized", "started",
              "answering", "healthy", "old_stopped", "done", "service_start_and_health"):
        xs = [r[k] for r in d["runs"] if r.get(k) is not None]
        if xs:
            print(f"| {k} | {statistics.median(xs):.0f} | {min(xs)}-{max(xs)} |")
s = load("agent-swaps.json")
if s:
    print(f"\n### {s['swaps']} swaps under load ({s['threads']} clients, {s['seconds']:.1f} s, {s['seconds_in_swaps']:.1f} s of it swapping)\n")
    print(f"requests {s['requests']}, failed {s['failed']} {s['errors'] or ''}\n")
    print("| | requests | failed | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |\n|---|---|---|---|---|---|---|---|")
    for k in ("steady", "during_swaps"):
        v = s[k]
        print(f"| {k} | {v['requests']} | {v['failed']} | {v['p50_us']} | {v['p90_us']} | {v['p99_us']} | {v['p999_us']} | {v['max_us']} |")
b = load("agent-bytes.json")
if b:
    print(f"\n### bytes fetched, one file of {b['files']} changed\n")
    print(f"whole artifact {b['whole_fetch_bytes']} bytes ({b['whole_fetch_blobs']} blobs); "
          f"one file changed {b['one_file_changed_fetch_bytes']} bytes ({b['one_file_changed_fetch_blobs']} blobs); ratio {b['ratio']}")
PY

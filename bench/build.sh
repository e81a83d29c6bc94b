#!/usr/bin/env bash
# Benchmarks of `cairn build` (issue: hermetic, cached, reproducible builds).
#
#   bash bench/build.sh                       # everything (~5 minutes after the build)
#   CAIRN=/path/to/cairn bash bench/build.sh
#   ONLY="cached sandbox setup" RUNS=10 bash bench/build.sh
#
# Comparisons (one hyperfine call each, so both sides run under the same load):
#   cached   fully cached `cairn build` of a recipe whose source is a 20,000-file
#            tree  vs  `git status` on that tree (a git repo with it committed).
#            Target: <= 1.5x (issue 9).
#   sandbox  `cairn build --no-cache` of a step running /bin/true in a busybox
#            root  vs  `bwrap --unshare-all --ro-bind ROOTFS / --dev /dev --proc
#            /proc --tmpfs /tmp true`. Target: <= 1.5x (issue 12; it was 2x).
#            The whole command includes recipe parsing, snapshots and action
#            compilation; the sandbox-only time (`--json` "seconds") and the
#            medians of the sandbox's own phases (`cairn -vv`, "sandbox
#            timing") are reported next to it.
#   setup    the same /bin/true step with a 1 GiB tree mounted (already
#            materialized) vs a 1 MiB tree. Target: within 20%.
#
# Knobs: CAIRN (default: build with CARGO_TARGET_DIR=<repo>/target/bench),
# CAIRN_BASE (an older binary: "cached" then measures it too, in the same
# hyperfine call, before and after a change), WORK (default
# /var/tmp/cairn-bench-build, not inside the repo), RUNS (20).
# Results: bench/results/build-*.json and bench/results/build-summary.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/var/tmp/cairn-bench-build}
RUNS=${RUNS:-20}
ONLY=${ONLY:-"cached sandbox setup"}
OUT="$HERE/results"
NAME=build.sh
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

for t in hyperfine git bwrap python3 /bin/busybox; do
    command -v "$t" >/dev/null 2>&1 || die "missing $t: apt-get install -y hyperfine git bubblewrap python3 busybox-static"
done
find_cairn
mkdir -p "$WORK" "$OUT"
STORE="$WORK/store"
export CAIRN_STORE="$STORE"

# ---------------------------------------------------------------- fixtures
rootfs() { # DIR: busybox + applet symlinks
    [[ -x "$1/bin/busybox" ]] && return
    mkdir -p "$1/bin"; cp /bin/busybox "$1/bin/busybox"
    for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -s busybox "$1/bin/$a"; done
}
project() { # DIR MOUNTS RUN: a one-step recipe with a busybox root
    mkdir -p "$1"; rootfs "$1/rootfs"
    cat >"$1/cairn.toml" <<TOML
[service]
name = "bench"
[inputs.rootfs]
path = "rootfs"
${4:-}
[steps.s]
mounts = { "/" = "rootfs"$2 }
env = { PATH = "/bin" }
run = $3
TOML
}
source_tree() { # DIR: the 20,000-file tree (bench/common.sh), once
    [[ -f "$1/.done" ]] && return
    rm -rf "$1"
    tree20k "$1"
    touch "$1/.done"; sleep 2   # old enough not to be "racily clean"
}
bigtree() { # DIR MIB: files of 16 MiB (or 1 MiB) adding up to MIB
    [[ -f "$1/.done" ]] && return
    rm -rf "$1"; mkdir -p "$1"
    python3 - "$1" "$2" <<'PY'
import random, sys
d, mib = sys.argv[1], int(sys.argv[2])
rng, chunk = random.Random(3), min(16, mib)
for i in range(mib // chunk):
    open(f"{d}/f{i:03d}.bin", "wb").write(rng.randbytes(chunk << 20))
PY
    touch "$1/.done"
}
hf() { # NAME ARGS...: hyperfine with our defaults, exported
    local name=$1; shift
    hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$OUT/build-$name.json" "$@"
}

# ---------------------------------------------------------------- cached
if want cached; then
    P="$WORK/cached"
    source_tree "$P/src"
    project "$P" ', "/src" = "src"' '["/bin/sh", "-c", "ls /src | wc -l > $OUT/count"]' \
        $'[inputs.src]\npath = "src"\nexclude = [".git"]'
    if [[ ! -d "$P/src/.git" ]]; then
        git -C "$P/src" init -q && git -C "$P/src" add -A &&
            git -C "$P/src" -c user.name=b -c user.email=b@b commit -qm tree
    fi
    "$CAIRN" build -C "$P" >/dev/null
    log "cached: cairn build (20k-file source, cache hit) vs git status"
    base=()
    if [[ -n ${CAIRN_BASE:-} ]]; then
        "$CAIRN_BASE" build -C "$P" >/dev/null
        base=("$CAIRN_BASE build -C $P")
    fi
    hf cached "$CAIRN build -C $P" "${base[@]}" "git -C $P/src status --porcelain"
fi

# ---------------------------------------------------------------- sandbox
if want sandbox; then
    P="$WORK/sandbox"
    project "$P" "" '["/bin/true"]'
    "$CAIRN" build -C "$P" --no-cache >/dev/null
    # bwrap needs mount points in its (read-only) root; cairn's sandbox does not.
    [[ -d "$P/bwrap-root" ]] || { cp -a "$P/rootfs" "$P/bwrap-root" && mkdir "$P/bwrap-root"/{dev,proc,tmp}; }
    log "sandbox: cairn build --no-cache (/bin/true) vs bwrap"
    hf sandbox "$CAIRN build -C $P --no-cache" \
        "bwrap --unshare-all --ro-bind $P/bwrap-root / --dev /dev --proc /proc --tmpfs /tmp true"
    for i in $(seq 10); do "$CAIRN" --json build -C "$P" --no-cache; done |
        python3 -c 'import json,sys,statistics as s; d=json.loads("["+sys.stdin.read().replace("]\n[","],[")+"]"); print("sandbox-only median (--json seconds): %.4f s" % s.median(x[0]["seconds"] for x in d))' |
        tee "$OUT/build-sandbox-only.txt"
    for i in $(seq 20); do "$CAIRN" -vv build -C "$P" --no-cache 2>&1 >/dev/null | grep 'sandbox timing'; done |
        python3 -c '
import re, statistics, sys
laps = {}
for line in sys.stdin:
    for name, us in re.findall(r"([a-z][a-z ()]+?) (\d+) µs", line.split("phases=")[1]):
        laps.setdefault(name.strip(), []).append(int(us))
for name, v in laps.items():
    print("%7.0f us  %s (median of %d)" % (statistics.median(v), name, len(v)))' |
        tee "$OUT/build-sandbox-phases.txt"
fi

# ---------------------------------------------------------------- setup
if want setup; then
    for size in 1 1024; do
        P="$WORK/setup-$size"
        bigtree "$P/tc" "$size"
        project "$P" ', "/opt/tc" = "tc"' '["/bin/true"]' $'[inputs.tc]\npath = "tc"'
        "$CAIRN" build -C "$P" --no-cache >/dev/null   # materializes the trees once
    done
    log "setup: /bin/true with a 1 GiB tree vs a 1 MiB tree mounted"
    hf setup "$CAIRN build -C $WORK/setup-1024 --no-cache" "$CAIRN build -C $WORK/setup-1 --no-cache"
fi

# ---------------------------------------------------------------- summary
python3 - "$OUT" <<'PY' | tee "$OUT/build-summary.md"
import json, os, sys
out = sys.argv[1]
load = open("/proc/loadavg").read().split()[:3]
print(f"load average at the end: {' '.join(load)}\n")
print("| comparison | cairn median | baseline median | ratio | target |")
print("|---|---|---|---|---|")
for name, target in [("cached", "<= 1.5x"), ("sandbox", "<= 1.5x"), ("setup", "<= 1.2x")]:
    p = f"{out}/build-{name}.json"
    if not os.path.exists(p):
        continue
    r = json.load(open(p))["results"]
    a, b = r[0], r[-1]  # cairn, the baseline (an older cairn may sit between)
    print(f"| {name} | {a['median']*1000:.1f} ms | {b['median']*1000:.1f} ms | {a['median']/b['median']:.2f}x | {target} |")
PY

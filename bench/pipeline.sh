#!/usr/bin/env bash
# Benchmarks of whole pipelines (issue 15).
#
#   bash bench/pipeline.sh
#   CAIRN=/path/to/cairn RUNS=5 bash bench/pipeline.sh
#
# One recipe of 6 independent steps, each a CPU-bound busybox loop of about
# the same length, in a busybox root:
#   parallel  `cairn build --all --no-cache --jobs 1` (the steps one after
#             the other: the sum of the step times) vs `--jobs 2`.
#             Target: jobs 2 within 1.2 x (jobs-1 time / 2) on 2 cores.
#   cached    `cairn build --all` with everything cached vs `git status` on
#             the same source tree (a git repo with it committed).
#             Target: <= 2x.
#   slots     where `--jobs 2` loses time: RUNS runs each of `--jobs 1` and
#             `--jobs 2` (`--json`), and per step the time a slot spends
#             outside a sandbox, (jobs x wall - sum of step seconds) / 6,
#             which the machine's load inflates far less than the ratio.
#             With CAIRN_BASE=old/cairn, the same for that binary, runs
#             alternated.
#
# Knobs: CAIRN (default: build with CARGO_TARGET_DIR=<repo>/target/bench),
# WORK (default /var/tmp/cairn-bench-pipeline, not inside the repo), RUNS (5),
# LOOP (iterations of each step's loop, default 3000000).
# Results: bench/results/pipeline-*.json and a summary on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/var/tmp/cairn-bench-pipeline}
RUNS=${RUNS:-5}
LOOP=${LOOP:-3000000}
ONLY=${ONLY:-"parallel cached slots"}
OUT="$HERE/results"
NAME=pipeline.sh
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

for t in hyperfine git python3 /bin/busybox; do
    command -v "$t" >/dev/null 2>&1 || die "missing $t: apt-get install -y hyperfine git python3 busybox-static"
done
find_cairn
rm -rf "$WORK"
mkdir -p "$WORK/proj" "$OUT"
STORE="$WORK/store"
PROJ="$WORK/proj"
cp "$REPO/examples/busybox-hello/make-rootfs.sh" "$WORK/"
CAIRN="$CAIRN" CAIRN_STORE="$STORE" sh "$WORK/make-rootfs.sh" >/dev/null
mv "$WORK/rootfs" "$PROJ/rootfs"
mkdir -p "$PROJ/src"
echo source > "$PROJ/src/input.txt"
{
    printf '[service]\nname = "bench"\n[inputs.rootfs]\npath = "rootfs"\n[inputs.src]\npath = "src"\n'
    for i in 1 2 3 4 5 6; do
        printf '[steps.s%d]\nmounts = { "/" = "rootfs", "/src" = "src" }\nenv = { PATH = "/bin" }\n' "$i"
        printf 'run = ["/bin/sh", "-c", "i=0; while [ $i -lt %d ]; do i=$((i+1)); done; echo %d > /out/n"]\n' "$LOOP" "$i"
    done
} > "$PROJ/cairn.toml"
(cd "$PROJ" && git init -q && git add -A && git -c user.name=b -c user.email=b@b commit -qm bench)
c() { echo "$CAIRN --store $STORE build -C $PROJ --all $*"; }

if want parallel; then
    log "parallel: 6 independent steps, --jobs 1 vs --jobs 2"
    hyperfine -N --runs "$RUNS" --export-json "$OUT/pipeline-parallel.json" \
        "$(c --no-cache --jobs 1)" "$(c --no-cache --jobs 2)"
fi
if want cached; then
    log "cached: a pipeline with nothing to do vs git status"
    $CAIRN --store "$STORE" build -C "$PROJ" --all >/dev/null 2>&1
    hyperfine -N --warmup 2 --runs "$((RUNS * 4))" --export-json "$OUT/pipeline-cached.json" \
        "$(c)" "git -C $PROJ status --porcelain"
fi
if want slots; then
    log "slots: time a --jobs slot spends outside a sandbox"
    python3 - "$OUT/pipeline-slots.json" "$RUNS" "$STORE" "$PROJ" "$CAIRN" ${CAIRN_BASE:+"$(realpath "$CAIRN_BASE")"} <<'PY'
import json, statistics as st, subprocess, sys, time
out, runs, store, proj, *bins = sys.argv[1:]
rows = []
for _ in range(int(runs)):
    for b in bins:
        for jobs in (1, 2):
            t = time.monotonic()
            r = subprocess.run([b, "--store", store, "--json", "build", "-C", proj, "--all",
                                "--no-cache", "--jobs", str(jobs)], capture_output=True, check=True)
            wall = time.monotonic() - t
            steps = json.loads(r.stdout)
            rows.append({"binary": b, "jobs": jobs, "wall": wall, "steps": len(steps),
                         "sum_steps": sum(s["seconds"] for s in steps),
                         "load1": float(open("/proc/loadavg").read().split()[0])})
json.dump(rows, open(out, "w"), indent=1)
for b in bins:
    mine = [r for r in rows if r["binary"] == b]
    med = lambda j: st.median(r["wall"] for r in mine if r["jobs"] == j)
    idle = lambda j: st.median((j * r["wall"] - r["sum_steps"]) / r["steps"] for r in mine if r["jobs"] == j)
    print(f"slots {b}: jobs1 {med(1):.2f}s, jobs2 {med(2):.2f}s, ratio {med(2) / (med(1) / 2):.2f}; "
          f"slot time outside a sandbox per step: jobs2 {idle(2) * 1000:.0f} ms, jobs1 {idle(1) * 1000:.0f} ms")
PY
fi
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def med(path):
    r = json.load(open(path))["results"]
    return [(x["command"], x["median"], x["min"], x["max"]) for x in r]
p = os.path.join(out, "pipeline-parallel.json")
if os.path.exists(p):
    (c1, j1, *_), (c2, j2, *_) = med(p)
    print(f"parallel: jobs1 {j1:.3f}s, jobs2 {j2:.3f}s; jobs2 / (jobs1/2) = {j2 / (j1 / 2):.2f} (target <= 1.2)")
p = os.path.join(out, "pipeline-cached.json")
if os.path.exists(p):
    (c1, a, *_), (c2, g, *_) = med(p)
    print(f"cached: cairn {a*1000:.1f} ms, git status {g*1000:.1f} ms; ratio {a / g:.2f} (target <= 2)")
PY

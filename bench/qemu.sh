#!/usr/bin/env bash
# QEMU user-emulation overhead of a foreign-platform step (issue 15).
#
#   bash bench/qemu.sh
#   CAIRN=/path/to/cairn RUNS=5 ROUNDS=10000 bash bench/qemu.sh
#
# One CPU-bound C program (ROUNDS rounds of a 64-bit hash over a 64 KiB
# buffer; every build prints the same hash), compiled with `zig cc` for
# x86_64, aarch64 and riscv64 musl, static. A recipe runs it in three
# steps: natively, `platform = "linux/arm64"` and `platform =
# "linux/riscv64"`, the emulators a path input holding Debian's
# qemu-aarch64-static and qemu-riscv64-static.
#   step      `cairn build --no-cache STEP` for each step (the sandbox's
#             start-up included, the same for all three).
#   direct    the same programs outside cairn: `./prog-x86_64` vs
#             `qemu-aarch64-static ./prog-aarch64` (what a user would
#             otherwise run), and riscv64 likewise.
# The ratios are emulated / native, for each pair.
#
# Knobs: CAIRN (default: a release build in <repo>/target/bench), WORK
# (default /var/tmp/cairn-bench-qemu), RUNS (5), ROUNDS (10000).
# Results: bench/results/qemu-*.json and a summary on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/var/tmp/cairn-bench-qemu}
RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-10000}
ONLY=${ONLY:-"step direct"}
OUT="$HERE/results"
NAME=qemu.sh
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

for t in hyperfine python3 qemu-aarch64-static qemu-riscv64-static; do
    command -v "$t" >/dev/null 2>&1 || die "missing $t: apt-get install -y hyperfine python3 qemu-user-static"
done
python3 -c 'import ziglang' 2>/dev/null || die "the ziglang wheel is missing: pip install ziglang"
find_cairn
rm -rf "$WORK"
mkdir -p "$WORK/proj/bins" "$WORK/proj/qemu" "$OUT"
PROJ="$WORK/proj"
STORE="$WORK/store"
cat > "$WORK/prog.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 100;
    static uint8_t buf[65536];
    for (int i = 0; i < (int)sizeof buf; i++) buf[i] = (uint8_t)(i * 131 + 7);
    uint64_t h = 1469598103934665603ULL;
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < (int)sizeof buf; i++) {
            h = (h ^ buf[i]) * 1099511628211ULL;
            buf[i] ^= (uint8_t)(h >> 29);
        }
    printf("%016llx\n", (unsigned long long)h);
    return 0;
}
C
log "compiling the workload with zig cc for x86_64, aarch64, riscv64"
for arch in x86_64 aarch64 riscv64; do
    python3 -m ziglang cc -target "$arch-linux-musl" -O2 -static -s \
        -o "$PROJ/bins/prog-$arch" "$WORK/prog.c"
done
cp -L "$(command -v qemu-aarch64-static)" "$(command -v qemu-riscv64-static)" "$PROJ/qemu/"
{
    printf '[service]\nname = "bench-qemu"\n'
    printf '[inputs.bins]\npath = "bins"\n[inputs.qemu]\npath = "qemu"\n'
    printf '[steps.native]\nmounts = { "/b" = "bins" }\nrun = ["/b/prog-x86_64", "%s"]\n' "$ROUNDS"
    printf '[steps.arm64]\nplatform = "linux/arm64"\nemulator = "qemu"\nmounts = { "/b" = "bins" }\nrun = ["/b/prog-aarch64", "%s"]\n' "$ROUNDS"
    printf '[steps.riscv64]\nplatform = "linux/riscv64"\nemulator = "qemu"\nmounts = { "/b" = "bins" }\nrun = ["/b/prog-riscv64", "%s"]\n' "$ROUNDS"
} > "$PROJ/cairn.toml"
c() { echo "$CAIRN --store $STORE build -C $PROJ --no-cache $1"; }
# Once, so that the inputs are in the store and materialized, and the
# three platforms agree on the result.
for s in native arm64 riscv64; do
    $CAIRN --store "$STORE" build -C "$PROJ" --no-cache "$s" 2>&1 | grep -E '^\[[a-z0-9]+\] [0-9a-f]{16}$' ||
        die "step $s printed no hash"
done

if want step; then
    log "step: the same step natively and under QEMU (arm64, riscv64), --no-cache"
    hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$OUT/qemu-step.json" \
        "$(c native)" "$(c arm64)" "$(c riscv64)"
fi
if want direct; then
    log "direct: the same programs outside cairn"
    hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$OUT/qemu-direct.json" \
        "$PROJ/bins/prog-x86_64 $ROUNDS" \
        "qemu-aarch64-static $PROJ/bins/prog-aarch64 $ROUNDS" \
        "qemu-riscv64-static $PROJ/bins/prog-riscv64 $ROUNDS"
fi
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
for kind in ("step", "direct"):
    p = os.path.join(out, f"qemu-{kind}.json")
    if not os.path.exists(p):
        continue
    r = [x["median"] for x in json.load(open(p))["results"]]
    print(f"{kind}: native {r[0]:.3f}s, arm64 {r[1]:.3f}s ({r[1] / r[0]:.2f}x), riscv64 {r[2]:.3f}s ({r[2] / r[0]:.2f}x)")
PY

#!/usr/bin/env bash
# A real rolling rollout across hosts (issue 11's target): the 5-host
# scenario of crates/cairn-cli/tests/fleet_hosts (network namespaces, a
# `cairn server` on host 0, an agent and examples/http-hello on each of
# five hosts, `max_unavailable = 1` from the release's [deploy], the
# server's SSE pushing ref changes), run RUNS times. Each run reports the
# seconds from `cairn promote` until every member served v2 healthy, and
# per member when it first answered v2 and how long its status said it
# swapped (one agent's swap-and-healthy time). The issue's target:
# promote-to-all-healthy within 1.5 x (5 x one agent's swap time).
#
#   bash bench/fleet.sh
#   RUNS=3 bash bench/fleet.sh
#
# Knobs (environment):
#   RUNS  runs of the scenario (default 5)
#   BIN   the fleet_hosts test binary; default: build it (debug, as CI
#         runs it) with `cargo test -p cairn-cli --test fleet_hosts --no-run`
#
# Needs root and `ip` (the namespaces), gcc and libc6-dev (the service's
# toolchain). The test harness makes and removes its namespaces and kills
# every process it started, pass or fail. Results: each run's log in
# bench/results/fleet-<stamp>-run<N>.log, the figures in
# bench/results/fleet-<stamp>.json, a summary on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
RUNS=${RUNS:-5}
OUT="$HERE/results"
NAME=bench/fleet.sh
TEST=a_rolling_release_across_five_hosts_has_at_most_one_member_unavailable
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

log() { printf '\n== %s  [load: %s]\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }
die() { printf '%s: %s\n' "$NAME" "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
command -v ip >/dev/null || die "needs ip (iproute2)"

if [[ -z ${BIN:-} ]]; then
    log "building the fleet_hosts test binary"
    BIN=$(cd "$REPO" && cargo test -q -p cairn-cli --test fleet_hosts --no-run \
        --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == "fleet_hosts":
        print(m["executable"])')
fi
[[ -x $BIN ]] || die "BIN=$BIN is not executable"

lines=()
for i in $(seq 1 "$RUNS"); do
    run_log="$OUT/fleet-$STAMP-run$i.log"
    log "run $i of $RUNS"
    "$BIN" --exact "$TEST" --nocapture --test-threads=1 >"$run_log" 2>&1 ||
        die "run $i failed; see $run_log"
    line=$(sed -n 's/^hosts-rolling: timings //p' "$run_log")
    [[ -n $line ]] || die "run $i printed no timings; see $run_log"
    lines+=("$line")
done

printf '%s\n' "${lines[@]}" | python3 -c '
import json, statistics, subprocess, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
def stats(xs):
    return {"median": round(statistics.median(xs), 2), "min": round(min(xs), 2),
            "max": round(max(xs), 2)}
total = [r["promote_to_all_healthy_s"] for r in runs]
swaps = [s[1] for r in runs for m in r["members"] for s in m["swapping_s"]]
# Waves: members in the order they first answered v2; a wave lasts from
# the previous member answering v2 (the promotion, for the first) to this one.
waves = []
for r in runs:
    at = sorted(m["answered_new_s"] for m in r["members"])
    waves.append([round(b - a, 2) for a, b in zip([0.0] + at, at)])
per_wave = [stats([w[k] for w in waves]) for k in range(len(waves[0]))]
swap = statistics.median(swaps)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
result = {
    "scenario": "rolling, max_unavailable = 1, 5 hosts, cairn server (SSE)",
    "commit": commit, "nproc": __import__("os").cpu_count(), "loadavg_after": load,
    "runs": len(runs), "promote_to_all_healthy_s": stats(total),
    "swap_s": stats(swaps), "per_wave_s": per_wave,
    "target_s": round(1.5 * 5 * swap, 2),
    "ratio_to_target": round(statistics.median(total) / (1.5 * 5 * swap), 2),
    "raw": runs,
}
json.dump(result, open(sys.argv[1], "w"), indent=1)
t = result["promote_to_all_healthy_s"]
print(f"promote -> all healthy: median {t[\"median\"]} s (min {t[\"min\"]}, max {t[\"max\"]}), {len(runs)} runs")
s = result["swap_s"]
print(f"one swap (status updating): median {s[\"median\"]} s (min {s[\"min\"]}, max {s[\"max\"]})")
print(f"target 1.5 x 5 x swap = {result[\"target_s\"]} s; median / target = {result[\"ratio_to_target\"]}")
for k, w in enumerate(per_wave, 1):
    print(f"wave {k}: median {w[\"median\"]} s (min {w[\"min\"]}, max {w[\"max\"]})")
' "$OUT/fleet-$STAMP.json"
echo "figures: $OUT/fleet-$STAMP.json"

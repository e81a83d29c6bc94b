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
# bench/results/fleet-<stamp>-run<N>.log, its timings line in
# bench/results/fleet-<stamp>.lines, the figures (bench/fleet-summary.py)
# in bench/results/fleet-<stamp>.json, a summary on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
RUNS=${RUNS:-5}
OUT="$HERE/results"
NAME=bench/fleet.sh
TEST=rollout::a_rolling_release_across_five_hosts_has_at_most_one_member_unavailable
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

printf '%s\n' "${lines[@]}" >"$OUT/fleet-$STAMP.lines"
python3 "$HERE/fleet-summary.py" "$OUT/fleet-$STAMP.json" <"$OUT/fleet-$STAMP.lines"
echo "figures: $OUT/fleet-$STAMP.json"

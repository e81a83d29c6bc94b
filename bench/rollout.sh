#!/usr/bin/env bash
# The rollout protocol at scale (issue 11), by deterministic simulation:
# `cairn-sim` runs a deployment set of N agents against an in-memory
# compare-and-swap store with a virtual clock and seeded faults (agent
# crashes, slow and failing health checks, lost, unanswered and late
# writes, store outages, late joiners, clock skew), checking every
# invariant after every step. It reports, per N, the store requests per
# agent from the promotion until the set converged, and how long that took
# in simulated time.
#
#   bash bench/rollout.sh                          # the full sweep (about 1-2 h on 2 cores)
#   SEEDS=20 BIG_SEEDS=5 bash bench/rollout.sh      # a quick look
#
#   rolling  rolling rollouts, max_unavailable = 10%, at N = 10, 100,
#            1,000 (SEEDS seeds each) and 10,000 (BIG_SEEDS seeds from
#            seed 100000): the issue's target is BIG_SEEDS = 1000 with
#            zero violations
#   mixed    every kind of run (canary, at-once, failing releases, halts
#            and resumes, rollbacks, newer statements mid-rollout, gates,
#            operator pause/abort), max_unavailable drawn per seed, at
#            N = 10, 100, 1,000 (SEEDS seeds each)
#
# Knobs (environment):
#   SEEDS      seeds per size below 10,000 (default 1000)
#   BIG_SEEDS  seeds at 10,000 agents (default 1000)
#   CHUNK      seeds per invocation at 10,000 agents (default 20); results
#              in bench/results/rollout-10000-<first>.{json,md,failures}
#   THREADS    simulation threads (default: all cores)
#   ONLY       subset of: rolling mixed
#   SIM        the cairn-sim binary; default: build it with
#              CARGO_TARGET_DIR=<repo>/target/bench cargo build --release -p cairn-sim
#
# Nothing runs outside this process and its threads; there is no network,
# disk or clock in a run. Results: bench/results/rollout-*.json (medians and
# maxima per size), bench/results/rollout-*.md (the tables), and any failing
# seed's report with the command that replays it in bench/results/rollout-*.failures.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SEEDS=${SEEDS:-1000}
BIG_SEEDS=${BIG_SEEDS:-1000}
CHUNK=${CHUNK:-20}
THREADS=${THREADS:-$(nproc)}
ONLY=${ONLY:-"rolling mixed"}
OUT="$HERE/results"
NAME=bench/rollout.sh
mkdir -p "$OUT"

log() { printf '\n== %s  [load: %s]\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

if [[ -z ${SIM:-} ]]; then
    log "building cairn-sim (CARGO_TARGET_DIR=$REPO/target/bench)"
    (cd "$REPO" && CARGO_TARGET_DIR="$REPO/target/bench" cargo build --release -q -p cairn-sim)
    SIM="$REPO/target/bench/release/cairn-sim"
fi
[[ -x $SIM ]] || { echo "$NAME: SIM=$SIM is not executable" >&2; exit 1; }

{
    echo "commit: $(git -C "$REPO" rev-parse --short HEAD)"
    echo "date: $(date -u +%FT%TZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), nproc $(nproc)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/rollout-machine.txt"

status=0
sweep() { # NAME SEEDS AGENTS KIND [EXTRA...]
    local name=$1 seeds=$2 agents=$3 kind=$4
    shift 4
    log "$name: $seeds seeds x $agents agents, $kind $*"
    local start=$SECONDS
    if ! "$SIM" --seeds "$seeds" --agents "$agents" --kind "$kind" --threads "$THREADS" \
        --json "$OUT/rollout-$name.json" "$@" \
        > "$OUT/rollout-$name.md" 2> "$OUT/rollout-$name.failures"; then
        status=1
        echo "$NAME: $name had failing seeds; see $OUT/rollout-$name.failures" >&2
    fi
    cat "$OUT/rollout-$name.md"
    echo "($((SECONDS - start)) s of wall clock)"
}

if want rolling; then
    sweep rolling-small "$SEEDS" 10,100,1000 rolling --max-unavailable 10%
    # In chunks of CHUNK seeds from seed 100000, each with its own
    # results, so a sweep cut short still leaves what it ran.
    for ((first = 0; first < BIG_SEEDS; first += CHUNK)); do
        n=$((BIG_SEEDS - first < CHUNK ? BIG_SEEDS - first : CHUNK))
        sweep "10000-$first" "$n" 10000 rolling --max-unavailable 10% --first-seed $((100000 + first))
    done
fi
if want mixed; then
    sweep mixed "$SEEDS" 10,100,1000 mixed
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/rollout-machine.txt"
exit $status

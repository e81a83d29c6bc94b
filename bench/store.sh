#!/usr/bin/env bash
# Benchmarks of cairn's local store against well-known anchors (issue 2).
#
#   bash bench/store.sh                 # everything (about 10 minutes)
#   CAIRN=/path/to/cairn bash bench/store.sh
#   ONLY="add20k readd" bash bench/store.sh
#
# Knobs (environment):
#   CAIRN      cairn binary; default: build it with
#              CARGO_TARGET_DIR=<repo>/target/bench cargo build --release -p cairn-cli
#   WORK       scratch directory for data, stores, repos (default /var/tmp/cairn-bench);
#              keep it on the same file system as nothing else in particular, but NOT
#              under the repository
#   RUNS       hyperfine runs per command (default 5); BIG_RUNS for the 1 GiB ones (3)
#   CAIRN_BASE an older cairn binary, measured in add1g's hyperfine call too
#              (before and after a change, under the same load)
#   ONLY       space-separated subset of: add20k add1g readd checkout verify profile
#              (add1g compares with \`openssl dgst -sha256 F & cp F G && sync; wait\`)
#   DROP       1 (default) drops the page cache before each cold run (needs root);
#              0 only syncs, and the "cold" figures are then warm
#
# Results: bench/results/*.json (hyperfine exports), bench/results/summary.md,
# bench/results/machine.txt, bench/results/profile-*.txt.  See bench/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/var/tmp/cairn-bench}
RUNS=${RUNS:-5}
BIG_RUNS=${BIG_RUNS:-3}
ONLY=${ONLY:-"add20k add1g readd checkout verify profile"}
DROP=${DROP:-1}
OUT="$HERE/results"

NAME=store.sh
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

# ---------------------------------------------------------------- tools
missing=()
declare -A pkg=([hyperfine]=hyperfine [git]=git [openssl]=openssl [nix-store]=nix-bin
                [python3]=python3 [/usr/bin/time]=time)
for t in hyperfine git openssl nix-store python3 /usr/bin/time; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if ((${#missing[@]})); then
    pkgs=$(for t in "${missing[@]}"; do printf '%s ' "${pkg[$t]}"; done)
    printf 'store.sh: missing tools: %s\n' "${missing[*]}" >&2
    printf 'install them with:\n  apt-get update && apt-get install -y %s\n' "$pkgs" >&2
    exit 2
fi
for t in strace perf; do
    command -v "$t" >/dev/null 2>&1 ||
        printf 'store.sh: note: %s not found; the profile step will skip it (apt-get install -y %s)\n' \
            "$t" "$([[ $t == perf ]] && echo linux-perf || echo strace)" >&2
done

cold_runs

# ---------------------------------------------------------------- cairn
find_cairn

mkdir -p "$WORK" "$OUT"
q() { printf '%q' "$1"; }

# ---------------------------------------------------------------- machine
{
    echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu:       $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) online)"
    echo "kernel:    $(uname -r)"
    echo "memory:    $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
    echo "fs:        $(df -hT "$WORK" | awk 'NR==2 {print $2 " on " $1 ", " $3 ", " $6 " used"}')"
    echo "uptime:    $(uptime)"
    echo "cairn:     $CAIRN ($(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD 2>/dev/null || echo ', dirty tree'))"
    echo "tools:     $(hyperfine --version), $(git --version), $(openssl version | cut -d' ' -f1-2), $(nix-store --version)"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- data
# Deterministic: the same seed gives the same bytes on every machine.
TREE="$WORK/data/tree"   # 20 dirs x 10 subdirs x 100 files of 1..16 KiB
BIG="$WORK/data/big.bin" # 1 GiB
DATA_VERSION=1
if [[ "$(cat "$WORK/data/.version" 2>/dev/null)" != "$DATA_VERSION" ]]; then
    log "generating data in $WORK/data (once)"
    rm -rf "$WORK/data"
    mkdir -p "$WORK/data"
    tree20k "$TREE"
    python3 - "$BIG" <<'EOF'
import random, sys
big = sys.argv[1]
rng = random.Random(1)
with open(big, "wb") as f:
    for _ in range(64):
        f.write(rng.randbytes(16 << 20))
EOF
    echo "$DATA_VERSION" >"$WORK/data/.version"
    # Old enough that no snapshot treats the files as "racily clean".
    sleep 2
fi
TREE_FILES=$(find "$TREE" -type f | wc -l)
TREE_BYTES=$(du -sb --apparent-size "$TREE" | cut -f1)
echo "data:      $TREE_FILES files, $((TREE_BYTES >> 20)) MiB in $TREE; $(($(stat -c %s "$BIG") >> 20)) MiB in $BIG" |
    tee -a "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- helpers
# bench NAME RUNS  name1 prepare1 command1  name2 prepare2 command2 ...
# One hyperfine call per comparison (one export); each command gets its own
# --prepare (the reset it needs plus the cache drop), run before every run.
# hyperfine runs one command's runs back to back, then the next command's.
bench() {
    local name=$1 runs=$2; shift 2
    local extra=()
    if [[ $1 == --warmup ]]; then extra=(--warmup "$2"); shift 2; fi
    local args=()
    while (($#)); do
        args+=(-n "$1" --prepare "$2" "$3")
        shift 3
    done
    log "$name"
    echo "$name: load before: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/load.txt"
    hyperfine --style basic --runs "$runs" "${extra[@]}" --export-json "$OUT/$name.json" "${args[@]}"
    echo "$name: load after:  $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/load.txt"
}
# No --prepare given: hyperfine requires one per command or none, so warm
# comparisons use a no-op.
NOOP=':'

# Resets move the previous run's output aside instead of deleting it: on
# ext4 without a journal, inodes freed in the last 60 s are skipped one by one
# when allocating (recently_deleted() in fs/ext4/ialloc.c), which made every
# tool's file creation up to 3x slower right after an `rm -rf` of 20,000
# files. The trash is deleted at the end (and, with a pause, at the start).
TRASH="$WORK/trash"
if [[ -d $TRASH ]]; then
    log "deleting the previous run's trash, then waiting 65 s for ext4 to forget it"
    rm -rf "$TRASH"; sync; sleep 65
fi
mkdir -p "$TRASH"
trap 'rm -rf "$TRASH"' EXIT
# aside DIR: the prepare snippet moving DIR into the trash (if it exists).
aside() { printf '[ ! -e %s ] || mv %s %s/$(date +%%s%%N)' "$(q "$1")" "$(q "$1")" "$(q "$TRASH")"; }

C=$(q "$CAIRN") T=$(q "$TREE") B=$(q "$BIG") W=$(q "$WORK")
S20="$WORK/store-20k" S1G="$WORK/store-1g" GIT="$WORK/git-20k.git" NIX="$WORK/nix-20k"
s20=$(q "$S20") s1g=$(q "$S1G") git=$(q "$GIT") nix=$(q "$NIX")
: >"$OUT/load.txt"

# ---------------------------------------------------------------- 1. 20k tree into an empty store
if want add20k; then
    bench add-20k "$RUNS" \
        "cairn store add" "$(aside "$S20"); $COLD" \
            "$C --store $s20 store add $T" \
        "git add -A" "$(aside "$GIT"); git init -q --bare $git; $COLD" \
            "git --git-dir=$git --work-tree=$T add -A" \
        "nix-store --add" "$(aside "$NIX"); $COLD" \
            "nix-store --store $(q "local?root=$NIX") --add $T" \
        "cat | openssl sha256" "$COLD" \
            "find $T -type f -print0 | xargs -0 cat | openssl dgst -sha256"
fi

# Populated store / repo for the re-add, checkout and verify comparisons
# (whatever the previous step left is rebuilt: it costs a few seconds).
populate_20k() {
    if [[ ! -f $S20/cairn-store ]] || ! "$CAIRN" --store "$S20" store add "$TREE" >/dev/null 2>&1; then
        eval "$(aside "$S20")"
        "$CAIRN" --store "$S20" store add "$TREE" >/dev/null
    fi
    # A second add fills the stat cache even if the first ran right after
    # the files were written.
    DIGEST=$("$CAIRN" --store "$S20" store add "$TREE")
    if [[ ! -f $GIT/index ]]; then
        eval "$(aside "$GIT")"
        git init -q --bare "$GIT"
        git --git-dir="$GIT" --work-tree="$TREE" add -A
    fi
    git --git-dir="$GIT" --work-tree="$TREE" status --porcelain >/dev/null # refresh the index
}

# ---------------------------------------------------------------- 2. 1 GiB file into an empty store
if want add1g; then
    # The anchor a store must be compared with: hashing the file while
    # copying it durably, as a user would with two tools at once.
    G="$WORK/big-copy.bin" g=$(q "$WORK/big-copy.bin")
    # CAIRN_BASE: an older binary measured in the same call (before/after).
    base=()
    if [[ -n ${CAIRN_BASE:-} ]]; then
        base=("cairn (base) store add" "$(aside "$S1G"); $COLD"
              "$(q "$CAIRN_BASE") --store $s1g store add $B")
    fi
    bench add-1g "$BIG_RUNS" \
        "cairn store add" "$(aside "$S1G"); $COLD" \
            "$C --store $s1g store add $B" \
        "${base[@]}" \
        "openssl sha256 & cp && sync" "$(aside "$G"); $COLD" \
            "openssl dgst -sha256 $B >/dev/null & cp $B $g && sync; wait" \
        "openssl sha256" "$COLD" \
            "openssl dgst -sha256 $B"
    log "peak memory of cairn store add (1 GiB file, 3 runs)"
    : >"$OUT/rss.txt"
    for i in 1 2 3; do
        eval "$(aside "$S1G")"; sync
        /usr/bin/time -v "$CAIRN" --store "$S1G" store add "$BIG" 2>&1 >/dev/null |
            awk -v i="$i" '/Maximum resident/ {print "add-1g run " i ": max RSS " $NF " KiB"}' | tee -a "$OUT/rss.txt" >&2
    done
    eval "$(aside "$S20.rss")"; sync
    /usr/bin/time -v "$CAIRN" --store "$S20.rss" store add "$TREE" 2>&1 >/dev/null |
        awk '/Maximum resident/ {print "add-20k: max RSS " $NF " KiB"}' | tee -a "$OUT/rss.txt" >&2
fi

# ---------------------------------------------------------------- 3. re-adding the unchanged tree
if want readd; then
    populate_20k
    bench readd-20k-cold "$RUNS" \
        "cairn store add" "$COLD" "$C --store $s20 store add $T" \
        "git status" "$COLD" "git --git-dir=$git --work-tree=$T status --porcelain"
    # Warm: one warm-up run per command fills the page cache.
    bench readd-20k-warm "$((RUNS * 2))" --warmup 1 \
        "cairn store add" "$NOOP" "$C --store $s20 store add $T" \
        "git status" "$NOOP" "git --git-dir=$git --work-tree=$T status --porcelain"
fi

# ---------------------------------------------------------------- 4. checkout
if want checkout; then
    populate_20k
    D=$(q "$WORK/checkout") reset=$(aside "$WORK/checkout")
    bench checkout-20k "$RUNS" \
        "cairn store checkout (copies)" "$reset; $COLD" "$C --store $s20 store checkout $DIGEST $D" \
        "cairn store checkout --link" "$reset; $COLD" "$C --store $s20 store checkout --link $DIGEST $D" \
        "cp -r" "$reset; $COLD" "cp -r $T $D"
    eval "$reset"
fi

# ---------------------------------------------------------------- 5. verify
if want verify; then
    populate_20k
    bench verify-20k "$RUNS" \
        "cairn store verify" "$COLD" "$C --store $s20 store verify" \
        "cat blobs | openssl sha256" "$COLD" \
            "find $s20/blobs -type f -print0 | xargs -0 cat | openssl dgst -sha256"
    if [[ ! -f $S1G/cairn-store ]]; then
        "$CAIRN" --store "$S1G" store add "$BIG" >/dev/null
    fi
    blob=$(find "$S1G/blobs" -type f -printf '%s %p\n' | sort -n | tail -n1 | cut -d' ' -f2-)
    bench verify-1g "$BIG_RUNS" \
        "cairn store verify" "$COLD" "$C --store $s1g store verify" \
        "openssl sha256" "$COLD" "openssl dgst -sha256 $(q "$blob")"
fi

# ---------------------------------------------------------------- profile of one cold 20k add
if want profile; then
    P="$WORK/store-profile" reset=$(aside "$WORK/store-profile")
    log "profile: one cold 'cairn store add' of the 20k tree"
    {
        eval "$reset"; eval "$COLD"
        echo "### cairn --json (cold)"
        "$CAIRN" --store "$P" store add --json "$TREE"
        if command -v strace >/dev/null; then
            eval "$reset"; eval "$COLD"
            echo "### strace -c -f (cold; strace slows it down)"
            strace -c -f -o "$OUT/strace.tmp" "$CAIRN" --store "$P" store add "$TREE" >/dev/null
            cat "$OUT/strace.tmp"; rm -f "$OUT/strace.tmp"
            eval "$reset"; eval "$COLD"
            echo "### time spent in syncfs (strace -T)"
            strace -f -T -e trace=syncfs "$CAIRN" --store "$P" store add "$TREE" 2>&1 >/dev/null | grep syncfs || true
            echo "### same, warm re-add"
            strace -f -T -e trace=syncfs "$CAIRN" --store "$P" store add "$TREE" 2>&1 >/dev/null | grep syncfs || true
        fi
        if command -v perf >/dev/null; then
            eval "$reset"; eval "$COLD"
            echo "### perf stat (cold)"
            perf stat -e task-clock,context-switches,cpu-migrations,page-faults "$CAIRN" --store "$P" store add "$TREE" 2>&1 >/dev/null || true
        fi
    } >"$OUT/profile-add20k.txt" 2>&1
    cat "$OUT/profile-add20k.txt" >&2
fi

# ---------------------------------------------------------------- summary
python3 "$HERE/summary.py" "$OUT" | tee "$OUT/summary.md"
log "done; results in $OUT"

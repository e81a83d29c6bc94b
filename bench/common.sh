# What the scripts in bench/ share. Sourced,
# not run: the sourcing script sets NAME (for messages), REPO, WORK and
# ONLY first, and DROP where it measures cold runs.

log() { printf '\n== %s  [load: %s]\n' "$*" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2; }
die() { printf '%s: %s\n' "$NAME" "$*" >&2; exit 1; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

# Scratch data must never land in the repository.
case "$WORK" in "$REPO"/*|"$REPO") die "WORK must not be inside the repository ($WORK)";; esac

# COLD: the hyperfine --prepare snippet for a cold run (the page cache
# dropped, which needs root; DROP=0 only syncs, and "cold" is then warm).
cold_runs() {
    if [[ $DROP == 1 ]]; then
        { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null ||
            die "cannot write /proc/sys/vm/drop_caches (run as root, or DROP=0 for warm-only figures)"
        COLD='sync; echo 3 > /proc/sys/vm/drop_caches'
    else
        COLD='sync'
    fi
}

# CAIRN: the binary to measure, built in release mode unless given.
find_cairn() {
    if [[ -z ${CAIRN:-} ]]; then
        log "building cairn (CARGO_TARGET_DIR=$REPO/target/bench)"
        (cd "$REPO" && CARGO_TARGET_DIR="$REPO/target/bench" cargo build --release -q -p cairn-cli)
        CAIRN="$REPO/target/bench/release/cairn"
    fi
    [[ -x $CAIRN ]] || die "CAIRN=$CAIRN is not executable"
    CAIRN=$(realpath "$CAIRN")
}

# The 20,000-file tree every benchmark uses: 20 x 10 directories of 100
# files of 1-16 KiB (174,459,217 bytes), from a fixed seed, so every
# script measures the same bytes.
tree20k() { # DIR
    python3 - "$1" <<'PY'
import os, random, sys
tree = sys.argv[1]
rng = random.Random(2)
for i in range(20):
    for j in range(10):
        d = f"{tree}/d{i:02d}/s{j:02d}"
        os.makedirs(d)
        for k in range(100):
            with open(f"{d}/f{k:03d}.bin", "wb") as f:
                f.write(rng.randbytes(rng.randint(1024, 16384)))
PY
}

# The 100-file artifact of the "one file changed" figures (agent fetch,
# image push): f000.bin … f099.bin of random bytes, MIN to MAX bytes each,
# from a fixed seed.
files100() { # DIR SEED MIN MAX
    python3 - "$@" <<'PY'
import os, random, sys
d, seed, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
os.makedirs(d, exist_ok=True)
for i in range(100):
    with open(f"{d}/f{i:03d}.bin", "wb") as f:
        f.write(rng.randbytes(rng.randint(lo, hi)))
PY
}

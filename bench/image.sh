#!/usr/bin/env bash
# Benchmarks of `cairn image` (issue 14: reproducible OCI images).
#
#   bash bench/image.sh                  # both comparisons (~3 minutes after the build)
#   CAIRN=/path/to/cairn ONLY=export RUNS=5 bash bench/image.sh
#
# Comparisons:
#   export  `cairn image build` of the c-hello release (a static binary)
#           vs `podman build` and `buildah build` of the same file from
#           scratch with a Containerfile (FROM scratch, COPY, ENTRYPOINT),
#           --no-cache, in one hyperfine call. Also: the image's size as a
#           layout (podman's pushed to an OCI layout by `podman push`), and
#           whether two builds give the same digest (podman: image id).
#   push    a 100-file artifact (4-64 KiB random files) released, pushed to
#           a local docker-registry; one file changed, released, pushed
#           again: bytes sent the second time vs the whole image. The same
#           two artifacts built with `podman build` (one COPY) and pushed
#           with `podman push`: what the registry's storage grew by.
#
# Needs root, hyperfine, podman, buildah, docker-registry, gcc, libc6-dev,
# busybox-static, python3. Knobs: CAIRN, WORK (/var/tmp/cairn-bench-image),
# RUNS (10), ONLY ("export push"). Raw results: bench/raw/image-*.json
# (committed: small), hyperfine exports in bench/results/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/var/tmp/cairn-bench-image}
RUNS=${RUNS:-10}
ONLY=${ONLY:-"export push"}
OUT="$HERE/results"
RAW="$HERE/raw"
NAME=image.sh
DROP=0
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

for t in hyperfine podman buildah docker-registry gcc python3 /bin/busybox; do
    command -v "$t" >/dev/null 2>&1 || die "missing $t: apt-get install -y hyperfine podman buildah docker-registry gcc libc6-dev busybox-static python3"
done
find_cairn
rm -rf "$WORK"
mkdir -p "$WORK" "$OUT" "$RAW"
export CAIRN_STORE="$WORK/store" CAIRN_KEYS="$WORK/keys"
"$CAIRN" key generate bench >/dev/null
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULT="$RAW/image-$STAMP.json"
echo "{}" >"$RESULT"
record() { # KEY JSON
    python3 - "$RESULT" "$1" "$2" <<'PY'
import json, sys
path, key, value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
data = json.load(open(path)); data[key] = value
json.dump(data, open(path, "w"), indent=1, sort_keys=True)
PY
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
blob_bytes() { du -sb --apparent-size "$1/blobs" | cut -f1; }
record machine "$(python3 -c 'import json,os,platform; print(json.dumps({"kernel": platform.release(), "nproc": os.cpu_count(), "load": open("/proc/loadavg").read().split()[:3]}))')"
record commit "\"$(git -C "$REPO" rev-parse --short HEAD)\""

if want export; then
    log "export: c-hello release"
    cp -r "$REPO/examples/c-hello" "$WORK/c-hello"
    (cd "$WORK/c-hello" && CAIRN="$CAIRN" sh make-toolchain.sh >/dev/null)
    released=$(cd "$WORK/c-hello" && "$CAIRN" --json release --key bench)
    release=$(field "$released" release)
    artifact=$(field "$released" artifact)
    "$CAIRN" store checkout "$artifact" "$WORK/ctx" --copy
    printf 'FROM scratch\nCOPY hello /hello\nENTRYPOINT ["/hello"]\n' >"$WORK/ctx/Containerfile"
    hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$OUT/image-export.json" \
        --prepare "rm -rf $WORK/out-cairn" \
        -n "cairn image build" "$CAIRN image build $release --output $WORK/out-cairn" \
        -n "podman build" "podman build --no-cache -q -t bench-c-hello:podman -f $WORK/ctx/Containerfile $WORK/ctx" \
        -n "buildah build" "buildah build --no-cache -q -t bench-c-hello:buildah -f $WORK/ctx/Containerfile $WORK/ctx"
    cairn1=$("$CAIRN" image build "$release" --output "$WORK/c1")
    cairn2=$("$CAIRN" image build "$release" --output "$WORK/c2")
    podman build --no-cache -q -t bench-c-hello:a -f "$WORK/ctx/Containerfile" "$WORK/ctx" >/dev/null
    sleep 1
    podman build --no-cache -q -t bench-c-hello:b -f "$WORK/ctx/Containerfile" "$WORK/ctx" >/dev/null
    podman push -q bench-c-hello:a "oci:$WORK/p1:a"
    podman push -q bench-c-hello:b "oci:$WORK/p2:b"
    p1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/p1/index.json")
    p2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/p2/index.json")
    record export "$(python3 - "$OUT/image-export.json" "$cairn1" "$cairn2" "$p1" "$p2" "$(blob_bytes "$WORK/c1")" "$(blob_bytes "$WORK/p1")" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))
print(json.dumps({
    "times": {r["command"]: {"median": r["median"], "min": r["min"], "max": r["max"]} for r in h["results"]},
    "cairn_digests": [sys.argv[2], sys.argv[3]],
    "podman_digests": [sys.argv[4], sys.argv[5]],
    "cairn_layout_blob_bytes": int(sys.argv[6]),
    "podman_layout_blob_bytes": int(sys.argv[7]),
}))
PY
)"
    podman rmi -f bench-c-hello:podman bench-c-hello:a bench-c-hello:b >/dev/null 2>&1 || true
    buildah rmi -f bench-c-hello:buildah >/dev/null 2>&1 || true
fi

if want push; then
    log "push: one changed file of 100"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    reg="127.0.0.1:$port"
    printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' "$WORK/registry" "$reg" >"$WORK/registry.yml"
    docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
    regpid=$!
    trap 'kill $regpid 2>/dev/null || true' EXIT
    for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break; sleep 0.1; done
    p="$WORK/hundred"
    mkdir -p "$p"
    cp "$REPO/examples/busybox-hello/make-rootfs.sh" "$p/"
    (cd "$p" && CAIRN="$CAIRN" sh make-rootfs.sh >/dev/null)
    files100 "$p/src" 14 4096 65536
    cat >"$p/cairn.toml" <<'TOML'
[service]
name = "hundred"

[inputs.rootfs]
path = "rootfs"

[inputs.src]
path = "src"

[steps.copy]
mounts = { "/" = "rootfs", "/src" = "src" }
env = { PATH = "/bin" }
run = ["/bin/sh", "-c", "cp -r /src /out/data"]

[release]
step = "copy"

[release.run]
command = ["/bin/true"]
TOML
    rel1=$(cd "$p" && "$CAIRN" --json release --key bench)
    r1=$(field "$rel1" release)
    first=$("$CAIRN" --json image push "$r1" "$reg/bench/hundred:v1" --key bench)
    head -c 20000 /dev/urandom >"$p/src/f050.bin"
    rel2=$(cd "$p" && "$CAIRN" --json release --key bench)
    r2=$(field "$rel2" release)
    second=$("$CAIRN" --json image push "$r2" "$reg/bench/hundred:v2" --key bench)
    # podman: the same two artifacts, one COPY layer each.
    for pair in "$r1 $(field "$rel1" artifact)" "$r2 $(field "$rel2" artifact)"; do
        r=${pair% *} a=${pair#* }
        rm -rf "$WORK/pctx" && "$CAIRN" store checkout "$a" "$WORK/pctx" --copy
        printf 'FROM scratch\nCOPY data /data\n' >"$WORK/pctx/Containerfile"
        podman build -q -t "bench-hundred:${r:7:8}" -f "$WORK/pctx/Containerfile" "$WORK/pctx" >/dev/null
    done
    before=$(du -sb "$WORK/registry" | cut -f1)
    podman push -q --tls-verify=false "bench-hundred:${r1:7:8}" "docker://$reg/podman/hundred:v1"
    mid=$(du -sb "$WORK/registry" | cut -f1)
    podman push -q --tls-verify=false "bench-hundred:${r2:7:8}" "docker://$reg/podman/hundred:v2"
    after=$(du -sb "$WORK/registry" | cut -f1)
    record push "$(python3 - "$first" "$second" "$before" "$mid" "$after" <<'PY'
import json, sys
first, second = json.loads(sys.argv[1]), json.loads(sys.argv[2])
before, mid, after = map(int, sys.argv[3:6])
print(json.dumps({
    "cairn_first": first, "cairn_second": second,
    "cairn_second_sent_ratio": second["bytes_sent"] / second["image_bytes"],
    "podman_registry_growth_first": mid - before, "podman_registry_growth_second": after - mid,
}))
PY
)"
    podman rmi -f "bench-hundred:${r1:7:8}" "bench-hundred:${r2:7:8}" >/dev/null 2>&1 || true
fi
log "results in $RESULT"
cat "$RESULT"

#!/bin/sh
# Makes the two trees this example pins and writes their digests into
# cairn.toml:
#
#   go    Debian's Go toolchain as a root file system: GOROOT at /usr/lib/go
#         (the go command, the compiler, assembler and linker, the standard
#         library's sources without tests; no prebuilt packages: they are
#         built in the sandbox for each GOARCH) and the C library the go
#         command is linked against (found with ldd).
#   qemu  Debian's /usr/bin/qemu-aarch64-static, the interpreter of the
#         arm64 test step.
#
# Both are functions of the Debian packages only, so the same packages give
# the same digests on every machine; with other versions the pins change
# and this script says so.
#
#   ./make-trees.sh             # needs golang-go and qemu-user-static
#   GOROOT=/usr/lib/go-1.19 QEMU=/path/to/qemu-aarch64-static CAIRN=/path/to/cairn ./make-trees.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cairn=${CAIRN:-cairn}
qemu=${QEMU:-/usr/bin/qemu-aarch64-static}
if [ -z "${GOROOT:-}" ]; then
    command -v go >/dev/null || { echo "make-trees.sh: go not found; apt-get install golang-go" >&2; exit 1; }
    GOROOT=$(go env GOROOT)
fi
[ -x "$GOROOT/bin/go" ] || { echo "make-trees.sh: $GOROOT/bin/go not found; apt-get install golang-go" >&2; exit 1; }
[ -x "$qemu" ] || { echo "make-trees.sh: $qemu not found; apt-get install qemu-user-static" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The Go tree. Symlinks (Debian's GOROOT points into /usr/share) are
# resolved while copying, so the tree is self-contained.
go=$work/go
goroot=$go/usr/lib/go
tools=$GOROOT/pkg/tool/linux_amd64
mkdir -p "$goroot/bin" "$goroot/pkg/tool/linux_amd64"
cp -L "$GOROOT/VERSION" "$goroot/VERSION"
cp -L "$GOROOT/bin/go" "$goroot/bin/go"
for t in asm buildid compile link pack; do
    cp -L "$tools/$t" "$goroot/pkg/tool/linux_amd64/$t"
done
cp -rL "$GOROOT/pkg/include" "$goroot/pkg/include"
# The standard library's sources: no tests, no test data, not the sources
# of the tools themselves.
(cd "$GOROOT/src/" && find -L . -path ./cmd -prune -o -type d -name testdata -prune \
    -o -type f ! -name '*_test.go' -print) | while read -r f; do
    mkdir -p "$goroot/src/$(dirname "$f")"
    cp -L "$GOROOT/src/$f" "$goroot/src/$f"
done
for lib in $(ldd "$GOROOT/bin/go" | awk '/=>/ { print $3 } /^\t\// { print $1 }' | sort -u); do
    mkdir -p "$go$(dirname "$lib")"
    cp -L "$lib" "$go$lib"
done

mkdir -p "$work/qemu"
cp -L "$qemu" "$work/qemu/qemu-aarch64-static"

go_tree=$("$cairn" store add "$go")
qemu_tree=$("$cairn" store add "$work/qemu")

# pin INPUT DIGEST: sets `tree = "DIGEST"` in the [inputs.INPUT] table.
pin() {
    awk -v section="[inputs.$1]" -v digest="$2" '
        /^\[/ { inside = ($0 == section) }
        inside && /^tree = / { $0 = "tree = \"" digest "\"" }
        { print }
    ' "$here/cairn.toml" > "$here/cairn.toml.new"
    if cmp -s "$here/cairn.toml" "$here/cairn.toml.new"; then
        rm "$here/cairn.toml.new"
        echo "$1: $2 (pinned already)"
    else
        mv "$here/cairn.toml.new" "$here/cairn.toml"
        echo "$1: $2 (pin updated in cairn.toml)"
    fi
}
pin go "$go_tree"
pin qemu "$qemu_tree"

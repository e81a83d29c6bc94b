#!/bin/sh
# Makes the two trees this example pins and writes their digests into
# cairn.toml:
#
#   zig   the Zig toolchain of the `ziglang` wheel (its `ziglang/` directory:
#         the static `zig` binary and its `lib/`, with musl's sources for
#         every target; the wheel's Python files are left out).
#   qemu  Debian's /usr/bin/qemu-aarch64-static, the interpreter of the
#         arm64 test step.
#
# Both are functions of the packages only, so the same wheel and Debian
# package give the same digests on every machine; with other versions the
# pins change and this script says so.
#
#   ./make-trees.sh             # needs `pip install ziglang` and qemu-user-static
#   ZIGLANG=/path/to/ziglang QEMU=/path/to/qemu-aarch64-static CAIRN=/path/to/cairn ./make-trees.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cairn=${CAIRN:-cairn}
qemu=${QEMU:-/usr/bin/qemu-aarch64-static}
if [ -z "${ZIGLANG:-}" ]; then
    ZIGLANG=$(python3 -c 'import os, ziglang; print(os.path.dirname(ziglang.__file__))' 2>/dev/null) ||
        { echo "make-trees.sh: the ziglang wheel is not installed; pip install ziglang" >&2; exit 1; }
fi
[ -x "$ZIGLANG/zig" ] || { echo "make-trees.sh: $ZIGLANG/zig not found; pip install ziglang" >&2; exit 1; }
[ -x "$qemu" ] || { echo "make-trees.sh: $qemu not found; apt-get install qemu-user-static" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/zig"
cp -L "$ZIGLANG/zig" "$work/zig/zig"
cp -rL "$ZIGLANG/lib" "$work/zig/lib"
[ ! -f "$ZIGLANG/LICENSE" ] || cp -L "$ZIGLANG/LICENSE" "$work/zig/LICENSE"

mkdir -p "$work/qemu"
cp -L "$qemu" "$work/qemu/qemu-aarch64-static"

zig_tree=$("$cairn" store add "$work/zig")
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
pin zig "$zig_tree"
pin qemu "$qemu_tree"

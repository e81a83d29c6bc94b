#!/usr/bin/env bash
# cairn's main job, end to end, on the embedded default store
# (~/.local/share/cairn/store, or $CAIRN_STORE): builds cairn, snapshots this
# repository into the store, lists and materializes the tree, verifies every
# blob and shows that re-adding an unchanged tree reads no file.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building cairn"
cargo build --release --locked -q -p cairn-cli
cairn() { target/release/cairn "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== cairn store add . (the repository, without target/ and .git/)"
tree=$(cairn store add . --exclude target --exclude .git --exclude fuzz/target)
echo "$tree"

echo "== cairn store ls $tree"
cairn store ls "$tree"

echo "== cairn store checkout $tree $work/checkout"
cairn store checkout "$tree" "$work/checkout"
echo "materialized $(find "$work/checkout" -type f | wc -l) files"

echo "== the checkout snapshots to the same digest"
again=$(cairn store add "$work/checkout")
[ "$again" = "$tree" ] && echo "same digest: $again"

echo "== re-adding the unchanged repository reads no file (stat cache)"
cairn --json store add . --exclude target --exclude .git --exclude fuzz/target | grep -E '"(files|files_read|seconds)"'

echo "== cairn store verify"
cairn store verify

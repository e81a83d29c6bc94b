#!/usr/bin/env bash
# cairn's main job, end to end, on the embedded default store
# (~/.local/share/cairn/store, or $CAIRN_STORE) with keys in
# ~/.config/cairn/keys (or $CAIRN_KEYS):
#   store round trip -> hermetic build -> signed release with provenance ->
#   promotion to prod -> verification as an agent would -> independent rebuild.
# Needs root (namespaces) and Debian's busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building cairn (the first build compiles every dependency: several minutes)"
cargo build --release --locked -p cairn-cli
export PATH="$PWD/target/release:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== the store: add this repository, check it out, verify"
tree=$(cairn store add . --exclude target --exclude .git --exclude 'examples/*/rootfs' --exclude 'examples/*/toolchain')
echo "tree $tree"
cairn store checkout "$tree" "$work/checkout"
[ "$(cairn store add "$work/checkout")" = "$tree" ] && echo "checkout snapshots to the same digest"
cairn --json store add . --exclude target --exclude .git --exclude 'examples/*/rootfs' --exclude 'examples/*/toolchain' \
  | grep -E '"(files|files_read)"' | tr -d ' ,' | paste -sd' ' | sed 's/^/re-add of the unchanged tree: /'

echo "== a hermetic build: examples/busybox-hello"
cd examples/busybox-hello
./make-rootfs.sh >/dev/null
cairn build
cairn --json build | grep -q '"cached": true' && echo "second build: served from the action cache"
cairn build --check >/dev/null && echo "--check: rebuilt bit for bit"

echo "== sign a release and promote it"
cairn key list | grep -q '^demo ' || cairn key generate demo >/dev/null
release=$(cairn release --key demo)
cairn release show "$release"
cairn promote "$release" --channel prod --key demo

echo "== verify the channel as an agent would"
cairn policy add "$work/policy.toml" busybox-hello prod --key demo
cairn channel verify busybox-hello prod --policy "$work/policy.toml"
cairn channel history busybox-hello prod

echo "== rebuild the release independently, from an empty directory, and compare the bytes"
(cd "$work" && cairn verify "$release")

echo "== verify every blob in the store"
cairn store verify

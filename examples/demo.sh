#!/usr/bin/env bash
# cairn's main job, end to end, on the embedded default store
# (~/.local/share/cairn/store, or $CAIRN_STORE) with keys in
# ~/.config/cairn/keys (or $CAIRN_KEYS):
#   store round trip -> hermetic build -> signed release with provenance ->
#   promotion to prod -> verification as an agent would -> independent rebuild.
# Needs root (namespaces) and Debian's busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building cairn"
cargo build --release --locked -q -p cairn-cli
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
key_id=$(cairn --json key list | python3 -c 'import json,sys; print(next(k["key_id"] for k in json.load(sys.stdin) if k["name"] == "demo"))')
printf '[[channel]]\nservice = "busybox-hello"\nchannel = "prod"\nkeys = ["%s"]\nthreshold = 1\n' "$key_id" > "$work/policy.toml"
cairn channel verify busybox-hello prod --policy "$work/policy.toml"

echo "== rebuild the release independently and compare the bytes"
cairn verify "$release"

echo "== verify every blob in the store"
cairn store verify

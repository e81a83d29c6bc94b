#!/usr/bin/env bash
# cairn's main job, end to end, on the embedded default store
# (~/.local/share/cairn/store, or $CAIRN_STORE) with keys in
# ~/.config/cairn/keys (or $CAIRN_KEYS):
#   store round trip -> hermetic build -> signed release with provenance ->
#   promotion to prod -> verification as an agent would -> independent rebuild
#   -> an agent running the service: the swap to v2 under its eyes, and the
#      automatic rollback of a broken v3.
# Needs root (namespaces), Debian's busybox-static, gcc and libc6-dev.
# CAIRN=/path/to/cairn uses that binary instead of building a release one.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [[ -z ${CAIRN:-} ]]; then
  echo "== building cairn (the first build compiles every dependency and optimizes across them: about 15 minutes on two cores)"
  cargo build --release --locked -p cairn-cli
  CAIRN=$repo/target/release/cairn
fi
bin=$(mktemp -d)
ln -s "$(realpath "$CAIRN")" "$bin/cairn"
export PATH="$bin:$PATH"
work=$(mktemp -d)
agent_pid=
cleanup() {
  [[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  rm -rf "$work" "$bin"
}
trap cleanup EXIT

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
XDG_STATE_HOME=$work/state cairn channel verify busybox-hello prod --policy "$work/policy.toml"
cairn channel history busybox-hello prod

echo "== rebuild the release independently, from an empty directory, and compare the bytes"
(cd "$work" && cairn verify "$release")

echo "== a service, deployed by an agent: examples/http-hello"
cd "$repo"
mkdir -p "$work/src"
cp -r examples/c-hello examples/http-hello "$work/src/"
rm -rf "$work/src/c-hello/toolchain" "$work/src/http-hello/toolchain"
cd "$work/src/http-hello"
./make-toolchain.sh >/dev/null
version() { printf '#define VERSION "%s"\n%s' "$1" "${2:-}" > src/version.h; }
version 1
v1=$(cairn release --key demo --version 1 2>/dev/null)
cairn promote "$v1" --channel prod --key demo >/dev/null
echo "released and promoted http-hello 1: $v1"

ports=$(python3 -c 'import socket
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
http=$(sed -n 1p <<<"$ports")
status=$(sed -n 2p <<<"$ports")
store=${CAIRN_STORE:-${XDG_DATA_HOME:-$HOME/.local/share}/cairn/store}
cat > "$work/agent.toml" <<EOF
store = "$store"
service = "http-hello"
channel = "prod"
set = "demo"
state_dir = "$work/agent"
poll_interval = "2s"
status_listen = "127.0.0.1:$status"

[trust]
keys = ["$(cairn key export demo)"]
threshold = 1

[sockets]
http = "127.0.0.1:$http"
EOF
echo "agent.toml:"
sed 's/^/    /' "$work/agent.toml"

# GET PATH PORT: the body of an HTTP answer (bash's /dev/tcp, no curl needed).
get() {
  exec 3<>"/dev/tcp/127.0.0.1/$2" || return 1
  printf 'GET %s HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n' "$1" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}
# wait_for WHAT COMMAND…: retries COMMAND for up to 60 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2
  tail -20 "$work/agent.log" >&2
  return 1
}
answers() { get / "$http" | grep -q "http-hello $1 "; }
status_has() { get /status "$status" | grep -q "$1"; }

cairn agent --config "$work/agent.toml" 2>"$work/agent.log" &
agent_pid=$!
wait_for "v1 to answer" answers 1
echo "the agent runs it: $(get / "$http")"
wait_for "v1 healthy" status_has '"state":"running","health":"healthy"'
cairn status http-hello --set demo

echo "== promote v2 and watch the swap (a client keeps asking meanwhile)"
version 2
v2=$(cairn release --key demo --version 2 2>/dev/null)
(for _ in $(seq 200); do get / "$http" | cut -d' ' -f1-4; sleep 0.05; done | uniq -c) > "$work/seen" &
watcher=$!
cairn promote "$v2" --channel prod --key demo >/dev/null
wait_for "v2 to answer" answers 2
wait "$watcher"
echo "answers while swapping (count, answer):"
sed 's/^/    /' "$work/seen"
grep -E 'accepted|serving|stopped' "$work/agent.log" | sed 's/^.*\(INFO\|WARN\|ERROR\)[^ ]* */    /'
cairn status http-hello --set demo

echo "== promote a broken v3 (its /healthz answers 503) and watch the rollback"
version 3 '#define BROKEN 1'
v3=$(cairn release --key demo --version 3 2>/dev/null)
cairn promote "$v3" --channel prod --key demo >/dev/null
wait_for "the rollback" status_has '"rollbacks":1'
grep -E 'accepted|rolling back|failed' "$work/agent.log" | tail -3 | sed 's/^.*\(INFO\|WARN\|ERROR\)[^ ]* */    /'
answers 2 && echo "still serving: $(get / "$http")"
# A halted rollout is what `cairn status` exits 3 for: say so, and fail on
# anything else.
rc=0; cairn status http-hello --set demo || rc=$?
[[ $rc == 3 ]] || { echo "cairn status exited $rc, not 3 (rollout halted)" >&2; exit 1; }
echo "(cairn status exited 3: the rollout is halted)"
echo "the service's log:"
cairn logs http-hello --config "$work/agent.toml" | sed 's/^/    /'

echo "== stop the agent: it stops the service gracefully"
kill "$agent_pid"
wait "$agent_pid"
agent_pid=
get / "$http" 2>/dev/null || echo "nothing answers on 127.0.0.1:$http any more"

echo "== verify every blob in the store"
cairn store verify

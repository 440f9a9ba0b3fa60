#!/usr/bin/env bash
# make demo: start a daemon on loopback, deploy release v1, keep requests
# flowing through the proxy while v2 is deployed, shut down, and end with
# one line: how many requests, how many failed (0), which release answered.
# Everything lives in a scratch directory that is removed at the end; when
# a step fails, the end of the daemon's log is shown before that.
# Needs bin/rollbridge and bin/demo (ROLLBRIDGE_BIN and DEMO_BIN override).
set -euo pipefail
cd "$(dirname "$0")/../.."
rollbridge=${ROLLBRIDGE_BIN:-$PWD/bin/rollbridge}
demo=${DEMO_BIN:-$PWD/bin/demo}
config=$PWD/examples/demo/rollbridge.js
export ROLLBRIDGE_DEMO_DIR
ROLLBRIDGE_DEMO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rollbridge-demo.XXXXXX")
work=$ROLLBRIDGE_DEMO_DIR
daemon_pid=""
load_pid=""

cleanup() {
  status=$?
  if [ -n "$load_pid" ]; then
    touch "$work/stop"
    wait "$load_pid" 2>/dev/null || true
  fi
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    "$rollbridge" shutdown -c "$config" >/dev/null 2>&1 || kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$work/daemon.log" ]; then
    echo "==> the demo failed; the last lines of the daemon's log:" >&2
    tail -n 20 "$work/daemon.log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

for release in v1 v2; do
  mkdir -p "$work/releases/$release"
  cp "$demo" "$work/releases/$release/demo"
done

echo "==> starting the daemon"
"$rollbridge" daemon -c "$config" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do
  "$rollbridge" status -c "$config" >/dev/null 2>&1 && break
  sleep 0.1
done
url=$("$rollbridge" status -c "$config" | "$demo" proxy-url)
echo "==> proxy listening on $url"

# A deploy's reply is JSON for scripts; on a terminal its progress shows on
# stderr, and an error always does.
echo "==> deploying release v1"
"$rollbridge" deploy -c "$config" --release-path "$work/releases/v1" --release-id v1 >/dev/null

echo "==> deploying release v2 while 8 clients send requests through the proxy"
"$demo" load "$url" "$work/stop" "the v1 → v2 deploy" >"$work/load.out" &
load_pid=$!
sleep 1
"$rollbridge" deploy -c "$config" --release-path "$work/releases/v2" --release-id v2 >/dev/null
sleep 1
touch "$work/stop"
load_status=0
wait "$load_pid" || load_status=$?
load_pid=""

echo "==> shutting down"
"$rollbridge" shutdown -c "$config" >/dev/null
wait "$daemon_pid"
daemon_pid=""

echo
cat "$work/load.out"
exit "$load_status"

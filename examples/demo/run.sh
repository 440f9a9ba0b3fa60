#!/usr/bin/env bash
# make demo: start a daemon on loopback, deploy release v1, keep requests
# flowing through the proxy while v2 is deployed, show the failure count
# (0) and the status, then shut down. Needs bin/rollbridge and bin/demo.
set -euo pipefail
cd "$(dirname "$0")/../.."
rollbridge=$PWD/bin/rollbridge
config=$PWD/examples/demo/rollbridge.js
export ROLLBRIDGE_DEMO_DIR
ROLLBRIDGE_DEMO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rollbridge-demo.XXXXXX")
work=$ROLLBRIDGE_DEMO_DIR
daemon_pid=""

cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    "$rollbridge" shutdown -c "$config" >/dev/null 2>&1 || kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

for release in v1 v2; do
  mkdir -p "$work/releases/$release"
  cp bin/demo "$work/releases/$release/demo"
done

echo "==> starting the daemon (log: $work/daemon.log)"
"$rollbridge" daemon -c "$config" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do
  "$rollbridge" status -c "$config" >/dev/null 2>&1 && break
  sleep 0.1
done
url=$("$rollbridge" status -c "$config" | bin/demo proxy-url)
echo "==> proxy listening on $url"

echo "==> deploying release v1"
"$rollbridge" deploy -c "$config" --release-path "$work/releases/v1" --release-id v1

echo "==> sending requests through the proxy while release v2 is deployed"
bin/demo load "$url" "$work/stop" >"$work/load.out" &
load_pid=$!
sleep 1
"$rollbridge" deploy -c "$config" --release-path "$work/releases/v2" --release-id v2
sleep 1
touch "$work/stop"
load_status=0
wait "$load_pid" || load_status=$?
cat "$work/load.out"

echo "==> status"
"$rollbridge" status -c "$config"

echo "==> shutting down"
"$rollbridge" shutdown -c "$config"
wait "$daemon_pid"
daemon_pid=""
exit "$load_status"

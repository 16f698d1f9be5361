#!/bin/bash
# The sync on the loop against the pool in one `mq up`, message by message (bench/sync-parity.ts):
# builds HEAD with bench/sync-parity.patch in a scratch copy (dist/mq is not touched), starts its
# `mq up --fsync always` with MQ_SYNC_ALTERNATE=1, and runs RUNS paced streams against it.
#   RUNS=5 RATE=5000 SECONDS_EACH=6 bench/sync-parity.sh
# Stops only the process it started (by PID) and removes its directories.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/mq-sync-parity-XXXX)
trap '[ -n "${UP:-}" ] && kill "$UP" 2>/dev/null; rm -rf "$W"' EXIT
"$ROOT/bench/patched-build.sh" "$ROOT/bench/sync-parity.patch" "$W"
MQ_SYNC_ALTERNATE=1 "$W/dist/mq" up --data "$W/data" --listen 127.0.0.1:0 --socket "$W/s.sock" --fsync always > "$W/up.log" 2>&1 &
UP=$!
for _ in $(seq 100); do [ -S "$W/s.sock" ] && break; sleep 0.1; done
for _ in $(seq "${RUNS:-5}"); do
  echo "$(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg) $("$ROOT/node_modules/.bin/bun" "$ROOT/bench/sync-parity.ts" "$ROOT" "$W/s.sock" "${RATE:-5000}" "${SECONDS_EACH:-6}")"
done
kill $UP; wait $UP 2>/dev/null || true

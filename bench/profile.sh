#!/bin/bash
# CPU profiles of the server and the local broker during `mq bench --count 200000`
# (or the bench options in MQ_BENCH_ARGS, e.g. "--count 20000 --subs 8"; server options in
# MQ_SERVER_ARGS, e.g. "--store postgres://mq@127.0.0.1:5432/db")
# (docs/benchmarks.md): both run under Bun's sampling profiler, from source so that frames
# carry file names (MQ_PROFILE_BIN=dist/mq profiles the compiled binary instead, via BUN_OPTIONS);
# SIGTERM writes the .cpuprofile files; then the top 10 self-time items of each. The bench
# client is profiled too (from source; a profile is written when it exits).
#
#     [MQ_PROFILE_INTERVAL_US=1000] bench/profile.sh [OUT_DIR=/tmp/mq-profile]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-/tmp/mq-profile}
PORT=7791
INTERVAL=${MQ_PROFILE_INTERVAL_US:-1000} # sampling interval, µs
rm -rf "$OUT" && mkdir -p "$OUT"
# As the daemons run anyway (lib/cli/allocator.ts), set here: under --cpu-prof they do not execute themselves again for it.
export MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:--1}
run() { # run DIR ARGS...: one daemon under the profiler (exec: $! is its PID), profile written to DIR
  local dir=$1; shift
  if [ -n "${MQ_PROFILE_BIN:-}" ]; then BUN_OPTIONS="--cpu-prof --cpu-prof-interval=$INTERVAL --cpu-prof-dir=$dir" exec "$MQ_PROFILE_BIN" "$@"
  else exec "$ROOT/node_modules/.bin/bun" --cpu-prof --cpu-prof-interval="$INTERVAL" --cpu-prof-dir="$dir" "$ROOT/cmd/mq.ts" "$@"; fi
}
date -u; cat /proc/loadavg
# shellcheck disable=SC2086 # the options are words on purpose
run "$OUT/server" server --listen 127.0.0.1:$PORT --data "$OUT/data/server" ${MQ_SERVER_ARGS:-} 2> "$OUT/server.log" &
SERVER=$!
for _ in $(seq 50); do grep -q "listening on" "$OUT/server.log" && break; sleep 0.2; done
run "$OUT/local" local --server 127.0.0.1:$PORT --data "$OUT/data/local" --socket "$OUT/l.sock" 2> "$OUT/local.log" &
LOCAL=$!
for _ in $(seq 50); do grep -q "connected to the server" "$OUT/local.log" && break; sleep 0.2; done
# shellcheck disable=SC2086 # the options are words on purpose
timeout 300 "$ROOT/node_modules/.bin/bun" --cpu-prof --cpu-prof-interval="$INTERVAL" --cpu-prof-dir="$OUT/client" "$ROOT/cmd/mq.ts" bench ${MQ_BENCH_ARGS:---count 200000} --socket "$OUT/l.sock" | tail -4 || true
grep -E "VmRSS|VmHWM" /proc/$SERVER/status /proc/$LOCAL/status
kill -TERM $LOCAL; wait $LOCAL || true
kill -TERM $SERVER; wait $SERVER || true
for p in "$OUT"/server/*.cpuprofile "$OUT"/local/*.cpuprofile "$OUT"/client/*.cpuprofile; do "$ROOT/node_modules/.bin/bun" "$ROOT/bench/profile-top.ts" "$p" 10; done
rm -rf "$OUT/data"

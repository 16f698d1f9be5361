#!/bin/bash
# Where a message of a paced stream spends its time inside `mq up` (docs/benchmarks.md, "Latency
# at 5,000 msgs/s and one publish in flight: where the time goes"). Builds HEAD with bench/latency-points.patch in a scratch
# copy (probes at 8 points of mq up that record the age of each frame's first payload; the
# bench-peers publisher stamps its messages), runs the bench-peers latency scenario (s3) against
# that `mq up`, and prints per hop, per message, p50 / p90 / p99 / mean in µs
# (bench/latency-points.py). dist/mq is not touched.
#   FSYNC=always|never RUNS=1 bench/latency-points.sh [BENCH_PEERS=/tmp/bench-peers]
# Stops only the processes it started (by PID) and removes its directories.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${1:-/tmp/bench-peers}
W=$(mktemp -d /tmp/mq-latency-points-XXXX)
trap '[ -n "${UP:-}" ] && kill "$UP" 2>/dev/null; rm -rf "$W"' EXIT
"$ROOT/bench/patched-build.sh" "$ROOT/bench/latency-points.patch" "$W"
for run in $(seq "${RUNS:-1}"); do
  D=$W/run$run; mkdir -p "$D"
  MQ_PROBE=$D/points.json "$W/dist/mq" up --data "$D/data" --listen 127.0.0.1:7697 --socket "$D/s.sock" --fsync "${FSYNC:-always}" > "$D/up.log" 2>&1 & UP=$!
  for _ in $(seq 100); do [[ -S $D/s.sock ]] && break; sleep 0.1; done
  echo "== run $run $(date -u +%FT%TZ) fsync ${FSYNC:-always} load $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd "$PEERS" && MQ_REPO=$ROOT timeout 120 ./node_modules/.bin/bun run.ts --target mq --url "unix:$D/s.sock" --scenario s3 --rate 5000 --duration 5 | tail -1)
  kill $UP; wait $UP 2>/dev/null || true
  python3 "$ROOT/bench/latency-points.py" "$D/points.json"
done

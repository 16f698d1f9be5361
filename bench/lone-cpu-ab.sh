#!/bin/bash
# A/B of the CPU of one publish in flight (bench/lone-cpu.ts): A's and B's `mq up --fsync F` run
# side by side, and ROUNDS rounds alternate (order swapped each round) a one-in-flight client of
# each side's own library against its side. AENV / BENV: environment for A's / B's `mq up`.
#   [AENV=...] [BENV=...] bench/lone-cpu-ab.sh A_BIN A_CHECKOUT B_BIN B_CHECKOUT [ROUNDS=6] [COUNT=20000] [FSYNC=never] > OUT
#   python3 bench/lone-cpu-ab.py OUT
# Stops only the processes it started (by PID) and removes its directory.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ABIN=$1; AREPO=$2; BBIN=$3; BREPO=$4; ROUNDS=${5:-6}; N=${6:-20000}; F=${7:-never}
D=$(mktemp -d /tmp/mq-lone-cpu-XXXX)
env ${AENV:-} "$ABIN" up --data "$D/a" --listen 127.0.0.1:0 --socket "$D/a.sock" --fsync "$F" > "$D/a.log" 2>&1 & PA=$!
env ${BENV:-} "$BBIN" up --data "$D/b" --listen 127.0.0.1:0 --socket "$D/b.sock" --fsync "$F" > "$D/b.log" 2>&1 & PB=$!
for _ in $(seq 100); do [ -S "$D/a.sock" ] && [ -S "$D/b.sock" ] && break; sleep 0.1; done
for r in $(seq "$ROUNDS"); do
  order="A B"; [ $((r % 2)) = 0 ] && order="B A"
  for s in $order; do
    if [ "$s" = A ]; then out=$("$ROOT/node_modules/.bin/bun" "$ROOT/bench/lone-cpu.ts" "$AREPO" "$D/a.sock" "$N" $PA)
    else out=$("$ROOT/node_modules/.bin/bun" "$ROOT/bench/lone-cpu.ts" "$BREPO" "$D/b.sock" "$N" $PB); fi
    echo "$s round=$r load=$(cut -d' ' -f1 /proc/loadavg) $out"
  done
done
kill $PA $PB; wait $PA $PB 2>/dev/null; rm -rf "$D"

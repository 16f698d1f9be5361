#!/bin/bash
# How long a local broker given `--server A,B` takes to fail over (docs/benchmarks.md): per
# round, two `mq server --store memory` and one `mq local --server A,B`; A gets SIGNAL (KILL:
# a crash, the connection resets; STOP: a frozen host, only the heartbeat notices), and the
# time until the local broker logs "failed over" is printed.
#   bench/failover-time.sh [BIN] [KILL|STOP] [ROUNDS]
# Stops only the processes it started (by PID) and removes its directories.
set -u
BIN=${1:-dist/mq}; SIG=${2:-KILL}; ROUNDS=${3:-7}
for i in $(seq 1 "$ROUNDS"); do
  d=$(mktemp -d /tmp/mq-failover-XXXX); pa=$((17700 + i * 2)); pb=$((pa + 1))
  "$BIN" server --listen 127.0.0.1:$pa --data "$d/a" --store memory 2> "$d/a.log" & a=$!
  "$BIN" server --listen 127.0.0.1:$pb --data "$d/b" --store memory 2> "$d/b.log" & b=$!
  for _ in $(seq 100); do grep -q "listening on" "$d/a.log" && grep -q "listening on" "$d/b.log" && break; sleep 0.05; done
  "$BIN" local --server 127.0.0.1:$pa,127.0.0.1:$pb --data "$d/l" --socket "$d/l.sock" 2> "$d/l.log" & l=$!
  for _ in $(seq 100); do grep -q "connected to the server" "$d/l.log" && break; sleep 0.05; done
  t0=$(date +%s%3N); kill -"$SIG" $a
  for _ in $(seq 3000); do grep -q "failed over" "$d/l.log" && break; sleep 0.005; done
  t1=$(date +%s%3N)
  echo "round $i: $SIG → failed over in $((t1 - t0)) ms (load $(cut -d' ' -f1 /proc/loadavg))"
  kill -KILL $a; kill $l $b; wait $a $l $b 2> /dev/null; rm -rf "$d"
done

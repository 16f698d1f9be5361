#!/bin/bash
# Per-hop costs of single publishes (docs/benchmarks.md, "A single publish"): starts `mq up`
# (--fsync always), warms up, then records 300 `mq bench --window 1` publishes with
# `perf trace -a` (root) and prints the median and p90 of each hop (bench/hop-trace.py).
#   [LINK=memory|tcp] [MQ_UP_ENV="K=V ..."] bench/hop-trace.sh [BIN (default dist/mq)] [LABEL]
# LINK: `mq up --link` (default: the binary's own default). Only the threads of this `mq up`
# count (their ids are read from /proc before it stops), not other processes' pool threads.
# Stops only the processes it started (by PID) and removes its data directory.
BIN=${1:-dist/mq}; LABEL=${2:-mq}; HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d /tmp/mq-hop-trace-XXXX)
# shellcheck disable=SC2086 # the words of MQ_UP_ENV on purpose
env ${MQ_UP_ENV:-} "$BIN" up --data "$D" --listen 127.0.0.1:0 --socket "$D/s.sock" --fsync always ${LINK:+--link "$LINK"} > "$D/up.log" 2>&1 & UP=$!
for _ in $(seq 50); do grep -q "mq is up" "$D/up.log" 2>/dev/null && break; sleep 0.1; done
"$BIN" bench --socket "$D/s.sock" --count 200 --window 1 --subs 0 --topic w1 >/dev/null 2>&1
timeout 30 perf trace -a -e sendto,recvfrom,pwrite64,fsync,fdatasync,write -o "$D/trace.txt" & PT=$!
sleep 2
"$BIN" bench --socket "$D/s.sock" --count 300 --window 1 --subs 0 --topic w1 >/dev/null 2>"$D/bench.err" & B=$!
wait $B
sleep 0.3; kill -INT $PT; wait $PT 2>/dev/null
ls /proc/$UP/task > "$D/tids.txt"
echo "== $LABEL $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$HERE/hop-trace.py" "$D/trace.txt" $UP $B "$D/tids.txt"
kill $UP; wait $UP 2>/dev/null; rm -rf "$D"

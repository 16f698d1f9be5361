#!/usr/bin/env bash
# Fan-out 1 -> 8 (docs/benchmarks.md, "Fan-out once per local broker"): `mq server` and
# `mq local` as two processes, so that the CPU of each is measured on its own (utime + stime
# from /proc/PID/stat, in ticks of 10 ms, over the `mq bench` run); binaries A and B
# alternate, PAIRS times, each on a fresh data directory.
#
#     bench/fanout-ab.sh A_BIN B_BIN [PAIRS=6] [COUNT=20000]
#
# One line per run: label, deliveries/s (all 8 subscribers), seconds, server ticks, local
# ticks, the server's fanout_shared (None: a binary without it), load average, and the
# bench client's CPU (user + sys seconds, all publishers and subscribers in one process).
set -uo pipefail
A=${1:?A binary}; B=${2:?B binary}; PAIRS=${3:-6}; COUNT=${4:-20000}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() { # label binary port
  local D; D=$(mktemp -d /tmp/mq-fanout-ab-XXXX)
  "$2" server --data "$D/server" --listen "127.0.0.1:$3" >"$D/server.out" 2>&1 </dev/null &
  local SP=$!
  for _ in $(seq 1 100); do grep -q listening "$D/server.out" && break; sleep 0.1; done
  "$2" local --server "127.0.0.1:$3" --data "$D/local" --socket "$D/local.sock" >"$D/local.out" 2>&1 </dev/null &
  local LP=$!
  for _ in $(seq 1 100); do grep -q "connected to the server" "$D/local.out" && break; sleep 0.1; done
  local s0 l0 s1 l1 J S
  s0=$(ticks $SP); l0=$(ticks $LP)
  J=$(/usr/bin/time -f "%U %S" -o "$D/client.time" timeout 120 "$2" bench -s "$D/local.sock" --count "$COUNT" --subs 8 --json 2>/dev/null | tail -1)
  local C; C=$(awk '{printf "%.2f", $1 + $2}' "$D/client.time")
  s1=$(ticks $SP); l1=$(ticks $LP)
  S=$("$2" stats -s "$D/local.sock" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["server"].get("fanout_shared"))')
  kill $LP; wait $LP 2>/dev/null; kill $SP; wait $SP 2>/dev/null; rm -rf "$D"
  python3 -c "import json; j=json.loads('''$J'''); print('$1', j['sub_msgs_per_s'], j['seconds'], $s1-$s0, $l1-$l0, '$S', '$(cut -d' ' -f1 /proc/loadavg)', 'client', $C)"
}
for _ in $(seq 1 "$PAIRS"); do
  run A "$A" 17731
  run B "$B" 17732
done

#!/usr/bin/env bash
# A/B of two mq builds through the bench-peers harness (docs/benchmarks.md, "Segments with zeros
# written ahead"): both `mq up --fsync always` run side by side; runs alternate between them
# (order swapped every pair) with no restart in between. After each s4 sync / s3 / s4 async run
# the in-process mean fdatasync time is read from --http /metrics (mq_fsync_seconds_sum/count).
#   HARNESS=/tmp/bench-peers-NAME A=/work/main/dist/mq BB=dist/mq REPO=$PWD \
#     bench/zero-tail-ab.sh PAIRS OUT.jsonl s4sync fsync s3 s4async
# Output: OUT.jsonl (harness rows, label main/new) and OUT.jsonl.log. Stops only the PIDs it started.
set -uo pipefail
REPO=$(cd "${REPO:-.}" && pwd)
# Binaries resolved before leaving the caller's directory.
declare -A BIN=([main]=$(readlink -f "${A:?set A to the old binary}") [new]=$(readlink -f "${BB:?set BB to the new binary}"))
cd "${HARNESS:?set HARNESS to a bench-peers copy}"
PAIRS=$1; OUT=$2; shift 2
B=./node_modules/.bin/bun
export MQ_REPO=$REPO
# The harness reads server PIDs (for CPU) from its own run directory.
RUN=$(grep -o "/tmp/peers-run[A-Za-z0-9_-]*" lib/util.ts | head -1); mkdir -p "$RUN"
declare -A PORT=([main]=27731 [new]=27732)
declare -A HTTP=([main]=27741 [new]=27742)
start() { local w=$1 d=/tmp/zero-tail-ab-$1; rm -rf $d; mkdir -p $d
  setsid nohup ${BIN[$w]} up --data $d/data --listen 127.0.0.1:${PORT[$w]} --socket $d/local.sock --http 127.0.0.1:${HTTP[$w]} --fsync always >$RUN/ab-$w.out 2>&1 </dev/null &
  echo $! > $RUN/ab-$w.pid
  for _ in $(seq 1 100); do [[ -S $d/local.sock ]] && break; sleep 0.1; done; }
stop() { local pid=$(cat $RUN/ab-$1.pid); kill $pid; for _ in $(seq 1 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; rm -f $RUN/ab-$1.pid; }
start main; start new
for i in $(seq 1 $PAIRS); do
  order="main new"; [[ $(( i % 2 )) == 0 ]] && order="new main"
  for w in $order; do
    U="--url unix:/tmp/zero-tail-ab-$w/local.sock --server ab-$w --label $w --rep $i --out $OUT"
    echo "## pair $i $w $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT.log
    for sc in "$@"; do
      case $sc in
        s4sync) timeout 150 $B run.ts --target mq --scenario s4 --mode sync --count 3000 $U 2>&1 | tail -1 >> $OUT.log
                echo "$w metrics $(curl -s http://127.0.0.1:${HTTP[$w]}/metrics | grep -E '^mq_fsync_seconds_(sum|count)' | tr '\n' ' ')" >> $OUT.log ;;
        s3) timeout 150 $B run.ts --target mq --scenario s3 --rate 5000 --duration 5 $U 2>&1 | tail -1 >> $OUT.log
                echo "$w metrics $(curl -s http://127.0.0.1:${HTTP[$w]}/metrics | grep -E '^mq_fsync_seconds_(sum|count)' | tr '\n' ' ')" >> $OUT.log ;;
        s4async) timeout 150 $B run.ts --target mq --scenario s4 --mode async --count 100000 $U 2>&1 | tail -1 >> $OUT.log
                echo "$w metrics $(curl -s http://127.0.0.1:${HTTP[$w]}/metrics | grep -E '^mq_fsync_seconds_(sum|count)' | tr '\n' ' ')" >> $OUT.log ;;
        fsync) timeout 90 $B limits/fsync.ts --dir /tmp/zero-tail-ab-fsync --count 1000 --size 4096 --out $OUT --rep $i 2>&1 | sed "s/^/$w /" | tail -1 >> $OUT.log ;;
      esac
    done
  done
done
stop main; stop new
echo done >> $OUT.log

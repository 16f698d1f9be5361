#!/usr/bin/env bash
# Alternating A/B pairs of mq through a copy of the peers harness (../shared/bench-peers; see
# its README), with the CPU of the `mq up` instance over each run: utime + stime from
# /proc/PID/stat, ticks of 10 ms. Per pair, A then B: servers-mq.sh start (a fresh `mq up`
# --fsync always and one --fsync never), the scenario on each instance, stop.
#
#     PEERS=/tmp/bench-peers-NAME [PEERS_TAG=-NAME] [MQ_REPO_A=/work/main] [MQ_REPO_B=.] \
#       bench/peers-ab.sh A_BIN B_BIN PAIRS --scenario s2 --count 25000 --subs 8 > OUT
#     ./node_modules/.bin/bun bench/peers-ab-summary.ts OUT
#
# PEERS_TAG is what the copy's servers-mq.sh puts after "peers" in its paths (/tmp/peers-run-NAME,
# /tmp/peers-NAME-mq-nf): empty for the shared harness. MQ_REPO_A/B: the checkouts whose client
# library the harness loads for A and B. One line per run: side, pair, instance, load, up_ticks,
# and the harness's figures (secs, msgs/s, deliveries/s, client and server CPU %, and s3's p50/p99 µs).
set -uo pipefail
A=${1:?A binary}; B=${2:?B binary}; PAIRS=${3:?pairs}; shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:?set PEERS to a copy of the peers harness}
TAG=${PEERS_TAG:-}
RUN=/tmp/peers-run$TAG
cd "$PEERS"
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# The main thread alone (its task id is the PID): the JavaScript thread, without the JIT and GC threads.
main_ticks() { awk '{print $14+$15}' "/proc/$1/task/$1/stat"; }
for i in $(seq "$PAIRS"); do
  for side in A B; do
    bin=$A; repo=${MQ_REPO_A:-/work/main}
    if [ $side = B ]; then bin=$B; repo=${MQ_REPO_B:-$ROOT}; fi
    MQ_BIN=$bin ./servers-mq.sh start >/dev/null
    for inst in ${INSTANCES:-mq mq-nf}; do
      nf=""; [ "$inst" = mq-nf ] && nf="--url unix:/tmp/peers$TAG-mq-nf/local.sock --server mq-nf"
      pid=$(cat "$RUN/$inst.pid"); t0=$(ticks "$pid"); m0=$(main_ticks "$pid")
      # shellcheck disable=SC2086 # the options are words on purpose
      r=$(MQ_REPO=$repo timeout 150 ./node_modules/.bin/bun run.ts --target mq $nf "$@" 2>&1 | tail -1)
      t1=$(ticks "$pid"); m1=$(main_ticks "$pid")
      echo "$side pair=$i $inst load=$(cut -d' ' -f1 /proc/loadavg) up_ticks=$((t1 - t0)) main_ticks=$((m1 - m0)) $(echo "$r" | grep -o ' secs=[0-9.]*\|msgs_per_s=[0-9]*\|deliveries_per_s=[0-9]*\|client_cpu_pct=[0-9]*\|server_cpu_pct=[0-9]*\|p50_us=[0-9]*\|p99_us=[0-9]*\|steal_pct=[0-9]*\|FAILED.*' | tr '\n' ' ')"
    done
    ./servers-mq.sh stop >/dev/null
  done
done

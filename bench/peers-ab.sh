#!/bin/bash
# A/B pairs of one bench-peers scenario for two mq builds (docs/benchmarks.md, "the upstream
# path"): per pair, build A then build B, each as the harness's two `mq up` instances
# (servers-mq.sh: --fsync always and --fsync never), the scenario run once on each. Prints one
# line per run: label, instance, load, msgs/s, the CPU seconds `mq up` used during the run
# (user+sys from /proc, warm-up included), the harness's client and server CPU %.
# bench/peers-ab-summary.py OUT gives medians, ranges and per-pair changes.
#
#   PEERS=/tmp/bench-peers-NAME PEERS_RUN=/tmp/peers-run-NAME NF_SOCKET=/tmp/peers-NAME-mq-nf/local.sock \
#     bench/peers-ab.sh PAIRS A_BIN A_REPO B_BIN B_REPO -- run.ts options (e.g. --target mq --scenario s1 --count 100000)
#
# A_REPO/B_REPO: the checkouts whose client library the harness loads (MQ_REPO). Starts and
# stops the instances only through the harness's servers-mq.sh (by their PID files).
set -u
PAIRS=$1 A_BIN=$(realpath "$2") A_REPO=$(realpath "$3") B_BIN=$(realpath "$4") B_REPO=$(realpath "$5")
[ "${6:-}" = "--" ] || { echo "usage: $0 PAIRS A_BIN A_REPO B_BIN B_REPO -- RUN.TS OPTIONS" >&2; exit 2; }
shift 6
: "${PEERS:?set PEERS to the harness copy}" "${PEERS_RUN:?set PEERS_RUN to its PID directory}" "${NF_SOCKET:?set NF_SOCKET to its --fsync never socket}"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user+sys clock ticks of a process
field() { echo "$1" | grep -o "$2=[0-9]*" | head -1 | cut -d= -f2; } # the first NAME=number of a harness line
one() { # LABEL BIN REPO RUN.TS-OPTIONS...
  local label=$1 bin=$2 repo=$3; shift 3
  (cd "$PEERS" && MQ_BIN=$bin MQ_REPO=$repo ./servers-mq.sh start >/dev/null)
  local tick; tick=$(getconf CLK_TCK)
  for inst in mq mq-nf; do
    local pid before line url=()
    pid=$(cat "$PEERS_RUN/$inst.pid"); before=$(cpu "$pid")
    [ "$inst" = mq-nf ] && url=(--url "unix:$NF_SOCKET" --server mq-nf)
    line=$(cd "$PEERS" && MQ_REPO=$repo timeout 150 ./node_modules/.bin/bun run.ts --timeout 90 "${url[@]}" "$@" 2>&1 | grep -v '^\s*$' | tail -1)
    echo "$label $inst load=$(cut -d' ' -f1 /proc/loadavg) rate=$(field "$line" msgs_per_s) up_cpu=$(awk -v a="$before" -v b="$(cpu "$pid")" -v t="$tick" 'BEGIN{printf "%.2f", (b-a)/t}') client=$(field "$line" client_cpu_pct) srv=$(field "$line" server_cpu_pct)"
  done
  (cd "$PEERS" && ./servers-mq.sh stop >/dev/null)
}
for _ in $(seq "$PAIRS"); do
  one A "$A_BIN" "$A_REPO" "$@"
  one B "$B_BIN" "$B_REPO" "$@"
done

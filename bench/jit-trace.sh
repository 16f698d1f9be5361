#!/usr/bin/env bash
# One run of the peers harness (a copy: PEERS, PEERS_TAG as for bench/peers-ab.sh) against a
# fresh `mq up` started FROM SOURCE (MQ_SRC, default this checkout) with JavaScriptCore options
# in its environment (JIT_ENV, e.g. "BUN_JSC_printEachOSRExit=1 BUN_JSC_verboseDFGOSRExit=1"),
# which a compiled binary cannot be given. Writes the instance's stderr to OUT (the JSC log),
# the client's output to OUT.client (CLIENT_ENV: JSC options for the client process), and
# `mq up`'s CPU ticks per thread name over its life to OUT.threads.
#
#     PEERS=/tmp/bench-peers-NAME PEERS_TAG=-NAME JIT_ENV="BUN_JSC_printEachOSRExit=1 ..." \
#       bench/jit-trace.sh OUT mq --scenario s2 --count 25000 --subs 8     # or mq-nf --scenario s1 ...
#     python3 bench/jit-exits.py OUT 30        # the exit sites, ranked (see there for the options)
set -uo pipefail
OUT=$(realpath -m "${1:?OUT}"); INST=${2:?instance: mq or mq-nf}; shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${MQ_SRC:-$ROOT}
PEERS=${PEERS:?set PEERS to a copy of the peers harness}
TAG=${PEERS_TAG:-}
RUN=/tmp/peers-run$TAG
WRAP=$(mktemp /tmp/mq-src-XXXXXX.sh)
printf '#!/usr/bin/env bash\nexec env %s "%s/node_modules/.bin/bun" "%s/cmd/mq.ts" "$@"\n' "${JIT_ENV:-}" "$SRC" "$SRC" >"$WRAP"
chmod +x "$WRAP"
cd "$PEERS"
MQ_BIN=$WRAP ./servers-mq.sh start >/dev/null
nf=""; [ "$INST" = mq-nf ] && nf="--url unix:/tmp/peers$TAG-mq-nf/local.sock --server mq-nf"
# shellcheck disable=SC2086 # the options are words on purpose
MQ_REPO=${MQ_REPO:-$SRC} timeout 150 env ${CLIENT_ENV:-} ./node_modules/.bin/bun run.ts --target mq $nf "$@" >"$OUT.client" 2>&1
tail -1 "$OUT.client"
pid=$(cat "$RUN/$INST.pid")
for t in /proc/"$pid"/task/*; do echo "$(tr ' ' '_' <"$t/comm") $(awk '{print $14+$15}' "$t/stat")"; done |
  awk '{s[$1]+=$2} END {for (k in s) printf "%s=%d ", k, s[k]; print ""}' >"$OUT.threads"
MQ_BIN=$WRAP ./servers-mq.sh stop >/dev/null
cp "$RUN/$INST.out" "$OUT"
rm -f "$WRAP"

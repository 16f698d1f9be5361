#!/usr/bin/env bash
# Throughput with 1, 2 and 3 `mq server`s on one PostgreSQL database (docs/scale-out.md):
# a throwaway PostgreSQL (initdb in a temp directory, as the postgres user when root), then
# per round and per N: a fresh database, N servers on it, one local broker per server, and
# one `mq bench` per local broker at once, each on its own topic (--pubs 1 --subs 1). The
# rounds alternate N = 1, 2, 3, so that load from others on the box spreads over all three.
#
#     bench/scale-out.sh [MQ_BIN=dist/mq] [ROUNDS=5] [COUNT=20000] [SIZE=128] [TOPICS=own|same]
#
# TOPICS=same: every bench publishes to one topic (the servers take turns on its row) and
# each subscriber receives what all of them publish.
#
# SERVERS="1 3" (env): only those N. One line per run: N, the summed publish and delivery rates (msgs/s) of the N benches, the
# load average; then the medians per N.
set -uo pipefail
MQ=$(realpath "${1:-dist/mq}"); ROUNDS=${2:-5}; COUNT=${3:-20000}; SIZE=${4:-128}; TOPICS=${5:-own}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
AS=(); [ "$(id -u)" = 0 ] && AS=(runuser -u postgres --)
W=$(mktemp -d /tmp/mq-scale-out-XXXX); chmod 755 "$W"; mkdir -p "$W/pg"; [ ${#AS[@]} -gt 0 ] && chown postgres "$W/pg"
PGPORT=$((20000 + RANDOM % 20000))
"${AS[@]}" "$BIN/initdb" -D "$W/pg/data" -U mq --auth=trust -E UTF8 --no-instructions >/dev/null
"${AS[@]}" "$BIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w -o "-p $PGPORT -k $W/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  "${AS[@]}" "$BIN/pg_ctl" -D "$W/pg/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
psql_do() { "${AS[@]}" "$BIN/psql" -h 127.0.0.1 -p "$PGPORT" -U mq -d postgres -qAt -c "$1"; }
waitfor() { for _ in $(seq 1 150); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no '$2' in $1" >&2; return 1; }

run() { # N round
  local n=$1 db="mq_bench_$1_$2" d="$W/run-$1-$2" i
  mkdir -p "$d"; psql_do "create database $db"
  local url="postgres://mq@127.0.0.1:$PGPORT/$db" servers=() locals=()
  for i in $(seq 1 "$n"); do
    "$MQ" server --store "$url" --listen 127.0.0.1:0 >"$d/server$i.out" 2>&1 </dev/null & servers+=($!); PIDS+=($!)
    waitfor "$d/server$i.out" "listening on" || return
  done
  for i in $(seq 1 "$n"); do
    local port; port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$d/server$i.out" | grep -o '[0-9]*$')
    "$MQ" local --server "127.0.0.1:$port" --data "$d/local$i" --socket "$d/local$i.sock" >"$d/local$i.out" 2>&1 </dev/null & locals+=($!); PIDS+=($!)
    waitfor "$d/local$i.out" "connected to the server" || return
  done
  # Past a new session's first seconds, when a server looks up every message id in the store (docs/scale-out.md).
  sleep 2.5
  local benches=()
  for i in $(seq 1 "$n"); do
    timeout 300 "$MQ" bench -s "$d/local$i.sock" --topic "$([ "$TOPICS" = same ] && echo bench || echo "bench$i")" --count "$COUNT" --size "$SIZE" --json >"$d/bench$i.json" 2>/dev/null & benches+=($!)
  done
  wait "${benches[@]}"
  for p in "${locals[@]}" "${servers[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  python3 - "$n" "$d" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF'
import json, sys, glob
n, d, load = sys.argv[1], sys.argv[2], sys.argv[3]
pub = sub = 0.0
for f in sorted(glob.glob(f"{d}/bench*.json")):
    lines = [l for l in open(f) if l.strip()]
    j = json.loads(lines[-1])
    pub += j.get("pub_msgs_per_s", 0); sub += j.get("sub_msgs_per_s", 0)
print(f"servers={n} pub_msgs_per_s={pub:.0f} sub_msgs_per_s={sub:.0f} load={load}")
EOF
  rm -rf "$d"
}

for r in $(seq 1 "$ROUNDS"); do
  for n in ${SERVERS:-1 2 3}; do run "$n" "$r"; done
done | tee "$W/results"
python3 - "$W/results" <<'EOF'
import sys, statistics, re
rows = {}
for line in open(sys.argv[1]):
    m = dict(kv.split("=") for kv in line.split())
    rows.setdefault(m["servers"], []).append((float(m["pub_msgs_per_s"]), float(m["sub_msgs_per_s"])))
for n in sorted(rows):
    pubs = [p for p, _ in rows[n]]; subs = [s for _, s in rows[n]]
    print(f"servers={n} runs={len(pubs)} pub median {statistics.median(pubs):.0f} (min {min(pubs):.0f}, max {max(pubs):.0f}); delivery median {statistics.median(subs):.0f} (min {min(subs):.0f}, max {max(subs):.0f})")
EOF

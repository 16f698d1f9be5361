#!/usr/bin/env bash
# A PostgreSQL primary killed mid-stream, its synchronous standby promoted: how many
# acknowledged publishes are missing on the promoted node (docs/scale-out.md; expected 0).
#
#     bench/pg-failover.sh [MQ_BIN=dist/mq] [ROUNDS=3]
#
# Per round: a primary (initdb, as the postgres user when root) and a standby made with
# `pg_basebackup -R`, `synchronous_standby_names = '*'` and `synchronous_commit = on` on the
# primary; `mq server --store` on the primary (default `--fsync always`) and a local broker;
# a loop of `mq pub --lines --msg-id` batches records each acknowledged line. After a few
# batches the primary is stopped at once (`pg_ctl -m immediate`, a crash), the standby is
# promoted (`pg_ctl promote`), and the acknowledged lines are looked for in its mq_messages.
# One line per round: acknowledged, found on the promoted standby, lost, load average.
set -uo pipefail
MQ=$(realpath "${1:-dist/mq}"); ROUNDS=${2:-3}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
AS=(); [ "$(id -u)" = 0 ] && AS=(runuser -u postgres --)
W=$(mktemp -d /tmp/mq-pg-failover-XXXX); chmod 755 "$W"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for d in "$W"/r*/primary "$W"/r*/standby; do [ -d "$d" ] && "${AS[@]}" "$BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1; done
  rm -rf "$W"
}
trap cleanup EXIT
waitfor() { for _ in $(seq 1 150); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no '$2' in $1" >&2; return 1; }
pg() { "${AS[@]}" "$@"; }

round() {
  local r=$1 d="$W/r$1" p1=$((20000 + RANDOM % 20000)) p2
  p2=$((p1 + 1))
  mkdir -p "$d"; [ ${#AS[@]} -gt 0 ] && chown postgres "$d"
  pg "$BIN/initdb" -D "$d/primary" -U mq --auth=trust -E UTF8 --no-instructions >/dev/null
  pg "$BIN/pg_ctl" -D "$d/primary" -l "$d/primary.log" -w -o "-p $p1 -k $d -c listen_addresses=127.0.0.1" start >/dev/null
  pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$p1" -U mq -D "$d/standby" -R -X stream >/dev/null
  pg "$BIN/pg_ctl" -D "$d/standby" -l "$d/standby.log" -w -o "-p $p2 -k $d -c listen_addresses=127.0.0.1" start >/dev/null
  pg "$BIN/psql" -h 127.0.0.1 -p "$p1" -U mq -d postgres -qAt -c "alter system set synchronous_standby_names = '*'" -c "select pg_reload_conf()" >/dev/null
  # The standby confirms synchronously before the test starts.
  for _ in $(seq 1 100); do
    [ "$(pg "$BIN/psql" -h 127.0.0.1 -p "$p1" -U mq -d postgres -qAt -c "select sync_state from pg_stat_replication")" = sync ] && break; sleep 0.1
  done
  "$MQ" server --store "postgres://mq@127.0.0.1:$p1/postgres" --listen 127.0.0.1:0 >"$d/server.out" 2>&1 </dev/null & local sp=$!; PIDS+=($sp)
  waitfor "$d/server.out" "listening on" || return
  local port; port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$d/server.out" | grep -o '[0-9]*$')
  mkdir -p "$d/local"; chmod 700 "$d/local"
  "$MQ" local --server "127.0.0.1:$port" --data "$d/local" --socket "$d/local/sock" >"$d/local.out" 2>&1 </dev/null & local lp=$!; PIDS+=($lp)
  waitfor "$d/local.out" "connected to the server" || return
  local id; id=$("$MQ" create -s "$d/local/sock")
  : >"$d/acked"
  (
    for b in $(seq 1 400); do
      seq 1 50 | sed "s/^/r$r-b$b-/" >"$d/batch"
      # Each acknowledged line prints its seq; what was not acknowledged prints nothing.
      "$MQ" pub -s "$d/local/sock" "$id" failover --lines --json --msg-id "r$r-b$b" --retry-for 1 <"$d/batch" 2>/dev/null |
        python3 -c 'import sys,json
lines=open(sys.argv[1]).read().split()
for i,l in enumerate(sys.stdin):
    if l.strip() and "seq" in json.loads(l): print(lines[i])' "$d/batch" >>"$d/acked"
      [ -f "$d/stop" ] && break
    done
  ) & local loop=$!
  # Mid-stream: once a few thousand lines are acknowledged.
  for _ in $(seq 1 300); do [ "$(wc -l <"$d/acked")" -ge 3000 ] && break; sleep 0.05; done
  pg "$BIN/pg_ctl" -D "$d/primary" -m immediate stop >/dev/null
  pg "$BIN/pg_ctl" -D "$d/standby" -w promote >/dev/null
  sleep 1; touch "$d/stop"; wait "$loop"
  kill "$lp" "$sp" 2>/dev/null; wait "$lp" "$sp" 2>/dev/null
  pg "$BIN/psql" -h 127.0.0.1 -p "$p2" -U mq -d postgres -qAt -c "select convert_from(payload, 'UTF8') from mq_messages" >"$d/stored"
  python3 - "$d/acked" "$d/stored" "$r" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF'
import sys
acked = [l for l in open(sys.argv[1]).read().split() if l]
stored = set(l for l in open(sys.argv[2]).read().split() if l)
lost = [a for a in acked if a not in stored]
print(f"round={sys.argv[3]} acknowledged={len(acked)} found_on_promoted={len(acked) - len(lost)} lost={len(lost)} stored={len(stored)} load={sys.argv[4]}")
EOF
  pg "$BIN/pg_ctl" -D "$d/standby" -m immediate stop >/dev/null 2>&1
}

for r in $(seq 1 "$ROUNDS"); do round "$r"; done

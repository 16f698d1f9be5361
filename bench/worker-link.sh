#!/bin/bash
# `mq up` with the server in a Bun Worker against `mq up` in one thread, both from source
# (bench/worker-link.ts), alternating: memory, worker, memory, worker, … (MODES to change)
# Prints one line per run: the mode, the load, the CPU seconds (user+sys) of the whole
# process, of its main thread and of its other threads (the worker's, GC and I/O helpers)
# during the bench, the client's CPU, and mq bench's JSON result.
#   [FSYNC=always|never] [MODES="memory worker ring"] [MQ=/work/main/dist/mq] bench/worker-link.sh PAIRS [mq bench options...]
# Stops only the processes it started (by PID) and removes its data directories.
set -u
cd "$(dirname "$0")/.."
PAIRS=$1; shift; BENCH_ARGS=("$@")
MQ=${MQ:-/work/main/dist/mq}   # the bench client (the same for both modes)
BUN=./node_modules/.bin/bun
tick=$(getconf CLK_TCK)
threads() { # threads PID: "main others" in clock ticks (user+sys)
  local main=0 others=0 f t c
  for f in /proc/$1/task/*/stat; do
    t=${f#/proc/$1/task/}; t=${t%/stat}
    c=$(sed 's/.*) //' "$f" | awk '{print $12 + $13}') || continue
    if [ "$t" = "$1" ]; then main=$((main + c)); else others=$((others + c)); fi
  done
  echo "$main $others"
}
run() { # run MODE: one up + one mq bench
  local mode=$1 d; d=$(mktemp -d /tmp/mq-wl-XXXX)
  $BUN bench/worker-link.ts "$mode" "$d" "$d/s.sock" 7695 > "$d/up.log" 2>&1 & local up=$!
  for _ in $(seq 100); do grep -q "mq is up" "$d/up.log" 2>/dev/null && break; sleep 0.1; done
  local before; before=$(threads $up)
  local TIMEFORMAT="%U %S" client
  { client=$( { time timeout 300 "$MQ" bench --socket "$d/s.sock" --json "${BENCH_ARGS[@]}" > "$d/out" 2>/dev/null; } 2>&1 ); }
  local after; after=$(threads $up)
  echo "$mode load=$(cut -d' ' -f1 /proc/loadavg) $(awk -v b="$before" -v a="$after" -v t="$tick" 'BEGIN{split(b,x," ");split(a,y," ");m=(y[1]-x[1])/t;o=(y[2]-x[2])/t;printf "up_cpu=%.2f main_cpu=%.2f other_cpu=%.2f", m+o, m, o}') client_cpu=$(echo "$client" | awk '{printf "%.2f", $1+$2}') $(tr '\n' ' ' < "$d/out")"
  kill $up; wait $up 2>/dev/null; rm -rf "$d"
}
MODES=${MODES:-memory worker} # each pair runs these in order (also: ring, tcp)
for i in $(seq "$PAIRS"); do
  for mode in $MODES; do run "$mode"; done
done

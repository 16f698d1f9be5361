#!/bin/bash
# A/B pairs of `mq bench` for two binaries on this machine (docs/benchmarks.md): for each pair,
# binary A then binary B, each in a fresh `mq up` (--fsync always, its own data directory).
# Prints one line per run: the label, the load, the CPU seconds (user+sys) `mq up` and the
# bench client used during the bench — less sensitive to the machine's load than the rates —
# and mq bench's JSON result.
#   [FSYNC=never|interval|always] bench/ab.sh A_BIN B_BIN PAIRS [mq bench options...]
# Stops only the processes it started (by PID) and removes its data directories.
set -u
A=$1; B=$2; PAIRS=$3; shift 3; BENCH_ARGS=("$@")
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user+sys clock ticks of a process
run() { # run LABEL BIN: one mq up + one mq bench
  local label=$1 bin=$2 d; d=$(mktemp -d /tmp/mq-ab-XXXX)
  "$bin" up --data "$d" --listen 127.0.0.1:7694 --socket "$d/s.sock" --fsync "${FSYNC:-always}" > "$d/up.log" 2>&1 & local up=$!
  for _ in $(seq 100); do grep -q "mq is up" "$d/up.log" 2>/dev/null && break; sleep 0.1; done
  local before; before=$(cpu $up)
  local TIMEFORMAT="%U %S" out client
  { client=$( { time timeout 300 "$bin" bench --socket "$d/s.sock" --json "${BENCH_ARGS[@]}" > "$d/out" 2>/dev/null; } 2>&1 ); }
  local tick; tick=$(getconf CLK_TCK)
  echo "$label load=$(cut -d' ' -f1 /proc/loadavg) up_cpu=$(awk -v a="$before" -v b="$(cpu $up)" -v t="$tick" 'BEGIN{printf "%.2f", (b-a)/t}') client_cpu=$(echo "$client" | awk '{printf "%.2f", $1+$2}') $(tr '\n' ' ' < "$d/out")"
  kill $up; wait $up 2>/dev/null; rm -rf "$d"
}
for i in $(seq "$PAIRS"); do
  run A "$A"
  run B "$B"
done

#!/bin/bash
# Where one `mq up --fsync always` ran its fdatasyncs during a workload: on the event loop (the
# main thread: lib/store/sync-place.ts's lone-publisher rule) or on the thread pool. Root
# (`perf trace -a -e fdatasync`); counts only this mq up's threads (docs/benchmarks.md, "one
# publish in flight: the sync on the event loop").
#   bench/sync-where.sh BIN LABEL 'WORKLOAD'     (WORKLOAD: a shell command; $SOCK is the socket)
#   bench/sync-where.sh dist/mq "4 topics" 'for k in 1 2 3 4; do dist/mq bench --socket $SOCK --count 1500 --window 1 --subs 0 --topic t$k & done; wait'
# Stops only the processes it started (by PID) and removes its data directory.
BIN=${1:?BIN}; LABEL=${2:?LABEL}; WORKLOAD=${3:?WORKLOAD}
D=$(mktemp -d /tmp/mq-sync-where-XXXX); export SOCK=$D/s.sock
"$BIN" up --data "$D/data" --listen 127.0.0.1:0 --socket "$SOCK" --fsync always > "$D/up.log" 2>&1 & UP=$!
for _ in $(seq 50); do grep -q "mq is up" "$D/up.log" 2>/dev/null && break; sleep 0.1; done
timeout 300 perf trace -a -e fdatasync -o "$D/trace.txt" & PT=$!
sleep 1.5
bash -c "$WORKLOAD" > "$D/out.txt" 2>&1
sleep 0.3; kill -INT $PT; wait $PT 2>/dev/null
loop=$(grep -c "/$UP fdatasync" "$D/trace.txt"); all=0
for t in $(ls /proc/$UP/task); do all=$((all + $(grep -c "/$t fdatasync" "$D/trace.txt"))); done
echo "$LABEL: fdatasync on the event loop $loop, on the pool $((all - loop)) (load $(cut -d' ' -f1 /proc/loadavg))"
[ -n "${KEEP:-}" ] && cp "$D/trace.txt" "$KEEP"
kill $UP; wait $UP 2>/dev/null; rm -rf "$D"

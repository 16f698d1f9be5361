#!/bin/bash
# One publish in flight, hop by hop, from the kernel's syscall tracepoints (docs/benchmarks.md,
# "one publish in flight by tracepoints"): much lighter than bench/hop-trace.sh's `perf trace`,
# which stops at every syscall. Starts `mq up --fsync always`, warms up with `mq bench --window 1`,
# records the main thread of `mq up` over N more publishes and prints the median and p90 of each
# step between its syscalls. Root (perf); stops only what it started, by PID, and removes its data.
#   bench/publish-tracepoints.sh [BIN (default dist/mq)] [N (default 3000)]
BIN=${1:-dist/mq}; N=${2:-3000}; HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d /tmp/mq-tracepoints-XXXX)
"$BIN" up --data "$D" --listen 127.0.0.1:0 --socket "$D/s.sock" --fsync always > "$D/up.log" 2>&1 & UP=$!
for _ in $(seq 50); do grep -q "mq is up" "$D/up.log" 2>/dev/null && break; sleep 0.1; done
"$BIN" bench --socket "$D/s.sock" --count 2000 --window 1 --subs 0 --topic w1 >/dev/null 2>&1
EVENTS=syscalls:sys_exit_recvfrom,syscalls:sys_enter_pwrite64,syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync,syscalls:sys_enter_sendto
perf record -q -e "$EVENTS" -t "$UP" -o "$D/perf.data" 2>/dev/null & PR=$!
sleep 0.5
"$BIN" bench --socket "$D/s.sock" --count "$N" --window 1 --subs 0 --topic w1 2>&1 | grep -i publish
kill -INT $PR; wait $PR 2>/dev/null
echo "== $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
perf script -i "$D/perf.data" -F time,event 2>/dev/null | python3 -c '
import sys
rows = []
for line in sys.stdin:
    p = line.split()
    rows.append((float(p[0].rstrip(":")) * 1e6, p[1].replace("syscalls:sys_", "").rstrip(":")))
names = ["request read -> record pwrite", "record pwrite -> fdatasync", "fdatasync", "fdatasync -> head pwrite",
         "head pwrite -> reply sendto", "reply sendto -> next request read (the client, two wake-ups)"]
steps = {n: [] for n in names}
shape = ["exit_recvfrom", "enter_pwrite64", "enter_fdatasync", "exit_fdatasync", "enter_pwrite64"]
i = 0
while i < len(rows) - len(shape):
    if [r[1] for r in rows[i:i + len(shape)]] != shape:
        i += 1
        continue
    j = i + len(shape)
    while j < len(rows) and rows[j][1] != "enter_sendto": j += 1
    k = j
    while k < len(rows) and rows[k][1] != "exit_recvfrom": k += 1
    if k >= len(rows): break
    t = [r[0] for r in rows[i:i + len(shape)]] + [rows[j][0], rows[k][0]]
    for n, a, b in zip(names, t, t[1:]): steps[n].append(b - a)
    i = j
for n, v in steps.items():
    v.sort()
    if v: print(f"  {n:62s} {v[len(v) // 2]:7.1f} {v[int(len(v) * 0.9)]:7.1f} us (n={len(v)})")
print("  median / p90 of each step; one publish = the sum of one row of each")
'
kill "$UP"; wait "$UP" 2>/dev/null; rm -rf "$D"

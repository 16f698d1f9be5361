#!/usr/bin/env python3
"""Per-hop costs of single publishes from a `perf trace -a` capture (bench/hop-trace.sh runs it).

usage: hop-trace.py TRACE UP_PID BENCH_PID [TIDS_FILE]
Reads the syscalls of the mq up process (all its threads; TIDS_FILE lists their ids, else any
"Bun Pool" thread counts) and of `mq bench --window 1`, cuts them into publishes at each bench
sendto, and prints the median and p90 (µs) of each hop. With the in-memory link inside `mq up`
(no sendto/recvfrom between the local broker and the server) hops 2-4 are one; a sync on the
event loop (lib/store/sync-place.ts) has no hops 5 and 7."""
import re, sys, statistics

trace, up, bench = sys.argv[1], sys.argv[2], sys.argv[3]
up_threads = set(open(sys.argv[4]).read().split()) if len(sys.argv) > 4 else None
line_re = re.compile(r"^\s*([\d.]+) \(\s*([\d.]*)(?: ms)?\s*\): (.+?)/(\d+) (\w+)\(fd: (\d+)")
up_tids = set()
events = []
# A call another CPU's events interrupted is printed twice: its start ("...", no duration), then
# "... [continued]: call()) = ret" with its start time and duration: the duration is taken from there.
cont_re = re.compile(r"^\s*([\d.]+) \(\s*([\d.]+) ms\): .+?/(\d+)\s+\.\.\. \[continued\]: (\w+)\(")
durations = {}
for line in open(trace):
    m = cont_re.match(line)
    if m:
        durations[(m[1], m[3], m[4])] = float(m[2])
for line in open(trace):
    m = line_re.match(line)
    if not m:
        continue
    if not m[2] and (m[1], m[4], m[5]) in durations:
        m = [None, m[1], str(durations[(m[1], m[4], m[5])]), m[3], m[4], m[5], m[6]]
    t, dur, comm, tid, call, fd = float(m[1]), m[2], m[3], m[4], m[5], int(m[6])
    if tid == bench:
        who = "bench"
    elif tid == up or (tid in up_threads if up_threads is not None else comm.startswith("Bun Pool")):
        who = "up" if tid == up else "pool"
    else:
        continue
    events.append((t, who, call, fd, float(dur) if dur else 0.0))
events.sort()

# Cut into cycles: from one bench sendto to the next.
cycles, cur = [], None
for e in events:
    if e[1] == "bench" and e[2] == "sendto":
        if cur:
            cycles.append(cur)
        cur = [e]
    elif cur is not None:
        cur.append(e)

def first(cyc, pred, after=0.0):
    for e in cyc:
        if e[0] >= after and pred(e):
            return e
    return None

hops = {}
def add(name, a, b):
    if a is not None and b is not None:
        hops.setdefault(name, []).append((b - a) * 1000)

prev_end = None
for c in cycles:
    t0 = c[0][0]
    if prev_end is not None:
        add("0 client: reply read -> next publish sent", prev_end, t0)
    prev_end = None
    rin = first(c, lambda e: e[1] == "up" and e[2] == "recvfrom")               # local reads the publish
    seg = first(c, lambda e: e[1] == "up" and e[2] == "pwrite64", rin and rin[0] or 0)  # segment write
    # Over TCP inside `mq up`: the forward and the server's read, between the two.
    fwd = first(c, lambda e: e[1] == "up" and e[2] == "sendto" and e[0] < seg[0], rin[0]) if rin and seg else None
    srv = first(c, lambda e: e[1] == "up" and e[2] == "recvfrom" and e[0] < seg[0], fwd[0]) if fwd else None
    sync = first(c, lambda e: e[2] in ("fsync", "fdatasync"), seg and seg[0] or 0)
    wake = first(c, lambda e: e[1] == "pool" and e[2] == "write", sync and sync[0] or 0) if sync and sync[1] == "pool" else None
    after_sync = (sync[0] + sync[4]) if sync else 0  # both in ms
    head = first(c, lambda e: e[1] == "up" and e[2] == "pwrite64", after_sync)
    rep = first(c, lambda e: e[1] == "up" and e[2] == "sendto", after_sync)     # server replies (TCP), or the local broker (memory)
    lrep = first(c, lambda e: e[1] == "up" and e[2] == "sendto", rep and rep[0] + 1e-6 or 1e9) if fwd else rep  # local replies
    end = first(c, lambda e: e[1] == "bench" and e[2] == "recvfrom")
    if not (rin and seg and sync and rep and lrep and end):
        continue
    prev_end = end[0]
    add("1 client send -> local read", t0, rin[0])
    if fwd and srv:
        add("2 local read -> forward", rin[0], fwd[0])
        add("3 forward -> server read", fwd[0], srv[0])
        add("4 server read -> segment pwrite", srv[0], seg[0])
    else:
        add("2 local read -> segment pwrite (local, in-memory link, server)", rin[0], seg[0])
    add("5 pwrite -> sync starts" + (" (on the loop)" if sync[1] == "up" else ""), seg[0], sync[0])
    add("6 sync itself", sync[0], after_sync)
    if wake:
        add("7 pool done -> event loop back (eventfd)", wake[0], head[0] if head else rep[0])
    add("8 sync done -> " + ("server reply" if fwd else "reply sent to the client"), after_sync, rep[0])
    if head and head[0] < rep[0]:
        add("8a sync done -> head pwrite", after_sync, head[0])
        add("8b head pwrite -> " + ("server reply" if fwd else "reply sent to the client"), head[0], rep[0])
    if fwd:
        add("9 server reply -> local reply", rep[0], lrep[0])
    add("10 local reply -> client read", lrep[0], end[0])
    add("total client send -> client read", t0, end[0])
    add("total without the sync itself", t0, end[0] - sync[4])

print(f"{len(cycles)} publishes cut, µs median / p90:")
for name in sorted(hops, key=lambda k: (k.startswith("total"), float(k.split()[0].replace("a", ".1").replace("b", ".2")) if k[0].isdigit() else 0, k)):
    xs = sorted(hops[name])
    print(f"  {name:45s} {statistics.median(xs):7.0f} {xs[int(0.9 * (len(xs) - 1))]:7.0f}  (n={len(xs)})")

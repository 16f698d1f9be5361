#!/usr/bin/env python3
"""Per-hop costs of single publishes from a `perf trace -a` capture (bench/hop-trace.sh runs it).

usage: hop-trace.py TRACE UP_PID BENCH_PID
Reads the syscalls of the mq up process (all its threads) and of `mq bench --window 1`, cuts
them into publishes at each bench sendto, and prints the median and p90 (µs) of each hop."""
import re, sys, statistics

trace, up, bench = sys.argv[1], sys.argv[2], sys.argv[3]
line_re = re.compile(r"^\s*([\d.]+) \(\s*([\d.]*)(?: ms)?\s*\): (.+?)/(\d+) (\w+)\(fd: (\d+)")
up_tids = set()
events = []
for line in open(trace):
    m = line_re.match(line)
    if not m:
        continue
    t, dur, comm, tid, call, fd = float(m[1]), m[2], m[3], m[4], m[5], int(m[6])
    if tid == bench:
        who = "bench"
    elif tid == up or comm.startswith("Bun Pool") or tid in up_tids:
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
    fwd = first(c, lambda e: e[1] == "up" and e[2] == "sendto", rin and rin[0] or 0)  # local forwards it
    srv = first(c, lambda e: e[1] == "up" and e[2] == "recvfrom", fwd and fwd[0] or 0) # server reads it
    seg = first(c, lambda e: e[1] == "up" and e[2] == "pwrite64", srv and srv[0] or 0)  # segment write
    sync = first(c, lambda e: e[2] in ("fsync", "fdatasync"), seg and seg[0] or 0)
    wake = first(c, lambda e: e[1] == "pool" and e[2] == "write", sync and sync[0] or 0) if sync and sync[1] == "pool" else None
    after_sync = (sync[0] + sync[4]) if sync else 0  # both in ms
    head = first(c, lambda e: e[1] == "up" and e[2] == "pwrite64", after_sync)
    rep = first(c, lambda e: e[1] == "up" and e[2] == "sendto", after_sync)     # server replies
    lrep = first(c, lambda e: e[1] == "up" and e[2] == "sendto", rep and rep[0] + 1e-6 or 1e9)  # local replies
    end = first(c, lambda e: e[1] == "bench" and e[2] == "recvfrom")
    if not (rin and fwd and srv and seg and sync and rep and lrep and end):
        continue
    prev_end = end[0]
    add("1 client send -> local read", t0, rin[0])
    add("2 local read -> forward", rin[0], fwd[0])
    add("3 forward -> server read", fwd[0], srv[0])
    add("4 server read -> segment pwrite", srv[0], seg[0])
    add("5 pwrite -> sync starts", seg[0], sync[0])
    add("6 sync itself", sync[0], after_sync)
    if wake:
        add("7 pool done -> event loop back (eventfd)", wake[0], head[0] if head else rep[0])
    add("8 sync done -> server reply", after_sync, rep[0])
    add("9 server reply -> local reply", rep[0], lrep[0])
    add("10 local reply -> client read", lrep[0], end[0])
    add("total client send -> client read", t0, end[0])

print(f"{len(cycles)} publishes cut, µs median / p90:")
for name in sorted(hops, key=lambda k: (k.startswith("total"), int(k.split()[0]) if k[0].isdigit() else 0)):
    xs = sorted(hops[name])
    print(f"  {name:45s} {statistics.median(xs):7.0f} {xs[int(0.9 * (len(xs) - 1))]:7.0f}  (n={len(xs)})")

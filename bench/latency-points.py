#!/usr/bin/env python3
"""Per-hop latencies inside `mq up` from bench/latency-points.sh's probes.

usage: latency-points.py POINTS.json
POINTS.json maps each point ("1 local got pubs" …) to [seq, age µs, seq, age µs, …] of the
first message of each frame that passed it. Ages carry a constant clock offset, so only the
differences between points of the same message are shown: per hop, over the messages seen at
every point, p50 / p90 / p99 / mean in µs."""
import json, sys

points = {name: dict(zip(v[0::2], v[1::2])) for name, v in json.load(open(sys.argv[1])).items()}
names = sorted(points)
common = set.intersection(*(set(p) for p in points.values())) if points else set()
if not common:
    sys.exit("no message passed every point")

def stats(xs):
    xs = sorted(xs)
    at = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    return "%6.0f %6.0f %6.0f %6.0f" % (at(0.5), at(0.9), at(0.99), sum(xs) / len(xs))

print(f"{len(common)} frames seen at every point; µs per hop: p50 / p90 / p99 / mean")
for a, b in zip(names, names[1:]):
    print("  %-42s %s" % (f"{a} -> {b[2:]}", stats([points[b][s] - points[a][s] for s in common])))
print("  %-42s %s" % (f"in all ({names[0][2:]} -> {names[-1][2:]})", stats([points[names[-1]][s] - points[names[0]][s] for s in common])))

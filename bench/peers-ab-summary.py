#!/usr/bin/env python3
"""Medians, [min..max] and per-pair changes (B/A - 1) of bench/peers-ab.sh output, per instance.

    python3 bench/peers-ab-summary.py OUT
"""
import re
import statistics as st
import sys

rows = []
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 3 or parts[0] not in ("A", "B"):
        continue
    row = dict(re.findall(r"(\w+)=([\d.]+)", line))
    if "rate" in row and "up_cpu" in row:
        rows.append({"label": parts[0], "inst": parts[1], **{k: float(v) for k, v in row.items()}})
for inst in sorted({r["inst"] for r in rows}):
    a = [r for r in rows if r["inst"] == inst and r["label"] == "A"]
    b = [r for r in rows if r["inst"] == inst and r["label"] == "B"]
    loads = [r["load"] for r in a + b]
    print(f"{inst}: {min(len(a), len(b))} pairs, load {min(loads)}-{max(loads)}")
    for label, side in (("A", a), ("B", b)):
        for key in ("rate", "up_cpu", "client"):
            v = [r[key] for r in side if key in r]
            if v:
                print(f"  {label} {key} {st.median(v):.6g} [{min(v):.6g}..{max(v):.6g}]")
    for key in ("up_cpu", "rate"):
        change = [y[key] / x[key] - 1 for x, y in zip(a, b)]
        print(f"  per pair {key} {100 * st.median(change):+.0f}% [{100 * min(change):+.0f}..{100 * max(change):+.0f}], B lower in {sum(c < 0 for c in change)} of {len(change)}")

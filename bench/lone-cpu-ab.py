"""Medians of bench/lone-cpu-ab.sh's output, A against B, and per round B/A - 1 and in how many rounds B was lower.
    python3 bench/lone-cpu-ab.py OUT"""
import re
import statistics as st
import sys

rows = [dict(side=l.split()[0], **{k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", l)}) for l in open(sys.argv[1]) if l[:2] in ("A ", "B ")]
for k in ["us_per", "client_cpu", "client_main", "up_cpu", "up_main", "load"]:
    ra = [r for r in rows if r["side"] == "A"]
    rb = [r for r in rows if r["side"] == "B"]
    ch = [y[k] / x[k] - 1 for x in ra for y in rb if x["round"] == y["round"] and x[k] > 0]
    a = [r[k] for r in ra]
    b = [r[k] for r in rb]
    lower = sum(1 for c in ch if c < 0)
    print(f"{k}: A {st.median(a):.1f} [{min(a):.0f}..{max(a):.0f}]  B {st.median(b):.1f} [{min(b):.0f}..{max(b):.0f}]  per round {100 * st.median(ch):+.0f} %, B lower in {lower} of {len(ch)}")

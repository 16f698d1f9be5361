#!/usr/bin/env python3
"""Summary of bench/zero-tail-ab.sh: per figure, the median and range of each build and the
median of the per-pair ratios new/main; the in-process mean fdatasync per run (from /metrics).

usage: zero-tail-ab.py OUT.jsonl   (reads OUT.jsonl and OUT.jsonl.log)"""
import json, re, statistics as st, sys

out = sys.argv[1]
rows = [json.loads(l) for l in open(out)]

def figure(name, pick, field):
    pairs = {}
    for r in rows:
        if pick(r) and r.get("label") in ("main", "new"):
            pairs.setdefault(r["rep"], {})[r["label"]] = r[field]
    if not pairs:
        return
    for w in ("main", "new"):
        v = sorted(d[w] for d in pairs.values() if w in d)
        if not v:
            continue
        print(f"{name} {field} {w}: median {st.median(v)}, {v[0]}–{v[-1]} ({len(v)} runs)")
    ratios = [round(d["new"] / d["main"], 2) for _, d in sorted(pairs.items()) if len(d) == 2]
    if ratios:
        print(f"{name} {field} new/main per pair: {ratios} median {st.median(ratios)}")

s4 = lambda mode: (lambda r: r.get("scenario") == "s4" and r.get("mode") == mode)
figure("s4 sync", s4("sync"), "pub_msgs_per_s")
figure("s4 async", s4("async"), "pub_msgs_per_s")
for f in ("p50_us", "p90_us", "p99_us", "mean_us"):
    figure("s3", lambda r: r.get("scenario") == "s3", f)

# The fsync limit (limits/fsync.ts) and the ratio of s4 sync to it, run after it in the same pair.
log = open(out + ".log").read().split("\n")
ratio = {"main": [], "new": []}
limit = {"main": [], "new": []}
fsync_mean = {}
prev = {}
last_s4 = {}
w = None
scenario_of_metrics = []
for line in log:
    m = re.match(r"## pair (\d+) (\w+)", line)
    if m:
        w = m.group(2)
        continue
    m = re.search(r"\[mq (s\d) 128B \w+\] (?:mode=(\w+))?", line)
    if m:
        sc = m.group(1) + ("-" + m.group(2) if m.group(2) else "")
        scenario_of_metrics.append(sc)
        if sc == "s4-sync":
            last_s4[w] = int(re.search(r"pub_msgs_per_s=(\d+)", line).group(1))
        continue
    m = re.match(r"(\w+) \[fsync .*ops_per_s=(\d+)", line)
    if m:
        limit[m.group(1)].append(int(m.group(2)))
        if m.group(1) in last_s4:
            ratio[m.group(1)].append(round(last_s4.pop(m.group(1)) / int(m.group(2)), 2))
        continue
    m = re.match(r"(\w+) metrics mq_fsync_seconds_sum ([\d.e+-]+) mq_fsync_seconds_count (\d+)", line)
    if m:
        who, s, c = m.group(1), float(m.group(2)), int(m.group(3))
        ps, pc = prev.get(who, (0.0, 0))
        prev[who] = (s, c)
        sc = scenario_of_metrics[-1] if scenario_of_metrics else "?"
        if c > pc:
            fsync_mean.setdefault((sc, who), []).append(round((s - ps) / (c - pc) * 1e6))
for who in ("main", "new"):
    if limit[who]:
        print(f"write+fdatasync limit (4 KiB appends) next to {who}: median {st.median(limit[who])}, {min(limit[who])}–{max(limit[who])}")
    if ratio[who]:
        print(f"s4 sync / limit, {who}: median {st.median(ratio[who])}, {sorted(ratio[who])}")
for (sc, who), v in sorted(fsync_mean.items()):
    print(f"mean fdatasync in mq during {sc}, {who}: median {st.median(v)} µs, {sorted(v)}")

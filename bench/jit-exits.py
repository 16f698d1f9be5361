#!/usr/bin/env python3
"""
The OSR exits of a JavaScriptCore log, ranked: where optimized code met a value or an object
shape it had not been compiled for, and left for the baseline tier (100 exits of one code block
throw it away and compile it again). The log of `mq up` from source (bench/jit-trace.sh) with
    JIT_ENV="BUN_JSC_printEachOSRExit=1 BUN_JSC_verboseDFGOSRExit=1 BUN_JSC_verboseFTLOSRExit=1 BUN_JSC_dumpBytecodeAtDFGTime=1"
printEachOSRExit gives one line per exit; the verbose*OSRExit lines give each exit site's
whole code origin (through inlined calls); the bytecode dumps let each frame be shown as the
instruction it is (`get_by_id ... property:topic`), which names the source line.

    python3 bench/jit-exits.py LOG [TOP]
"""
import re, sys, collections
text = open(sys.argv[1], errors="replace").read().split("\n")
top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
code = {}   # func#hash -> {bc: text}
i = 0
hdr = re.compile(r"^(\S+#\w+):\[[^\]]*BaselineFunctionCall[^\]]*\]: \d+ instructions")
ins = re.compile(r"^\[\s*(\d+)\] (.*)$")
while i < len(text):
    m = hdr.match(text[i])
    if not m:
        i += 1; continue
    name = m.group(1); body = {}; ids = {}
    i += 1
    while i < len(text) and not text[i].startswith("Identifiers:") and not hdr.match(text[i]) and not text[i].startswith("Parsing ") :
        mm = ins.match(text[i])
        if mm: body[int(mm.group(1))] = re.sub(r"\s+", " ", mm.group(2)).strip()
        i += 1
    if i < len(text) and text[i].startswith("Identifiers:"):
        i += 1
        while i < len(text) and text[i].startswith("  id"):
            k, v = text[i].strip().split(" = ", 1); ids[k[2:]] = v; i += 1
    for k, v in list(body.items()):
        body[k] = re.sub(r"property:(\d+)", lambda p: "property:" + ids.get(p.group(1), p.group(1)), v)
    code.setdefault(name, body)
gen = re.compile(r"^Generated JIT code for (DFG|FTL) OSR exit #(\d+) \(D@\d+, (.*), (\w+)\) from (\S+):\[(0x[0-9a-f]+)")
origin = {}
for l in text:
    m = gen.match(l)
    if m: origin[(m.group(6), m.group(2))] = (m.group(3), m.group(4))
spec = re.compile(r"^Speculation failure in (\S+):\[(0x[0-9a-f]+)[^,]*, (\w+)FunctionCall.*\] @ exit #(\d+) \((bc#[^,]*), (\w+)\)")
count = collections.Counter(); per_fn = collections.Counter(); blocks = collections.defaultdict(set)
for l in text:
    m = spec.match(l)
    if not m: continue
    fn, addr, tier, ex, bc, kind = m.groups()
    org, k2 = origin.get((addr, ex), (bc, kind))
    count[(fn, tier, org, kind)] += 1; per_fn[fn] += 1; blocks[fn].add(addr)
print("total exits", sum(count.values()), " optimized code blocks that exited", sum(len(v) for v in blocks.values()))
def at(fn, bc):
    b = int(re.match(r"bc#(\d+)", bc).group(1)); return code.get(fn, {}).get(b, "?")
for (fn, tier, org, kind), n in count.most_common(top):
    frames = [f.strip() for f in org.split("-->")]
    desc = []; cur = fn
    for f in frames:
        mm = re.match(r"(?:(\S+#\w+):<[^>]*> )?(bc#\S+)", f)
        if mm.group(1): cur = mm.group(1)
        desc.append(f"{cur} {mm.group(2)}: {at(cur, mm.group(2))}")
    print(f"{n:5d} {tier} {kind}\n      " + "\n      ".join(desc))

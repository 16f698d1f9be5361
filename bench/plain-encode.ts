/**
 * CPU per message of the local broker's recv reply of 1,000 plain messages (128 B), made and
 * written: as main made them (a literal whose keys writeMap walks) against `plainMessage` and the
 * fixed layout (docs/benchmarks.md, "--fsync never 1→1: the last CPU cuts"). Alternating rounds.
 *
 *     ./node_modules/.bin/bun bench/plain-encode.ts
 */
import { FrameWriter, plainMessage, writeHotFrame } from "../lib/wire/hot-frames.ts";
const payloads = Array.from({ length: 1000 }, (_, i) => new Uint8Array(128).fill(i & 0xff));
const times = Array.from({ length: 1000 }, (_, i) => 1764570000000 + i);
const w = new FrameWriter();
const ways = {
  main: (k: number) => { const m = new Array(1000); for (let i = 0; i < 1000; i++) m[i] = { topic: "bench.s1", seq: k * 1000 + i, time: times[i]!, data: payloads[i]! }; return m; },
  branch: (k: number) => { const m = new Array(1000); for (let i = 0; i < 1000; i++) m[i] = plainMessage("bench.s1", k * 1000 + i, times[i]!, payloads[i]!); return m; },
};
const out: Record<string, number[]> = { main: [], branch: [] };
for (let round = 0; round < 12; round++) {
  for (const [name, make] of Object.entries(ways)) {
    const t0 = Bun.nanoseconds();
    for (let k = 0; k < 300; k++) { w.reset(); if (!writeHotFrame(w, { op: "ok", rid: k, messages: make(k), more: false })) throw new Error("generic"); }
    if (round >= 2) out[name]!.push((Bun.nanoseconds() - t0) / 300000);
  }
}
for (const [name, a] of Object.entries(out)) { a.sort((x, y) => x - y); console.log(name, "ns/msg median", a[a.length >> 1]!.toFixed(0), "range", a[0]!.toFixed(0), "..", a[a.length - 1]!.toFixed(0)); }

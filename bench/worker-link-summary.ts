#!/usr/bin/env bun
/**
 * Medians of a bench/worker-link.sh output, per mode: CPU seconds of the process (all
 * threads, the main thread, the others), of the client, the received rate, the p50s; then
 * the per-pair change of `worker` and `ring` against `memory` (run i of each mode paired).
 *   bench/worker-link.sh 5 --count 100000 > out.txt; bun bench/worker-link-summary.ts out.txt
 */

const lines = (await Bun.file(process.argv[2]).text()).split("\n").filter((l) => /^(memory|worker|ring)/.test(l));
const med = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const by: Record<string, any[]> = {};
for (const l of lines) {
  const mode = l.split(" ")[0];
  const kv = Object.fromEntries([...l.matchAll(/(\w+)=([\d.]+)/g)].map((m) => [m[1], Number(m[2])]));
  const j = JSON.parse(l.slice(l.indexOf("{")));
  (by[mode] ??= []).push({ ...kv, rate: j.sub_msgs_per_s, p50: j.latency_ms.p50, ackp50: j.pub_ack_ms.p50 });
}
for (const [mode, rows] of Object.entries(by)) {
  const f = (k: string) => `${med(rows.map((r) => r[k]))} [${Math.min(...rows.map((r) => r[k]))}..${Math.max(...rows.map((r) => r[k]))}]`;
  console.log(mode, rows.length, "up_cpu", f("up_cpu"), "main", f("main_cpu"), "other", f("other_cpu"), "client", f("client_cpu"), "rate", f("rate"), "p50ms", f("p50"), "ackp50", f("ackp50"));
}
const m = by.memory, w = by.worker;
if (m && w) { const r = m.map((x, i) => w[i] ? w[i].up_cpu / x.up_cpu - 1 : NaN); const q = m.map((x, i) => w[i] ? w[i].rate / x.rate - 1 : NaN);
  console.log("per pair worker/memory-1: cpu", (med(r)*100).toFixed(0)+"%", "rate", (med(q)*100).toFixed(0)+"%"); }
if (m && by.ring) { const r = m.map((x, i) => by.ring[i] ? by.ring[i].up_cpu / x.up_cpu - 1 : NaN); const q = m.map((x, i) => by.ring[i] ? by.ring[i].rate / x.rate - 1 : NaN);
  console.log("per pair ring/memory-1: cpu", (med(r)*100).toFixed(0)+"%", `[${(Math.min(...r)*100).toFixed(0)}..${(Math.max(...r)*100).toFixed(0)}]`, "rate", (med(q)*100).toFixed(0)+"%", `[${(Math.min(...q)*100).toFixed(0)}..${(Math.max(...q)*100).toFixed(0)}]`); }
if (m && w) { const r = m.map((x, i) => w[i].up_cpu / x.up_cpu - 1); const q = m.map((x, i) => w[i].rate / x.rate - 1);
  console.log("range worker: cpu", `[${(Math.min(...r)*100).toFixed(0)}..${(Math.max(...r)*100).toFixed(0)}]`, "rate", `[${(Math.min(...q)*100).toFixed(0)}..${(Math.max(...q)*100).toFixed(0)}]`); }

/**
 * The per-message bookkeeping the HTTP endpoint added, alone (issue 11): one latency
 * observation (the local broker makes two per message: hand-over and ack) and the per-topic
 * publish counters (one call per batch). `bun bench/http-micro.ts`: three runs of 5M each.
 */
import { Histogram } from "../lib/histogram.ts";
import { TopicCounts } from "../lib/server/topic-counts.ts";
const h = new Histogram();
const N = 5_000_000;
const vals = Array.from({ length: 1024 }, (_, i) => (i % 200) / 1000); // 0–0.2 s
for (let r = 0; r < 3; r++) {
  let t = Bun.nanoseconds();
  for (let i = 0; i < N; i++) h.observe(vals[i & 1023]!);
  const obs = (Bun.nanoseconds() - t) / N;
  const c = new TopicCounts();
  const payloads = Array.from({ length: 64 }, () => new Uint8Array(128));
  t = Bun.nanoseconds();
  for (let i = 0; i < N / 64; i++) c.stored(payloads);
  const st = (Bun.nanoseconds() - t) / N;
  console.log(`observe ${obs.toFixed(1)} ns/msg, TopicCounts.stored ${st.toFixed(2)} ns/msg`);
}

/** The local broker's latency histograms count every message, also when runs of them share their time (one bucket search per run). */
import { expect, test } from "bun:test";
import { Histogram } from "../../lib/histogram.ts";
import { LocalLatency } from "../../lib/local/latency.ts";
import type { Message } from "../../lib/wire/messages.ts";

test("LocalLatency counts each message of a batch, runs of one time and single ones alike", () => {
  const now = Date.now();
  // Ages (ms, each well inside its bucket): 3 × 4 s, 1 × 0.2 s, 2 × 4 s again (not next to the first run), an hour, and one from a clock ahead (counts as 0).
  const ages = [4000, 4000, 4000, 200, 4000, 4000, 3_600_000, -2000];
  const messages: Message[] = ages.map((age, i) => ({ topic: "t", seq: i + 1, time: now - age, data: new Uint8Array(0) }));
  const latency = new LocalLatency();
  latency.delivered(messages);
  latency.acked(messages.slice(0, 3));
  const expected = new Histogram();
  for (const age of ages) expected.observe(Math.max(0, age) / 1000);
  // The clock may tick between the two reads: the buckets of these ages are far from their bounds.
  expect([...latency.endToEnd.counts]).toEqual([...expected.counts]);
  expect(latency.endToEnd.count).toBe(8);
  expect(latency.publishToAck.count).toBe(3);
});

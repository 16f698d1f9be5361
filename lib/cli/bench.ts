/**
 * `mq bench`: publishers and subscribers through the running local broker, like `nats bench`.
 * Each payload carries its send time, so the subscribers measure end-to-end latency.
 */
import { MqClient } from "../client/client.ts";
import type { CommonOptions } from "./commands.ts";
import { Exit, writeStdout } from "./output.ts";

export interface BenchOptions extends CommonOptions {
  topic: string;
  /** Messages per publisher. */
  count: number;
  size: number;
  pubs: number;
  subs: number;
  /** Publishes in flight per publisher. */
  window: number;
}

export interface BenchResult {
  messages: number;
  size: number;
  pubs: number;
  subs: number;
  seconds: number;
  pub_msgs_per_s: number;
  sub_msgs_per_s: number;
  mb_per_s: number;
  pub_ack_ms: Percentiles;
  latency_ms: Percentiles | null;
}

/** Milliseconds, rounded to the microsecond; `p99_9` is the 99.9th percentile. */
export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p99_9: number;
  max: number;
}

/** Nearest-rank percentiles of `values` (all zero when there are none). */
export function percentiles(values: Float64Array | number[]): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { p50: round(at(0.5)), p90: round(at(0.9)), p99: round(at(0.99)), p99_9: round(at(0.999)), max: round(at(1)) };
}

/** "p50 0.4 ms, p90 0.5 ms, p99 0.9 ms, p99.9 1.2 ms, max 3 ms" */
export function formatPercentiles(p: Percentiles): string {
  return `p50 ${p.p50} ms, p90 ${p.p90} ms, p99 ${p.p99} ms, p99.9 ${p.p99_9} ms, max ${p.max} ms`;
}

/** A subscriber that receives nothing for this long fails the bench. */
const STALL_MS = 5000;

export async function runBench(options: BenchOptions): Promise<number> {
  const connect = () => MqClient.connect(options.socket === undefined ? {} : { socket: options.socket });
  const subClients = await Promise.all(Array.from({ length: options.subs }, connect));
  const pubClients = await Promise.all(Array.from({ length: options.pubs }, connect));
  const subIds = await Promise.all(subClients.map((c) => c.create()));
  const pubIds = await Promise.all(pubClients.map((c) => c.create()));
  await Promise.all(subClients.map((c, i) => c.subscribe(subIds[i]!, [options.topic], { from: "latest" })));

  const total = options.count * options.pubs;
  const expected = total * options.subs;
  let published = 0;
  let received = 0;
  const ackMs = new Float64Array(total);
  const latencies: number[] = [];
  const start = performance.now();

  // A bar redrawn in place is for a terminal (drawn at once, then every 250 ms): into a pipe or a file it would be frames run together.
  const drawBar = (): void => {
    const done = expected > 0 ? received / expected : published / Math.max(total, 1);
    const width = 30;
    const bar = "#".repeat(Math.round(done * width)).padEnd(width, ".");
    process.stderr.write(`\r[${bar}] published ${published}/${total} received ${received}/${expected}`);
  };
  const onTerminal = process.stderr.isTTY === true;
  if (onTerminal) drawBar();
  const progress = onTerminal ? setInterval(drawBar, 250) : undefined;

  // Through the library's iterator, as an application reads (pushed by the local broker when it serves follow).
  // The send time a publisher wrote into a payload (a big-endian f64), read without a DataView per message.
  const timeBytes = new Uint8Array(8);
  const timeView = new DataView(timeBytes.buffer);
  const sentTime = (data: Uint8Array): number => {
    for (let k = 0; k < 8; k++) timeBytes[k] = data[k]!;
    return timeView.getFloat64(0);
  };
  const subscribers = subClients.map(async (c, i) => {
    let got = 0;
    let lastAt = performance.now();
    const stalled = Promise.withResolvers<never>();
    const watch = setInterval(() => {
      if (performance.now() - lastAt < STALL_MS) return;
      stalled.reject(new Error(`subscriber ${i} received nothing for ${STALL_MS / 1000} s after ${got} of ${total} messages`));
      c.close(); // ends the loop below
    }, 250);
    const read = async () => {
      if (total === 0) return;
      // Batches of 100 (the default): each ack frees the server's window while the rest of it is on its way.
      for await (const m of c.messages(subIds[i]!)) {
        const now = performance.now();
        if (m.data.length >= 8 && latencies.length < 1_000_000) latencies.push(performance.timeOrigin + now - sentTime(m.data));
        lastAt = now;
        received++;
        if (++got === total) break;
      }
    };
    try {
      await Promise.race([read(), stalled.promise]);
    } finally {
      clearInterval(watch);
    }
  });

  const publishers = pubClients.map(async (c, p) => {
    const payload = new Uint8Array(options.size);
    const view = new DataView(payload.buffer);
    // The publishes in flight, a ring of `window` slots: publish i waits for publish i - window (no shift per message).
    const inFlight: Promise<void>[] = [];
    for (let i = 0; i < options.count; i++) {
      if (i >= options.window) await inFlight[i % options.window];
      const sentAt = performance.now();
      if (payload.length >= 8) view.setFloat64(0, performance.timeOrigin + sentAt);
      const slot = p * options.count + i;
      // publish() copies the payload, so one buffer is reused.
      inFlight[i % options.window] = c.publish(pubIds[p]!, options.topic, payload).then(() => {
        ackMs[slot] = performance.now() - sentAt;
        published++;
      });
    }
    await Promise.all(inFlight);
  });

  try {
    await Promise.all(publishers);
    const pubSeconds = (performance.now() - start) / 1000;
    await Promise.all(subscribers);
    const seconds = (performance.now() - start) / 1000;
    clearInterval(progress);
    if (onTerminal) process.stderr.write("\n");
    const result: BenchResult = {
      messages: total,
      size: options.size,
      pubs: options.pubs,
      subs: options.subs,
      seconds: Math.round(seconds * 1000) / 1000,
      pub_msgs_per_s: Math.round(total / pubSeconds),
      sub_msgs_per_s: Math.round(expected / seconds),
      mb_per_s: Math.round(((total + expected) * options.size) / seconds / 1e4) / 100,
      pub_ack_ms: percentiles(ackMs),
      latency_ms: latencies.length > 0 ? percentiles(latencies) : null,
    };
    if (options.json) await writeStdout(`${JSON.stringify(result)}\n`);
    else {
      const l = result.latency_ms;
      await writeStdout(
        [
          `${total} messages of ${options.size} B, ${options.pubs} publisher(s), ${options.subs} subscriber(s), ${result.seconds} s`,
          `publish:  ${result.pub_msgs_per_s} msgs/s, ack latency ${formatPercentiles(result.pub_ack_ms)}`,
          `receive:  ${result.sub_msgs_per_s} msgs/s, ${result.mb_per_s} MB/s in+out`,
          l ? `latency:  ${formatPercentiles(l)} (publish to recv)` : `latency:  n/a (${options.subs === 0 ? "no subscriber" : "size < 8 bytes"})`,
          "",
        ].join("\n"),
      );
    }
  } finally {
    clearInterval(progress);
    await Promise.all(subClients.map((c, i) => c.destroy(subIds[i]!).catch(() => {})));
    await Promise.all(pubClients.map((c, i) => c.destroy(pubIds[i]!).catch(() => {})));
    for (const c of [...subClients, ...pubClients]) c.close();
  }
  return Exit.Ok;
}

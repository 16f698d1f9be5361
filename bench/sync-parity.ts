/**
 * The sync on the loop against the pool, message by message, in s3's shape (docs/benchmarks.md,
 * "a single publish: the sync on the loop widened"): one publisher paced by 1 ms ticks
 * (RATE/1000 publishes a tick: one `pubs`), one subscriber on `recv`, in this process, against
 * an `mq up` built with bench/sync-parity.patch and run with MQ_SYNC_ALTERNATE=1 (of the commits
 * the rule syncs on the loop, those whose first seq is odd go to the pool). Each message's
 * latency publish → delivery, and each batch's ack latency, by the parity of its batch's first
 * seq: even = on the loop when the rule allows, odd = on the pool. bench/sync-parity.sh runs it.
 *
 *     ./node_modules/.bin/bun bench/sync-parity.ts CHECKOUT SOCKET [RATE=5000] [SECONDS=6]
 */
const [repo, sock, rateS = "5000", secsS = "6"] = process.argv.slice(2);
if (!repo || !sock) {
  console.error("usage: bun bench/sync-parity.ts CHECKOUT SOCKET [RATE] [SECONDS]");
  process.exit(2);
}
const { MqClient } = await import(`${repo}/lib/client/client.ts`);
const pubC = await MqClient.connect({ socket: sock });
const subC = await MqClient.connect({ socket: sock });
const pid = await pubC.create();
const sid = await subC.create();
const topic = `parity-${Date.now()}`;
await subC.subscribe(sid, [topic]);
/** µs, [even, odd] first seq of the batch. */
const delivered: [number[], number[]] = [[], []];
const acked: [number[], number[]] = [[], []];
let running = true;
let got = 0;
const receiving = (async () => {
  while (running) {
    const r = await subC.recv(sid, { max: 1000, waitMs: 100 });
    const now = performance.now();
    for (const m of r.messages) {
      const d = new DataView(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      const stamp = d.getFloat64(0, true); // 0: sent during the warm-up
      const first = m.seq - d.getUint32(8, true);
      if (stamp > 0) delivered[first % 2]!.push((now - stamp) * 1000);
      got++;
    }
    if (r.messages.length) r.ack();
  }
})();
const perTick = Math.round(Number(rateS) / 1000);
const warmEnd = performance.now() + 1000;
const end = performance.now() + Number(secsS) * 1000;
const pending: Promise<unknown>[] = [];
let sent = 0;
while (performance.now() < end) {
  const t = performance.now();
  const measured = t > warmEnd;
  let first: Promise<{ seq: number }> | undefined;
  for (let i = 0; i < perTick; i++) {
    const b = new Uint8Array(128);
    const d = new DataView(b.buffer);
    d.setFloat64(0, measured ? t : 0, true);
    d.setUint32(8, i, true);
    const p = pubC.publish(pid, topic, b);
    first ??= p;
    sent++;
  }
  pending.push(first!.then((r) => void (measured && acked[r.seq % 2]!.push((performance.now() - t) * 1000))));
  await Bun.sleep(1);
}
await Promise.all(pending);
for (let i = 0; i < 250 && got < sent; i++) await Bun.sleep(20);
running = false;
await receiving;
const q = (xs: number[], p: number) => Math.round([...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!);
const line = (k: 0 | 1) => `n ${delivered[k].length} p50 ${q(delivered[k], 0.5)} p90 ${q(delivered[k], 0.9)} p99 ${q(delivered[k], 0.99)}, ack p50 ${q(acked[k], 0.5)}`;
console.log(`loop (even): ${line(0)} | pool (odd): ${line(1)} | sent ${sent} received ${got}`);
pubC.close();
subC.close();
process.exit(0);

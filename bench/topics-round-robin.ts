/**
 * Publishing round robin over many topics (docs/benchmarks.md, "Many topics: one syncfs for
 * many commits"): one `mq up` must be listening on SOCKET; one id subscribed to topics g.0 ..
 * g.N-1, then PASSES passes of max(N, 20,000) publishes of 128 B, INFLIGHT in flight, each
 * to the next topic; prints each pass's rate (the first pays each topic's seq reservation).
 *
 *     ./node_modules/.bin/bun bench/topics-round-robin.ts SOCKET [N=1000] [PASSES=3] [INFLIGHT=256]
 */
import { MqClient } from "../lib/client/index.ts";

const [socket, nArg = "1000", passesArg = "3", inflightArg = "256"] = process.argv.slice(2);
if (!socket) throw new Error("usage: bun bench/topics-round-robin.ts SOCKET [N] [PASSES] [INFLIGHT]");
const N = Number(nArg);
const mq = await MqClient.connect({ socket });
const pub = await mq.create();
const sub = await mq.create();
const topics = Array.from({ length: N }, (_, i) => `g.${i}`);
for (let i = 0; i < N; i += 500) await mq.subscribe(sub, topics.slice(i, i + 500));
const payload = new Uint8Array(128);
for (let p = 0; p < Number(passesArg); p++) {
  const count = Math.max(N, 20_000);
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Number(inflightArg) }, async () => {
      while (next < count) await mq.publish(pub, topics[next++ % N]!, payload);
    }),
  );
  console.log(`pass ${p}: ${N} topics, ${count} msgs, ${(count / ((performance.now() - started) / 1000)).toFixed(0)} msgs/s`);
}
mq.close();

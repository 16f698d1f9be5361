/**
 * Run by tests/e2e/follow.test.ts, to be killed: follows the id `argv[2]` (credits 10),
 * acknowledges exactly `argv[3]` messages in batches of 5, takes one more batch without
 * acknowledging it, prints "ready <seqs taken>" and waits to be SIGKILLed.
 */
import { connect } from "../../lib/client/client.ts";

// Bounded whatever the broker does: never outlives the test by long.
setTimeout(() => process.exit(2), 30_000).unref();

const id = Number(process.argv[2]);
const toAck = Number(process.argv[3]);
const mq = await connect(); // at $MQ_SOCKET
const follow = await mq.follow(id, { credits: 10 });
const taken: number[] = [];
while (taken.length < toAck) {
  const batch = await follow.next({ max: Math.min(5, toAck - taken.length), waitMs: 10_000 });
  if (batch.messages.length === 0) throw new Error(`nothing came after ${taken.length} messages`);
  for (const m of batch.messages) taken.push(m.seq);
  await batch.ack();
}
const held = await follow.next({ max: 5, waitMs: 10_000 });
for (const m of held.messages) taken.push(m.seq);
// A request answered after the acks (credit frames) were taken: the broker has them all.
await mq.stats();
console.log(`ready ${taken.join(",")}`);
await Bun.sleep(60_000);

/**
 * Run by tests/client/package.test.ts as a user's program would be, from a directory where
 * `npm install <checkout>` put the package: leaves a `messages()` loop after 1 of 4 messages,
 * then reads on. Prints one line per step; the test compares the lines.
 */
import { connect, type Message } from "mq";

// Bounded in time whatever the broker does: a read that never comes fails the test quickly.
setTimeout(() => {
  console.log("timed out");
  process.exit(2);
}, 20_000).unref();

const topic = "pkg.break";
let mq = await connect(); // at $MQ_SOCKET
const id = await mq.create();
await mq.subscribe(id, [topic]);
for (const text of ["m1", "m2", "m3", "m4"]) await mq.publish(id, topic, text);
const pending = async () => (await mq.stats()).local.pending as number;
// All four buffered by the local broker, so that the first loop's batch holds all of them.
for (let i = 0; i < 200 && (await pending()) < 4; i++) await Bun.sleep(10);
console.log(`pending: ${await pending()}`);

const first: string[] = [];
for await (const m of mq.messages(id)) {
  first.push(m.text());
  break;
}
console.log(`first loop: ${first.join(" ")}`);

const second: string[] = [];
for await (const m of mq.messages(id)) {
  second.push(m.text());
  if (second.length === 3) break;
}
console.log(`second loop: ${second.join(" ")}`);
mq.close();

// A new connection: whatever the broker still held for the old one would come back first.
mq = await connect();
await mq.publish(id, topic, "m5");
const after: string[] = [];
for await (const m of mq.messages(id)) {
  after.push(m.text());
  if (m.text() === "m5" || after.length === 10) break;
}
console.log(`after reconnect: ${after.join(" ")}`);
await mq.destroy(id);
mq.close();

/** Never called: the type check of this file fails if `mq` came without its types. */
export function typesAreReal(m: Message): string {
  // @ts-expect-error -- Message has no method `nope`
  m.nope();
  return m.text();
}

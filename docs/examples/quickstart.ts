import { connect, Code, MqError } from "mq";

// Connects to the local broker at $MQ_SOCKET, else the default socket (`mq up` starts one).
await using mq = await connect();

const id = await mq.create();
await mq.subscribe(id, ["orders"]);
for (const total of [12, 30, 7]) await mq.publish(id, "orders", JSON.stringify({ total }));

// The new id gets what is published after it subscribed: our three messages (their seqs
// depend on what "orders" already holds).
let sum = 0;
let seen = 0;
for await (const m of mq.messages(id)) {
  console.log(`${m.topic} #${m.seq}: ${m.text()}`);
  sum += m.json<{ total: number }>().total;
  if (++seen === 3) break; // acknowledges the messages the loop saw; any others stay queued
}
console.log(`sum: ${sum}`);

await mq.destroy(id);
try {
  await mq.recv(id);
} catch (err) {
  if (!(err instanceof MqError) || err.code !== Code.UnknownId) throw err;
  console.log(`after destroy: ${err.code}`);
}

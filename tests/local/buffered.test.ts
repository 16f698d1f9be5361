/**
 * Before an unsub or destroy, a local broker tells its server which messages of explicit
 * subscriptions it still buffers, never handed to a client (`buffered`, ahead of the request
 * on the same link), so that a member leaving does not count them as delivered. Only to a
 * server that announces `buffered` in its caps: an older one gets the unsub alone.
 */
import { afterAll, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/client.ts";
import { configureLog } from "../../lib/log.ts";
import { PROTOCOL_VERSION, type Frame } from "../../lib/wire/messages.ts";
import { capabilities } from "../../lib/wire/ops.ts";
import { localAgainst } from "./scripted-server.ts";

afterAll(() => configureLog());

/** A stand-in server announcing `caps`: the `buffered`, `unsub` and `destroy` frames it got, in order, while a client leaves (`leave`). */
async function leaveAgainst(caps: string[], leave: (client: MqClient, id: number) => Promise<unknown>): Promise<Array<Record<string, unknown>>> {
  configureLog({ level: "error" });
  const seen: Frame[] = [];
  const server = await localAgainst("scripted server", (frame) => {
    if (frame.op === "hello") return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, maxInFlight: 1024, caps };
    seen.push(frame);
    if (frame.op === "create") return { id: 1001 };
    if (frame.op === "unsub") return { topics: [{ topic: "t", unsubscribed: true }] };
    return {};
  });
  try {
    await using client = await MqClient.connect({ socket: server.socket });
    const id = await client.create();
    // Three messages of an explicit subscription and one plain one; a client takes the first.
    server.connections[0]!.send({ op: "msgs", id: 1001, topic: "t", seq: 1, times: [0, 0, 0], payloads: [new Uint8Array([1]), new Uint8Array([2]), new Uint8Array([3])], explicit: true });
    server.connections[0]!.send({ op: "msgs", id: 1001, topic: "plain", seq: 1, times: [0], payloads: [new Uint8Array([9])] });
    const first = await client.recv(id, { max: 1, waitMs: 5000 });
    expect(first.messages.map((m) => m.seq)).toEqual([1]);
    await leave(client, id);
    // Without the rid (the unsub's and destroy's: whatever the local broker numbered them).
    return seen.filter((f) => ["buffered", "unsub", "destroy"].includes(f.op)).map((f) => Object.fromEntries(Object.entries(f).filter(([k]) => k !== "rid")));
  } finally {
    await server.stop();
  }
}

test("unsub: the seqs still buffered (not the one a client took) go to the server as `buffered`, then the unsub", async () => {
  const seen = await leaveAgainst(capabilities("server"), (client, id) => client.unsubscribe(id, ["t", "plain"]));
  expect(seen).toEqual([
    { op: "buffered", id: 1001, topic: "t", seqs: [2, 3] },
    { op: "unsub", id: 1001, topics: ["t", "plain"] },
  ]);
});

test("destroy: the same, for every explicit topic of the id", async () => {
  const seen = await leaveAgainst(capabilities("server"), (client, id) => client.destroy(id));
  expect(seen).toEqual([
    { op: "buffered", id: 1001, topic: "t", seqs: [2, 3] },
    { op: "destroy", id: 1001 },
  ]);
});

test("a server that does not announce `buffered` (older) gets the unsub alone", async () => {
  const seen = await leaveAgainst(
    capabilities("server").filter((op) => op !== "buffered"),
    (client, id) => client.unsubscribe(id, ["t"]),
  );
  expect(seen).toEqual([{ op: "unsub", id: 1001, topics: ["t"] }]);
});

/**
 * A clean stop of the local broker lets its clients acknowledge what they hold (up to 1 s):
 * an ack it took is answered before the connection closes, so the client's ack() resolves
 * (it rejected with UNAVAILABLE "closed" about half the time, the ack taken all the same).
 */
import { afterAll, expect, test } from "bun:test";
import { connect } from "../../lib/client/index.ts";
import { configureLog } from "../../lib/log.ts";
import type { MsgsFrame } from "../../lib/wire/messages.ts";
import { scripted } from "./scripted-server.ts";

afterAll(() => configureLog());

const push = (id: number, n: number): MsgsFrame => ({
  op: "msgs",
  id,
  topic: "t",
  seq: 1,
  times: Array.from({ length: n }, () => 1),
  payloads: Array.from({ length: n }, (_, k) => new Uint8Array([k])),
  more: false,
});

for (const delay of [0, 2, 5, 10, 15, 20, 30, 50, 100, 400]) {
  test(`an ack sent ${delay} ms into the local broker's clean stop is answered, and reaches the server`, async () => {
    configureLog({ level: "error" });
    const { server, seen } = await scripted();
    try {
      const mq = await connect({ socket: server.socket });
      const id = await mq.create();
      server.connections[0]!.send(push(1001, 5));
      const batch = await mq.recv(id, { max: 5, waitMs: 5000 });
      expect(batch.messages.length).toBe(5);
      const stopped = server.local.stop();
      await Bun.sleep(delay);
      await batch.ack();
      mq.close();
      await stopped;
      expect(seen.some((f) => f.op === "ack")).toBe(true);
    } finally {
      await server.stop();
    }
  });
}

/**
 * The library against a server from before `after` (a stand-in that refuses the field as an
 * older schema check did, behind a real local broker): the batches it refused are sent again
 * without it, each behind the one before, and from then on one batch per topic is in flight.
 * Everything is stored once, in publish order.
 */
import { afterAll, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/index.ts";
import { Code, MqError } from "../../lib/errors.ts";
import { configureLog } from "../../lib/log.ts";
import { PROTOCOL_VERSION } from "../../lib/wire/messages.ts";
import { localAgainst } from "../local/scripted-server.ts";

afterAll(() => configureLog());

test("against a server that refuses after, the library publishes without it, one batch at a time, all in order", async () => {
  configureLog({ level: "error" });
  const stored: string[] = [];
  let refused = 0;
  let inFlight = 0;
  let mostInFlight = 0;
  const decoder = new TextDecoder();
  const older = await localAgainst("server without after", (frame) => {
    if (frame.op === "hello") return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, maxInFlight: 16_384 };
    if (frame.op === "create") return { id: 7 };
    if (frame.op !== "pub" && frame.op !== "pubs") return {};
    // What the schema check of a server from before `after` answered: unknown field, nothing stored.
    if (frame.after !== undefined) {
      refused++;
      throw new MqError(Code.BadRequest, `${frame.op}: unexpected field "after"`);
    }
    // Stored at once, in arrival order; answered 5 ms later, so that the client has more to send meanwhile.
    const payloads = frame.op === "pub" ? [frame.data] : frame.payloads;
    const seqs = payloads.map((p) => stored.push(decoder.decode(p)));
    inFlight++;
    mostInFlight = Math.max(mostInFlight, inFlight);
    const reply = frame.op === "pub" ? { topic: frame.topic, seq: seqs[0], subscribers: 0, created: false } : { topic: frame.topic, seqs, subscribers: 0, created: false };
    return Bun.sleep(5).then(() => {
      inFlight--;
      return reply;
    });
  });
  const client = await MqClient.connect({ socket: older.socket });
  try {
    const id = await client.create();
    const results: Array<Promise<{ seq: number }>> = [];
    for (let i = 0; i < 2000; i++) {
      results.push(client.publish(id, "old.topic", `m${i}`));
      // A turn of the event loop every 100: one batch each, the next one sent while the last is unanswered.
      if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
    }
    const seqs = (await Promise.all(results)).map((r) => r.seq);
    expect(refused).toBeGreaterThan(0);
    expect(seqs).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
    expect(stored).toEqual(Array.from({ length: 2000 }, (_, i) => `m${i}`));
    // After the refusal: one at a time.
    expect(mostInFlight).toBe(1);
  } finally {
    client.close();
    await older.stop();
  }
});

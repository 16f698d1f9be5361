/**
 * MqClient against real daemons from the compiled binary: what leaving a `messages()` loop,
 * a partial `ack(count)` and a closing client leave for the next read, and the `Message` it
 * hands out.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MqClient, Message } from "../../lib/client/index.ts";
import { startCluster } from "../e2e/harness.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;
beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

let topics = 0;

/** A fresh id subscribed to a fresh topic, with `texts` published and all buffered by the local broker. */
async function idWith(c: MqClient, texts: Array<string | Uint8Array>): Promise<{ id: number; topic: string }> {
  const topic = `client.t${++topics}`;
  const id = await c.create();
  await c.subscribe(id, [topic]);
  const before = (await c.stats()).local.pending as number;
  await Promise.all(texts.map((t) => c.publish(id, topic, t)));
  // Buffered before the first read, so that one batch holds them all.
  let pending = before;
  for (let i = 0; i < 200 && pending < before + texts.length; i++) {
    await Bun.sleep(10);
    pending = (await c.stats()).local.pending as number;
  }
  expect(pending).toBe(before + texts.length);
  return { id, topic };
}

const texts = (ms: Message[]) => ms.map((m) => m.text());

/**
 * What a new connection reads of `id` up to a marker published now: anything the broker
 * still held unacknowledged (or put back when an old connection closed) comes before it.
 */
async function readOnNewConnection(id: number, topic: string): Promise<string[]> {
  await using c = await MqClient.connect({ socket: cluster.local.socket });
  await c.publish(id, topic, "marker");
  const out: string[] = [];
  for (let i = 0; i < 20 && out.at(-1) !== "marker"; i++) {
    const got = await c.recv(id, { max: 10, waitMs: 5000 });
    out.push(...texts(got.messages));
    await got.ack();
  }
  return out;
}

describe("MqClient.messages", () => {
  test("a queue-group member taking one message per loop (maxDeliver 3): each loop gets the next, none is dead-lettered (17 of 20 went to the dead-letter topic unseen)", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const topic = `client.jobs${++topics}`;
    const pub = await c.create();
    const worker = await c.create();
    const watch = await c.create();
    await c.subscribe(worker, [topic], { group: "workers", maxDeliver: 3 });
    await c.subscribe(watch, [`${topic}.dlq`]);
    for (let i = 1; i <= 20; i++) await c.publish(pub, topic, `job${i}`);
    const done: string[] = [];
    for (let round = 0; round < 6; round++) {
      const one = (async () => {
        for await (const m of c.messages(worker)) return m.text();
      })();
      // Bounded: before, the fourth loop waited for ever (the rest had gone to the dead-letter topic).
      const got = await Promise.race([one, Bun.sleep(5000).then(() => "nothing within 5 s")]);
      done.push(got ?? "loop ended");
      if (got === "nothing within 5 s") break;
    }
    expect(done).toEqual(["job1", "job2", "job3", "job4", "job5", "job6"]);
    // A marker through the dead-letter topic's own subscription: whatever was dead-lettered comes before it.
    await c.publish(pub, `${topic}.dlq`, "marker");
    const dead = await c.recv(watch, { max: 100, waitMs: 5000 });
    expect(texts(dead.messages)).toEqual(["marker"]);
    await dead.ack();
  });

  test("a throw in the loop body acknowledges the messages given so far and puts the rest back", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const { id, topic } = await idWith(c, ["a", "b", "c", "d"]);
    const seen: string[] = [];
    const boom = new Error("boom");
    let caught: unknown;
    try {
      for await (const m of c.messages(id)) {
        seen.push(m.text());
        if (seen.length === 2) throw boom;
      }
    } catch (err) {
      caught = err;
    }
    expect({ seen, caught }).toEqual({ seen: ["a", "b"], caught: boom });
    const next = await c.recv(id, { max: 10 });
    expect(texts(next.messages)).toEqual(["c", "d"]);
    await next.ack();
    // Nothing comes again: a and b were acknowledged, c and d now too.
    c.close();
    expect(await readOnNewConnection(id, topic)).toEqual(["marker"]);
  });

  test("a loop left on the last message of a batch acknowledges the whole batch", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const { id, topic } = await idWith(c, ["a", "b"]);
    const seen: string[] = [];
    for await (const m of c.messages(id)) {
      seen.push(m.text());
      if (seen.length === 2) break;
    }
    expect(seen).toEqual(["a", "b"]);
    c.close();
    expect(await readOnNewConnection(id, topic)).toEqual(["marker"]);
  });
});

describe("Received.ack(count)", () => {
  test("count 0 puts the whole batch back for the next recv, in order", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const { id } = await idWith(c, ["a", "b", "c"]);
    const got = await c.recv(id, { max: 10 });
    expect(texts(got.messages)).toEqual(["a", "b", "c"]);
    await got.ack(0);
    const again = await c.recv(id, { max: 10 });
    expect(texts(again.messages)).toEqual(["a", "b", "c"]);
    await again.ack();
  });

  test("a count outside 0 to the batch size is a RangeError and the batch stays pending", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const { id } = await idWith(c, ["a", "b"]);
    const got = await c.recv(id, { max: 10 });
    for (const bad of [3, -1, 1.5, Number.NaN]) await expect(got.ack(bad)).rejects.toThrow(RangeError);
    await got.ack(1);
    expect(texts((await c.recv(id, { max: 10 })).messages)).toEqual(["b"]);
  });

  test("a batch acknowledged in part, and a newer one left unacknowledged by a closing client, come back in seq order", async () => {
    const c = await MqClient.connect({ socket: cluster.local.socket });
    const { id } = await idWith(c, ["1", "2", "3", "4"]);
    const older = await c.recv(id, { max: 2 });
    const newer = await c.recv(id, { max: 2 });
    expect([texts(older.messages), texts(newer.messages)]).toEqual([["1", "2"], ["3", "4"]]);
    await older.ack(1); // 2 goes back now, 3 and 4 when the connection closes
    c.close();
    await using reader = await MqClient.connect({ socket: cluster.local.socket });
    const rest = await reader.recv(id, { max: 10, waitMs: 5000 });
    expect(rest.messages.map((m) => m.seq)).toEqual([2, 3, 4]);
    await rest.ack();
  });
});

describe("Message", () => {
  test("text() decodes UTF-8 and json() parses, next to topic, seq, time and data", () => {
    const m = new Message("orders", 7, 1_700_000_000_000, new TextEncoder().encode('{"total":12,"note":"é"}'));
    expect(m.text()).toBe('{"total":12,"note":"é"}');
    expect(m.json()).toEqual({ total: 12, note: "é" });
    expect({ ...m }).toEqual({ topic: "orders", seq: 7, time: 1_700_000_000_000, data: m.data });
  });

  test("text() turns bytes that are not UTF-8 into U+FFFD; json() of a payload that is not JSON throws a SyntaxError", () => {
    const m = new Message("t", 1, 0, new Uint8Array([0xff, 0x41]));
    expect(m.text()).toBe("\uFFFDA");
    expect(() => m.json()).toThrow(SyntaxError);
  });

  test("messages from recv and messages() are Messages with the payload as published", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const binary = new Uint8Array([0, 0xff, 10]);
    const { id, topic } = await idWith(c, ['{"n":1}', binary]);
    const got = await c.recv(id, { max: 1 });
    expect(got.messages[0]).toBeInstanceOf(Message);
    expect(got.messages[0]!.json()).toEqual({ n: 1 });
    expect({ topic: got.messages[0]!.topic, seq: got.messages[0]!.seq }).toEqual({ topic, seq: 1 });
    await got.ack();
    for await (const m of c.messages(id)) {
      expect(m).toBeInstanceOf(Message);
      expect(m.data).toEqual(binary);
      expect(m.seq).toBe(2);
      break;
    }
  });

  test("publish copies its bytes at once: a Buffer, a view into a bigger buffer or a Uint8Array changed right after the call is stored as it was", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const topic = `client.t${++topics}`;
    const id = await c.create();
    await c.subscribe(id, [topic]);
    const buffer = Buffer.from("buffer-bytes");
    const block = new Uint8Array(64).fill(7);
    const view = block.subarray(10, 20);
    const plain = new Uint8Array([1, 2, 3, 4]);
    // Made together, so they go out in one batch after the event loop turns, after the changes below.
    const sent = [buffer, view, plain].map((data) => c.publish(id, topic, data));
    buffer.fill(0);
    block.fill(9);
    plain.fill(0);
    await Promise.all(sent);
    const received: number[][] = [];
    for (let i = 0; i < 50 && received.length < 3; i++) {
      const got = await c.recv(id, { max: 3, waitMs: 5000 });
      for (const m of got.messages) received.push([...m.data]);
      await got.ack();
    }
    expect(received).toEqual([[...Buffer.from("buffer-bytes")], new Array(10).fill(7), [1, 2, 3, 4]]);
  });

  test("publish: payloads of every size (across the blocks they are copied into), many batches in flight and one at a time, the caller's buffer reused after each call: each stored as published", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const topic = `client.t${++topics}`;
    const id = await c.create();
    await c.subscribe(id, [topic]);
    // Message i: its index in 4 bytes, then bytes from i; sizes from 0 to 40 KiB (some above a quarter block: a block of their own).
    const payloadOf = (i: number) => {
      const size = i % 97 === 0 ? 40_000 : i % 7 === 0 ? 0 : 4 + ((i * 131) % 3000);
      const b = new Uint8Array(size);
      for (let k = 0; k < size; k++) b[k] = (i + k) & 0xff;
      if (size >= 4) new DataView(b.buffer).setUint32(0, i);
      return b;
    };
    const reused = new Uint8Array(40_000); // the caller's one buffer, overwritten after each call
    const publishAt = (i: number) => {
      const p = payloadOf(i);
      reused.set(p);
      const sent = c.publish(id, topic, reused.subarray(0, p.length));
      reused.fill(0xee);
      return sent;
    };
    const total = 3000;
    // Most in one go (many batches of the topic in flight), the rest one at a time.
    await Promise.all(Array.from({ length: 2900 }, (_, i) => publishAt(i)));
    for (let i = 2900; i < total; i++) await publishAt(i);
    let next = 0;
    for (let reads = 0; reads < 500 && next < total; reads++) {
      const got = await c.recv(id, { max: 1000, waitMs: 5000 });
      for (const m of got.messages) {
        expect(m.seq).toBe(next + 1);
        expect(Buffer.from(m.data).equals(Buffer.from(payloadOf(next)))).toBe(true);
        next++;
      }
      await got.ack();
    }
    expect(next).toBe(total);
  });
});

describe("MqClient.recv", () => {
  test("an ack made just before the next recv goes out in the same socket write", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const { id } = await idWith(c, ["a", "b"]);
    const got = await c.recv(id, { max: 1 });
    // Counts the client's writes to the local broker's socket (a private field: no other way to see the writes).
    const socket = (c as unknown as { conn: { socket: { write(data: Uint8Array): number } } }).conn.socket;
    const write = socket.write.bind(socket);
    let writes = 0;
    socket.write = (data) => {
      writes++;
      return write(data);
    };
    // As a recv loop does: the ack not awaited, the next recv at once.
    const acked = got.ack();
    const next = await c.recv(id, { max: 1 });
    await acked;
    expect(texts(next.messages)).toEqual(["b"]);
    expect(writes).toBe(1);
    await next.ack();
  });
});

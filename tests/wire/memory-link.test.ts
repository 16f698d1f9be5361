/**
 * The in-memory socket pair of `mq up` (lib/wire/memory-link.ts) under two real Connections:
 * requests and pushes arrive whole and in order with their replies, an error reply keeps its
 * code, hot frames go as objects and the others encoded, still in order, a close from either side reaches the other (what was written first still arrives),
 * `terminate` drops at once, the peer's bytes are its own copy, delivery never runs inside
 * the writer's flush, and a writer that filled its outbound budget is told to go on, with
 * publishes as with pushes.
 */
import { describe, expect, test } from "bun:test";
import { Code, MqError } from "../../lib/errors.ts";
import { CloseReason, Connection, OUTBOUND_BUDGET_BYTES, type ConnectionHandler } from "../../lib/wire/connection.ts";
import type { Frame } from "../../lib/wire/messages.ts";
import { joinInMemory, memorySocketPair } from "../../lib/wire/memory-link.ts";

const options = { maxFrameBytes: 1 << 30, label: "peer" };

/** Lets a few turns of the event loop go by (delivery is at the next turn; a request and its reply take two). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A Connection pair over the in-memory link; `server` answers with `serve`, both record what they get and why they closed. */
function pair(serve: (frame: Frame) => unknown = () => ({})) {
  const got = { client: [] as Frame[], server: [] as Frame[] };
  const closed = { client: [] as CloseReason[], server: [] as CloseReason[] };
  const drains = { client: 0, server: 0 };
  const handler = (side: "client" | "server"): ConnectionHandler => ({
    frame: (_conn, frame) => {
      got[side].push(frame);
      return side === "server" ? serve(frame) : undefined;
    },
    closed: (_conn, reason) => void closed[side].push(reason),
    drain: () => void drains[side]++,
  });
  let server!: Connection;
  const client = joinInMemory(
    (socket) => (server = new Connection(socket, handler("server"), options)),
    (socket) => new Connection(socket, handler("client"), options),
  );
  return { client, server, got, closed, drains };
}

describe("in-memory link", () => {
  test("requests get their replies in order, pushes arrive in order, and an error reply keeps its code", async () => {
    const p = pair((frame) => {
      if (frame.op === "ack" && frame.id === 13) throw new MqError(Code.UnknownId, "no client with id 13");
      return frame.op === "recv" ? { tag: frame.id } : {};
    });
    const replies = Array.from({ length: 500 }, (_, i) => p.client.request({ op: "recv", id: i + 1, max: 1, wait: 0 }));
    const failed = p.client.request({ op: "ack", id: 13, tag: 1 }).then(
      () => "ok",
      (err: MqError) => err.code,
    );
    for (let i = 0; i < 300; i++) p.server.send({ op: "msgs", id: 7, topic: "t", seq: i + 1, times: [i], payloads: [new Uint8Array([i & 0xff])] });
    expect((await Promise.all(replies)).map((r) => r.tag)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    expect(await failed).toBe(Code.UnknownId);
    expect(p.got.server.map((f) => (f as { id: number }).id)).toEqual([...Array.from({ length: 500 }, (_, i) => i + 1), 13]);
    expect(p.got.client.map((f) => (f as { seq: number }).seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    p.client.close();
    await settle();
  });

  test("hot frames go as the objects sent, the others encoded, and all arrive in the order sent", async () => {
    const p = pair();
    const sent: object[] = [];
    for (let i = 0; i < 200; i++) {
      const frame =
        i % 3 === 0
          ? { op: "msgs", id: 1, topic: "t", seq: i + 1, times: [i], payloads: [new Uint8Array([i & 0xff])] }
          : i % 3 === 1
            ? { op: "ack", id: 1, topic: "t", seq: i }
            : { op: "credit", id: 1, credits: i }; // not hot: encoded
      sent.push(frame);
      p.server.send(frame);
    }
    await settle();
    expect(p.got.client).toHaveLength(200);
    for (let i = 0; i < 200; i++) {
      if (i % 3 === 2) {
        expect(p.got.client[i]).not.toBe(sent[i]); // decoded from its bytes
        expect(p.got.client[i]).toEqual(sent[i] as Frame);
      } else expect(p.got.client[i]).toBe(sent[i] as Frame);
    }
    p.client.close();
    await settle();
  });

  test("a close from either side reaches the other after what was written before it; requests in flight fail", async () => {
    for (const closer of ["client", "server"] as const) {
      const p = pair(() => new Promise(() => {})); // never answers
      const other = closer === "client" ? "server" : "client";
      const inFlight = p.client.request({ op: "recv", id: 1, max: 1, wait: 0 }).then(
        () => "answered",
        (err: MqError) => err.code,
      );
      p[closer].send({ op: "msgs", id: 2, topic: "last", seq: 1, times: [1], payloads: [new Uint8Array(1)] });
      p[closer].close();
      await settle();
      expect(p.got[other].map((f) => f.op)).toContain("msgs"); // written before the close: delivered
      expect(p.closed[closer]).toEqual([CloseReason.LocalClose]);
      expect(p.closed[other]).toEqual([CloseReason.PeerClosed]);
      expect(p[other].closed).toBe(true);
      expect(await inFlight).toBe(Code.Unavailable);
      // Nothing written after the close goes anywhere.
      p[other].send({ op: "ping" });
      await settle();
    }
  });

  test("terminate drops what is undelivered and closes both sides at once", async () => {
    const [a, b] = memorySocketPair();
    const got: number[] = [];
    let closes = 0;
    const sink = { onData: (c: Uint8Array) => void got.push(c.length), onClose: () => void closes++, onDrain: () => {} };
    a.conn = sink as unknown as Connection;
    b.conn = sink as unknown as Connection;
    a.write(new Uint8Array(10));
    a.terminate();
    await settle();
    expect(got).toEqual([]);
    expect(closes).toBe(2);
  });

  test("the peer gets its own copy, delivered after the write returns (never inside it)", async () => {
    const [a, b] = memorySocketPair();
    const got: Uint8Array[] = [];
    b.conn = { onData: (c: Uint8Array) => void got.push(c), onClose: () => {}, onDrain: () => {} } as unknown as Connection;
    const buf = new Uint8Array([1, 2, 3, 4]);
    expect(a.write(buf)).toBe(4);
    expect(got).toHaveLength(0);
    buf.fill(9); // the writer reuses its buffer at once
    await settle();
    expect([...got[0]!]).toEqual([1, 2, 3, 4]);
  });

  test("a writer that queued its whole outbound budget in one turn is told to go on once the peer took it", async () => {
    const p = pair();
    const payload = new Uint8Array(256 * 1024);
    let sent = 0;
    while (p.server.writable && sent < 1000) {
      p.server.send({ op: "msgs", id: 1, topic: "big", seq: ++sent, times: [sent], payloads: [payload] });
    }
    expect(sent).toBeGreaterThanOrEqual(OUTBOUND_BUDGET_BYTES / payload.length);
    expect(p.drains.server).toBe(0);
    await settle();
    expect(p.got.client).toHaveLength(sent);
    expect(p.drains.server).toBe(1);
    expect(p.server.writable as boolean).toBe(true); // (a getter: not narrowed by the loop)
    p.client.close();
    await settle();
  });

  test("pushes queued before a publish's reply arrive before it: many publishes in flight, each answered after a push", async () => {
    let seq = 0;
    let server!: Connection;
    const p = pair((frame) => {
      if (frame.op !== "pubs") return {};
      // As the server does: the commit pumps the subscribers, then the reply goes.
      seq++;
      server.send({ op: "msgs", id: 9, topic: "t", seq, times: [seq], payloads: [new Uint8Array([seq & 0xff])] });
      return { topic: "t", seqs: [seq] };
    });
    server = p.server;
    const pushedWhenAnswered: number[] = [];
    const replies = Array.from({ length: 300 }, (_, i) =>
      p.client.request({ op: "pubs", id: 1, topic: "t", payloads: [new Uint8Array([i & 0xff])] }).then((r) => {
        pushedWhenAnswered.push(p.got.client.length);
        return (r.seqs as number[])[0];
      }),
    );
    expect(await Promise.all(replies)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    // Reply k was taken after push k (the push went first, whichever turn carried them).
    for (let k = 0; k < 300; k++) expect(pushedWhenAnswered[k]).toBeGreaterThanOrEqual(k + 1);
    await settle();
    expect(p.got.client.map((f) => (f as { seq: number }).seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    p.client.close();
    await settle();
  });

  test("publishes filling the outbound budget in one turn: the writer stops at the budget and is told to go on once the peer took them", async () => {
    const p = pair(() => ({ topic: "big", seqs: [1] }));
    await settle();
    const payload = new Uint8Array(256 * 1024);
    const replies: Promise<unknown>[] = [];
    while (p.client.writable && replies.length < 1000) replies.push(p.client.request({ op: "pubs", id: 1, topic: "big", payloads: [payload] }));
    expect(replies.length).toBeGreaterThanOrEqual(OUTBOUND_BUDGET_BYTES / payload.length);
    expect(replies.length).toBeLessThan(OUTBOUND_BUDGET_BYTES / payload.length + 2);
    expect(p.drains.client).toBe(0);
    await Promise.all(replies);
    expect(p.got.server).toHaveLength(replies.length);
    expect(p.drains.client).toBe(1);
    expect(p.client.writable as boolean).toBe(true);
    p.client.close();
    await settle();
  });
});

/**
 * ConnectionHandler.yieldAfter (lib/wire/connection.ts): what arrived behind such an op in
 * one turn is served at the next turn, in order, so the op's reply (a promise the handler
 * settles in microtasks) is written before the work of the frames behind it. The local broker
 * of `mq up --fsync never` uses it for `pubs`: one batch's reply leaves before the next
 * batch's commit (docs/architecture.md "One publish batch per turn").
 */
import { describe, expect, test } from "bun:test";
import { decodeMap, encode } from "../../lib/wire/codec.ts";
import { Connection, type ConnectionHandler, type SocketLike } from "../../lib/wire/connection.ts";
import { FrameDecoder } from "../../lib/wire/frame.ts";

function framed(frames: object[]): Uint8Array {
  return new Uint8Array(
    Buffer.concat(
      frames.map((f) => {
        const body = encode(f);
        const head = Buffer.alloc(4);
        head.writeUInt32BE(body.length);
        return Buffer.concat([head, body]);
      }),
    ),
  );
}

/** Records, in one list, each frame served (`op rid`) and each write (`write` and the rids it answers). */
function recorder(yieldAfter?: (op: string) => boolean) {
  const events: string[] = [];
  const socket: SocketLike = {
    write(data: Uint8Array): number {
      const rids: unknown[] = [];
      new FrameDecoder({ frame: (p) => void rids.push(decodeMap(p.slice()).rid), invalid: (r) => void rids.push(r) }, 1 << 20).push(data);
      events.push(`write ${rids.join(",")}`);
      return data.length;
    },
    end() {},
  };
  const handler: ConnectionHandler = {
    // A publish is answered in a microtask (as a commit under --fsync never is), anything else at once.
    frame: (_conn, frame) => {
      events.push(`${frame.op} ${"rid" in frame ? frame.rid : ""}`);
      return frame.op === "pubs" ? Promise.resolve({ seqs: [1] }) : {};
    },
    ...(yieldAfter ? { yieldAfter } : {}),
  };
  const conn = new Connection(socket, handler, { maxFrameBytes: 1 << 20, label: "client" });
  return { conn, events };
}

/** Waits at most `turns` turns of the event loop until `done()`. */
async function turnsUntil(done: () => boolean, turns = 20): Promise<void> {
  for (let i = 0; i < turns && !done(); i++) await new Promise<void>((r) => setImmediate(r));
}

const pubs = (rid: number) => ({ op: "pubs", rid, id: 1, topic: "t", payloads: [new Uint8Array([rid])] });
const ack = (rid: number) => ({ op: "ack", rid, id: 1, tag: rid });

describe("Connection yieldAfter", () => {
  test("Connection serves what came behind a yieldAfter op at the next turn, after that op's reply is written, in order", async () => {
    const { conn, events } = recorder((op) => op === "pubs");
    // Two reads in one turn: the second arrives while the first's tail is held, and goes behind it.
    conn.onData(framed([pubs(1), pubs(2), ack(3)]));
    conn.onData(framed([pubs(4)]));
    expect(events).toEqual(["pubs 1"]);
    await turnsUntil(() => events.filter((e) => e.startsWith("write")).length >= 3);
    // The held frames are served together: a held pubs does not hold what follows it (what is
    // held lives one turn). The ack's reply is sent at once, the publishes' in microtasks.
    expect(events).toEqual(["pubs 1", "write 1", "pubs 2", "ack 3", "pubs 4", "write 3,2", "write 4"]);
  });

  test("Connection without yieldAfter serves a read's frames in that read, before any reply is written", async () => {
    const { conn, events } = recorder();
    conn.onData(framed([pubs(1), pubs(2), ack(3)]));
    conn.onData(framed([pubs(4)]));
    expect(events).toEqual(["pubs 1", "pubs 2", "ack 3", "pubs 4"]);
    await turnsUntil(() => events.filter((e) => e.startsWith("write")).length >= 2);
    expect(events).toEqual(["pubs 1", "pubs 2", "ack 3", "pubs 4", "write 3,1,2", "write 4"]);
  });

  test("Connection drops the held frames when it closes before the next turn", async () => {
    const { conn, events } = recorder((op) => op === "pubs");
    conn.onData(framed([pubs(1), pubs(2)]));
    conn.onClose();
    await turnsUntil(() => false, 3);
    expect(events).toEqual(["pubs 1"]);
  });
});

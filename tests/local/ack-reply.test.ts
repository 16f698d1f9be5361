/**
 * The local broker writes the answer of a client's `ack` with its next write on that
 * connection (ConnectionHandler.lazyReply, docs/protocol.md "Ack on the client hop"): an ack
 * pipelined with the next `recv` costs no write of its own. Driven on a raw socket to a real
 * `mq up`, so the bytes of each socket read are seen as they come.
 */
import { describe, expect, test } from "bun:test";
import { connect } from "../../lib/client/index.ts";
import { decodeMap, encode } from "../../lib/wire/codec.ts";
import { FrameDecoder } from "../../lib/wire/frame.ts";
import { PROTOCOL_VERSION } from "../../lib/wire/messages.ts";
import { createOn, mq, startUp, teardown } from "../e2e/harness.ts";

function framed(frames: object[]): Uint8Array {
  return Buffer.concat(
    frames.map((f) => {
      const body = encode(f);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      return Buffer.concat([head, body]);
    }),
  );
}

/** A raw client connection: each socket read's frames, in order, as one array per read. */
async function rawClient(socket: string) {
  const reads: Array<Array<Record<string, unknown>>> = [];
  let current: Array<Record<string, unknown>> = [];
  const decoder = new FrameDecoder({ frame: (p) => void current.push(decodeMap(p.slice())), invalid: (r) => { throw new Error(r); } }, 1 << 24);
  const waiters: Array<() => void> = [];
  const s = await Bun.connect({
    unix: socket,
    socket: {
      data: (_s, chunk) => {
        current = [];
        decoder.push(chunk);
        reads.push(current);
        for (const w of waiters.splice(0)) w();
      },
    },
  });
  /** Waits (bounded) until `n` frames have come in all. */
  const frames = async (n: number) => {
    for (let i = 0; i < 100 && reads.flat().length < n; i++) await Promise.race([new Promise<void>((r) => waiters.push(r)), Bun.sleep(100)]);
    return reads.flat();
  };
  return { s, reads, frames };
}

describe("local broker: the answer of an ack", () => {
  test("an ack pipelined with a recv that is answered at once: both answers in one write", async () => {
    const up = await startUp();
    try {
      const id = await createOn(up.socket);
      expect((await mq(up.socket, ["sub", String(id), "t"])).code).toBe(0);
      const client = await connect({ socket: up.socket });
      await Promise.all([client.publish(id, "t", "a"), client.publish(id, "t", "b"), client.publish(id, "t", "c")]);
      client.close();
      const raw = await rawClient(up.socket);
      raw.s.write(framed([{ op: "hello", rid: 1, version: PROTOCOL_VERSION }, { op: "recv", rid: 2, id, max: 1, wait: 2000 }]));
      const first = await raw.frames(2);
      const tag = first.find((f) => f.rid === 2)?.tag as number;
      expect(typeof tag).toBe("number");
      const before = raw.reads.length;
      // The ack, then a recv that finds a message buffered: answered in the same turn.
      raw.s.write(framed([{ op: "ack", rid: 3, id, tag }, { op: "recv", rid: 4, id, max: 1, wait: 2000 }]));
      const all = await raw.frames(4);
      expect(all.filter((f) => f.rid === 3 || f.rid === 4).map((f) => f.op)).toEqual(["ok", "ok"]);
      // One read held both: they were written together (two writes are mostly read apart;
      // tests/wire/connection-out.test.ts checks the rule itself exactly).
      expect(raw.reads.slice(before).map((r) => r.map((f) => f.rid))).toEqual([[3, 4]]);
      raw.s.end();
    } finally {
      await teardown([up.daemon], [up.dataDir]);
    }
  });

  test("an ack alone is still answered (at the next turn)", async () => {
    const up = await startUp();
    try {
      const id = await createOn(up.socket);
      expect((await mq(up.socket, ["sub", String(id), "t"])).code).toBe(0);
      const client = await connect({ socket: up.socket });
      await client.publish(id, "t", "a");
      const got = await client.recv(id, { max: 1, waitMs: 2000 });
      expect(got.messages.length).toBe(1);
      await got.ack(); // resolves: its answer came
      expect((await client.recv(id, { max: 1, waitMs: 0 })).messages.length).toBe(0);
      client.close();
    } finally {
      await teardown([up.daemon], [up.dataDir]);
    }
  });
});

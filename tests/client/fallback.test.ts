/**
 * The library against a local broker that does not serve push delivery (one that announces
 * `caps` without `follow`, or an older one that announces none): `messages()` falls back to
 * the request loop (`recv` + `ack` per batch), and `follow()` says UNKNOWN_OP. The broker is
 * a stand-in answering from a script, as an older mq local would.
 */
import { afterEach, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/client.ts";
import { Code, MqError } from "../../lib/errors.ts";
import type { Connection } from "../../lib/wire/connection.ts";
import { standInLocal } from "./stand-in-local.ts";
import { capabilities, PROTOCOL_VERSION, type Frame } from "../../lib/wire/messages.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A stand-in local broker on a Unix socket: answers hello with `caps` (undefined: none), and recv with the next of `batches`. */
function olderLocal(caps: string[] | undefined, batches: Array<Array<{ seq: number; text: string }>>): { socket: string; ops: string[] } {
  const ops: string[] = [];
  let tag = 0;
  const frame = (conn: Connection, f: Frame) => {
    ops.push(f.op);
    if (f.op === "hello") {
      conn.helloDone = true;
      return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, ...(caps ? { caps } : {}) };
    }
    if (f.op === "recv") {
      const batch = batches.shift() ?? [];
      return { messages: batch.map((m) => ({ topic: "t", seq: m.seq, time: 1, data: new TextEncoder().encode(m.text) })), tag: ++tag, more: batches.length > 0 };
    }
    if (f.op === "ack") return {};
    throw new MqError(Code.UnknownOp, `op ${JSON.stringify(f.op)} is not served by this stand-in`);
  };
  const { socket, stop } = standInLocal("older local", frame);
  cleanups.push(stop);
  return { socket, ops };
}

const withoutPush = capabilities("client").filter((op) => !["follow", "credit", "unfollow"].includes(op));

for (const [what, caps] of [
  ["announces caps without follow", withoutPush],
  ["announces no caps (older than them)", undefined],
] as const) {
  test(`messages() on a local broker that ${what} asks batch by batch with recv and ack`, async () => {
    const older = olderLocal(caps, [[{ seq: 1, text: "a" }, { seq: 2, text: "b" }], [{ seq: 3, text: "c" }]]);
    const c = await MqClient.connect({ socket: older.socket });
    try {
      expect(c.serves("follow")).toBe(false);
      const got: string[] = [];
      for await (const m of c.messages(1)) {
        got.push(`${m.seq}:${m.text()}`);
        if (got.length === 3) break;
      }
      expect(got).toEqual(["1:a", "2:b", "3:c"]);
      expect(older.ops).toEqual(["hello", "recv", "ack", "recv", "ack"]);
      const err = await c.follow(1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MqError);
      expect((err as MqError).code).toBe(Code.UnknownOp);
      expect((err as MqError).message).toContain("does not serve push delivery (follow)");
    } finally {
      c.close();
    }
  });
}

/**
 * `MqError.unsent`: a publish that reached no server is said to be not stored. The local broker
 * marks an error `unsent` when it never wrote the request to a server; the library keeps the
 * mark only when no attempt of a retried publish may have reached one. The local broker is a
 * stand-in answering each `pub` with the next of a script.
 */
import { afterEach, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/client.ts";
import { Code, MqError } from "../../lib/errors.ts";
import type { Connection } from "../../lib/wire/connection.ts";
import { standInLocal } from "./stand-in-local.ts";
import { PROTOCOL_VERSION, type Frame } from "../../lib/wire/messages.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A stand-in local broker answering each `pub` with the next of `answers`: an error to throw, or a seq. */
function scriptedLocal(answers: Array<MqError | number>): { socket: string; pubs: () => number } {
  let pubs = 0;
  const frame = (conn: Connection, f: Frame) => {
    if (f.op === "hello") {
      conn.helloDone = true;
      return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20 };
    }
    if (f.op === "pub") {
      pubs++;
      const next = answers.shift();
      if (next instanceof MqError) throw next;
      return { seq: next ?? 1 };
    }
    throw new MqError(Code.UnknownOp, `op ${JSON.stringify(f.op)} is not served by this stand-in`);
  };
  const { socket, stop } = standInLocal("scripted local", frame);
  cleanups.push(stop);
  return { socket, pubs: () => pubs };
}

const unreachable = () => new MqError(Code.Unavailable, "server 127.0.0.1:1 unreachable", { unsent: true });
const lost = () => new MqError(Code.Unavailable, "server 127.0.0.1:1 did not answer in time");

async function publishError(answers: Array<MqError | number>, retryMs: number) {
  const local = scriptedLocal(answers);
  const c = await MqClient.connect({ socket: local.socket, retryMs });
  try {
    const err = await c.publish(1, "t", "x").then(() => null, (e: unknown) => e);
    return { err: err as MqError | null, pubs: local.pubs() };
  } finally {
    c.close();
  }
}

test("an error the local broker marks unsent reaches the caller marked unsent", async () => {
  const { err, pubs } = await publishError([unreachable()], 0);
  expect(err).toBeInstanceOf(MqError);
  expect(err!.code).toBe(Code.Unavailable);
  expect(err!.unsent).toBe(true);
  expect(pubs).toBe(1);
});

test("an error without the mark (the request went to the server) is not unsent", async () => {
  const { err } = await publishError([lost()], 0);
  expect(err!.unsent).toBe(false);
});

test("retried: unsent only if no attempt may have reached a server", async () => {
  // Every attempt unsent: still unsent.
  const all = await publishError(Array.from({ length: 20 }, unreachable), 1000);
  expect(all.pubs).toBeGreaterThan(1);
  expect(all.err!.unsent).toBe(true);
  // The first attempt may have been stored (its answer lost), the last one is unsent: it may be stored.
  const first = await publishError([lost(), ...Array.from({ length: 20 }, unreachable)], 1000);
  expect(first.pubs).toBeGreaterThan(1);
  expect(first.err!.code).toBe(Code.Unavailable);
  expect(first.err!.unsent).toBe(false);
});

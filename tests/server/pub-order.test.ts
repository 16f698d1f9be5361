/**
 * The `after` field of pub / pubs (lib/server/pub-order.ts), through the real local broker
 * and server: a publish naming the msgId before it is stored only when that one is stored
 * or being stored ahead of it; otherwise UNAVAILABLE and nothing stored. The library's use
 * of it (several batches in flight per topic, across cuts) is in tests/faults/network-publish.test.ts.
 */
import { afterEach, expect, test } from "bun:test";
import { jsonLines, mq, restartServer, startLocal, startServer, teardown, type LocalHandle, type ServerHandle } from "../e2e/harness.ts";
import { helloPeer, type RawPeer, type WireMap } from "../security/kit.ts";

let server: ServerHandle;
let local: LocalHandle;
let peer: RawPeer | null = null;
let rid = 10;

async function start(serverArgs: string[] = []): Promise<number> {
  server = await startServer({ args: serverArgs });
  local = await startLocal(server.address);
  peer = await helloPeer({ unix: local.socket }, "local");
  return (await ask({ op: "create" })).id as number;
}

function ask(frame: WireMap): Promise<WireMap> {
  const r = ++rid;
  return peer!.request({ ...frame, rid: r });
}

const bytes = (s: string) => new TextEncoder().encode(s);

/** The payloads stored in `topic`, in seq order. */
async function stored(topic: string): Promise<string[]> {
  const reader = Number((await mq(local.socket, ["create"])).stdout);
  await mq(local.socket, ["sub", String(reader), topic, "--from", "earliest"]);
  return jsonLines((await mq(local.socket, ["recv", String(reader), "--count", "100", "--json"])).stdout).map((m) => m.data as string);
}

afterEach(async () => {
  peer?.end();
  peer = null;
  await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
});

test("a publish after an id the topic has not stored is refused UNAVAILABLE, nothing stored; after a stored one it is stored", async () => {
  const id = await start();
  // The run P:n shape (the library's producer ids) and any other id.
  const refused = await ask({ op: "pubs", id, topic: "ord", payloads: [bytes("b"), bytes("c")], idPrefix: "p:", idFrom: 2, after: "p:1" });
  // (The message is read before toMatchObject looks at the frame.)
  const message = String(refused.message);
  expect(message).toContain('msgId "p:1"');
  expect(message).toContain('topic "ord"');
  expect(refused).toMatchObject({ op: "error", code: "UNAVAILABLE" });
  expect(await ask({ op: "pub", id, topic: "ord", data: bytes("x"), msgId: "key-x", after: "key-w" })).toMatchObject({ op: "error", code: "UNAVAILABLE" });
  expect(await stored("ord")).toEqual([]);

  expect(await ask({ op: "pub", id, topic: "ord", data: bytes("a"), msgId: "p:1" })).toMatchObject({ op: "ok", seq: 1 });
  expect(await ask({ op: "pubs", id, topic: "ord", payloads: [bytes("b"), bytes("c")], idPrefix: "p:", idFrom: 2, after: "p:1" })).toMatchObject({ op: "ok", seqs: [2, 3] });
  expect(await ask({ op: "pub", id, topic: "ord", data: bytes("d"), msgId: "key-d", after: "p:3" })).toMatchObject({ op: "ok", seq: 4 });
  expect(await ask({ op: "pubs", id, topic: "ord", payloads: [bytes("e")], msgIds: ["key-e"], after: "key-d" })).toMatchObject({ op: "ok", seqs: [5] });
  // An id stored in another topic does not count.
  expect(await ask({ op: "pub", id, topic: "other", data: bytes("z"), msgId: "key-z", after: "key-d" })).toMatchObject({ op: "error", code: "UNAVAILABLE" });
  // Sent again after the refusal, the same publish is stored once (its id is its own).
  expect(await ask({ op: "pubs", id, topic: "ord", payloads: [bytes("b"), bytes("c")], idPrefix: "p:", idFrom: 2, after: "p:1" })).toMatchObject({ op: "ok", seqs: [2, 3], duplicates: [0, 1] });
  expect(await stored("ord")).toEqual(["a", "b", "c", "d", "e"]);
});

test("publishes sent back to back, each after the one before (not stored yet), are all stored in order", async () => {
  const id = await start();
  const rids: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = ++rid;
    rids.push(r);
    const frame: WireMap = { op: "pubs", rid: r, id, topic: "burst", payloads: [bytes(`m${2 * i}`), bytes(`m${2 * i + 1}`)], idPrefix: "q:", idFrom: 2 * i + 1 };
    if (i > 0) frame.after = `q:${2 * i}`;
    peer!.send(frame);
  }
  const replies = await Promise.all(rids.map((r) => peer!.reply(r)));
  expect(replies.map((r) => r.op)).toEqual(rids.map(() => "ok"));
  expect(replies.flatMap((r) => r.seqs as number[])).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  expect(await stored("burst")).toEqual(Array.from({ length: 40 }, (_, i) => `m${i}`));
});

test("bad input: an after that is not a msgId, or with a delayed publish, is BAD_REQUEST naming it; the connection stays", async () => {
  const id = await start();
  const refusals: WireMap[] = [];
  for (const after of ["", "\u0000srv", "k".repeat(257), 12]) refusals.push(await ask({ op: "pub", id, topic: "bad", data: bytes("x"), msgId: "k1", after }));
  refusals.push(await ask({ op: "pub", id, topic: "bad", data: bytes("x"), msgId: "k1", delayMs: 1000, after: "k0" }));
  refusals.push(await ask({ op: "pubs", id, topic: "bad", payloads: [bytes("x")], msgIds: ["k1"], at: 1, after: "k0" }));
  for (const r of refusals) {
    expect(String(r.message)).toContain('"after"');
    expect(r).toMatchObject({ op: "error", code: "BAD_REQUEST" });
  }
  expect(await ask({ op: "pub", id, topic: "bad", data: bytes("x"), msgId: "k1" })).toMatchObject({ op: "ok", seq: 1 });
});

test("with the dedupe window off (--dedupe-window 0) the server keeps no ids: after is not checked", async () => {
  const id = await start(["--dedupe-window", "0"]);
  expect(await ask({ op: "pub", id, topic: "free", data: bytes("x"), msgId: "k2", after: "k1" })).toMatchObject({ op: "ok", seq: 1 });
});

test("after a server restart the ids of the window are read back: after one stored before the restart still passes", async () => {
  const id = await start();
  expect(await ask({ op: "pub", id, topic: "kept", data: bytes("a"), msgId: "p:1" })).toMatchObject({ op: "ok", seq: 1 });
  peer!.end();
  server = await restartServer(server, [local], { reconnectMs: 30_000 });
  peer = await helloPeer({ unix: local.socket }, "local");
  expect(await ask({ op: "pub", id, topic: "kept", data: bytes("b"), msgId: "p:2", after: "p:1" })).toMatchObject({ op: "ok", seq: 2 });
  expect(await ask({ op: "pub", id, topic: "kept", data: bytes("c"), msgId: "p:4", after: "p:3" })).toMatchObject({ op: "error", code: "UNAVAILABLE" });
  expect(await stored("kept")).toEqual(["a", "b"]);
});

/**
 * MqServer's handling of message ids on the server hop, in this process over a real socket:
 * both forms (`msgIds` and a run `idPrefix` + `idFrom`) mean the same ids, duplicates get
 * the original seqs, a send overtaking its first one waits for it, bad ids are BAD_REQUEST,
 * and a restart reads the window back. (The window itself: dedupe.test.ts; through the
 * binary: tests/e2e/idempotent.test.ts.)
 */
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { configureLog } from "../../lib/log.ts";
import { MqServer } from "../../lib/server/server.ts";
import { tmpDir } from "../e2e/harness.ts";
import { RAW_SECRET, RawPeer, type WireMap } from "../security/kit.ts";

let server: MqServer;
let dataDir: string;
let peer: RawPeer;
let id: number;
let rid = 10;

async function start(): Promise<void> {
  server = await MqServer.start({ hostname: "127.0.0.1", port: 0, dataDir, defaultTopics: [], fsync: "never", fsyncIntervalMs: 50, maxMessageBytes: 1 << 20 });
  peer = await RawPeer.connect({ hostname: "127.0.0.1", port: server.port });
  expect(await peer.request({ op: "hello", rid: 1, version: 1, broker: "ids-test", secret: RAW_SECRET })).toMatchObject({ op: "ok" });
}

/** One request; the reply without op and rid. */
async function ask(frame: WireMap): Promise<WireMap> {
  const { op: _op, rid: _rid, ...rest } = await peer.request({ ...frame, rid: ++rid });
  return rest;
}

const bytes = (s: string) => new TextEncoder().encode(s);
const pubs = (topic: string, texts: string[], ids: WireMap) => ask({ op: "pubs", id, topic, payloads: texts.map(bytes), ...ids });

beforeEach(async () => {
  configureLog({ level: "error" });
  dataDir = tmpDir("mq-ids-");
  await start();
  id = (await ask({ op: "create" })).id as number;
});

afterEach(async () => {
  peer.end();
  await server.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

afterAll(() => configureLog());

describe("MqServer message ids", () => {
  test("a run idPrefix + idFrom and the same ids in msgIds or msgId are one set of ids: sent again, each is a duplicate with its seq", async () => {
    expect(await pubs("t", ["a", "b", "c"], { idPrefix: "P:", idFrom: 1 })).toEqual({ topic: "t", seqs: [1, 2, 3], subscribers: 0, created: true });
    expect(await pubs("t", ["a", "b", "c"], { idPrefix: "P:", idFrom: 1 })).toEqual({ topic: "t", seqs: [1, 2, 3], subscribers: 0, created: false, duplicates: [0, 1, 2] });
    // Overlapping the run: P:3 is known, P:4 and P:5 are new (consecutive seqs after 3).
    expect(await pubs("t", ["c", "d", "e"], { idPrefix: "P:", idFrom: 3 })).toEqual({ topic: "t", seqs: [3, 4, 5], subscribers: 0, created: false, duplicates: [0] });
    expect(await pubs("t", ["x", "y", "z"], { msgIds: ["P:2", "P:6", "order-1"] })).toEqual({ topic: "t", seqs: [2, 6, 7], subscribers: 0, created: false, duplicates: [0] });
    expect(await ask({ op: "pub", id, topic: "t", data: bytes("w"), msgId: "P:6" })).toEqual({ topic: "t", seq: 6, subscribers: 0, created: false, duplicate: true });
    expect(await ask({ op: "pub", id, topic: "t", data: bytes("w"), msgId: "order-1" })).toMatchObject({ seq: 7, duplicate: true });
    // "P:06" is another id than "P:6", and another topic is another window.
    expect(await ask({ op: "pub", id, topic: "t", data: bytes("v"), msgId: "P:06" })).toEqual({ topic: "t", seq: 8, subscribers: 0, created: false });
    expect(await pubs("u", ["a"], { msgIds: ["P:1"] })).toEqual({ topic: "u", seqs: [1], subscribers: 0, created: true });
    expect(server.stats()).toMatchObject({ published: 9, duplicates: 7 });
  });

  test("the same id twice in one request is stored once", async () => {
    expect(await pubs("t", ["a", "b", "c"], { msgIds: ["k", "j", "k"] })).toEqual({ topic: "t", seqs: [1, 2, 1], subscribers: 0, created: true, duplicates: [2] });
    expect(await pubs("t", ["a", "b"], { msgIds: ["Q:5", "Q:5"] })).toEqual({ topic: "t", seqs: [3, 3], subscribers: 0, created: false, duplicates: [1] });
  });

  test("a send that overtakes its first send (both in flight) waits for it and gets its seqs, for a run and for other ids", async () => {
    const first = peer.request({ op: "pubs", rid: ++rid, id, topic: "race", payloads: ["a", "b"].map(bytes), idPrefix: "R:", idFrom: 1 });
    const again = peer.request({ op: "pubs", rid: ++rid, id, topic: "race", payloads: ["a", "b", "c"].map(bytes), idPrefix: "R:", idFrom: 1 });
    const one = peer.request({ op: "pub", rid: ++rid, id, topic: "race", data: bytes("k"), msgId: "key" });
    const two = peer.request({ op: "pub", rid: ++rid, id, topic: "race", data: bytes("k"), msgId: "key" });
    const [r1, r2, r3, r4] = await Promise.all([first, again, one, two]);
    expect([r1.seqs, r2.seqs, r2.duplicates]).toEqual([[1, 2], [1, 2, 3], [0, 1]]);
    expect([r3.seq, r3.duplicate, r4.seq, r4.duplicate]).toEqual([4, undefined, 4, true]);
    expect(server.stats()).toMatchObject({ published: 4, duplicates: 3 });
  });

  test("ids that break the rules are BAD_REQUEST, and nothing is stored", async () => {
    const bad: Array<[WireMap, RegExp]> = [
      [{ msgIds: ["a", "b"] }, /pubs: 2 msgIds for 3 payloads/],
      [{ idPrefix: "P:" }, /"idPrefix" and "idFrom" go together/],
      [{ idFrom: 1 }, /"idPrefix" and "idFrom" go together/],
      [{ idPrefix: "P:", idFrom: 1, msgIds: ["a", "b", "c"] }, /not both/],
      [{ idPrefix: "P:", idFrom: Number.MAX_SAFE_INTEGER - 1 }, /"idFrom" is too big/],
      [{ idPrefix: "P", idFrom: 1 }, /field "idPrefix" must be a string of 1 to 200 bytes ending with ":"/],
      [{ msgIds: ["a", "", "c"] }, /field "msgIds" must be an array of 1 to 1024 strings of 1 to 256 bytes/],
      [{ msgIds: ["a", "é".repeat(129), "c"] }, /field "msgIds" must be/],
    ];
    for (const [ids, re] of bad) {
      const r = await peer.request({ op: "pubs", rid: ++rid, id, topic: "bad", payloads: ["a", "b", "c"].map(bytes), ...ids });
      expect({ ids, code: r.code, ok: re.test(String(r.message)) }).toEqual({ ids, code: "BAD_REQUEST", ok: true });
    }
    const r = await peer.request({ op: "pub", rid: ++rid, id, topic: "bad", data: bytes("a"), msgId: "" });
    expect(r).toMatchObject({ op: "error", code: "BAD_REQUEST", message: expect.stringMatching(/field "msgId" must be a string of 1 to 256 bytes/) });
    expect(server.stats()).toMatchObject({ published: 0 });
  });

  test("a restart reads the window back from the log: runs and other ids are duplicates again", async () => {
    expect((await pubs("t", ["a", "b", "c"], { idPrefix: "P:", idFrom: 1 })).seqs).toEqual([1, 2, 3]);
    expect((await ask({ op: "pub", id, topic: "t", data: bytes("d"), msgId: "order-1" })).seq).toBe(4);
    peer.end();
    await server.stop();
    await start();
    expect(await pubs("t", ["a", "b", "c", "e"], { idPrefix: "P:", idFrom: 1 })).toEqual({ topic: "t", seqs: [1, 2, 3, 5], subscribers: 0, created: false, duplicates: [0, 1, 2] });
    expect(await ask({ op: "pub", id, topic: "t", data: bytes("d"), msgId: "order-1" })).toMatchObject({ seq: 4, duplicate: true });
    // The three ids of one append came back as one entry; order-1 is another; P:4 a third.
    expect(server.stats()).toMatchObject({ dedupe_keys: 3 });
  });
});

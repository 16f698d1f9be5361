/**
 * `--deliver-after` through the server (`--fsync always`): with `write` (the default) a
 * subscriber's local broker is pushed a message while the message's fdatasync runs, and the
 * publisher is answered only once it returned; with `fsync` the push waits for it too.
 */
import { afterAll, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { configureLog } from "../../lib/log.ts";
import { MqServer } from "../../lib/server/server.ts";
import { syncPlace } from "../../lib/store/sync-place.ts";
import type { DeliverAfter } from "../../lib/store/types.ts";
import { RAW_SECRET, RawPeer, type WireMap } from "../security/kit.ts";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "mq-deliver-after-server-"));
const quietMs = syncPlace.quietMs;
// Every sync on the pool, where holdSyncs holds it (a lone publisher's commits would sync on the loop after quietMs).
syncPlace.quietMs = Infinity;
afterAll(() => {
  syncPlace.quietMs = quietMs;
  configureLog();
  fs.rmSync(root, { recursive: true, force: true });
});

type Done = (err: NodeJS.ErrnoException | null) => void;

/** Every pool fdatasync of the process held until `release` (then they, and later ones, go through). */
function holdSyncs() {
  const real = fs.fdatasync;
  const held: Array<{ fd: number; done: Done }> = [];
  let holding = true;
  const spy = spyOn(fs, "fdatasync").mockImplementation(((fd: number, done: Done) => {
    if (holding) held.push({ fd, done });
    else real(fd, done);
  }) as typeof fs.fdatasync);
  return {
    get count() {
      return held.length;
    },
    release() {
      holding = false;
      for (const { fd, done } of held.splice(0)) real(fd, done);
    },
    restore: () => spy.mockRestore(),
  };
}

async function setUp(deliverAfter: DeliverAfter | undefined) {
  configureLog({ level: "error" });
  const dataDir = fs.mkdtempSync(path.join(root, "data-"));
  const server = await MqServer.start({ hostname: "127.0.0.1", port: 0, dataDir, defaultTopics: [], fsync: "always", fsyncIntervalMs: 50, maxMessageBytes: 1 << 20, ...(deliverAfter ? { deliverAfter } : {}) });
  const peer = await RawPeer.connect({ hostname: "127.0.0.1", port: server.port });
  let rid = 10;
  const ask = (f: WireMap) => peer.request({ ...f, rid: ++rid });
  expect(await peer.request({ op: "hello", rid: 1, version: 1, broker: "deliver-after", secret: RAW_SECRET })).toMatchObject({ op: "ok" });
  const pub = (await ask({ op: "create" })).id as number;
  const sub = (await ask({ op: "create" })).id as number;
  expect(await ask({ op: "sub", id: sub, topics: ["t"] })).toMatchObject({ op: "ok" });
  // The first message: the topic's seq reservation is written and synced with it.
  expect(await ask({ op: "pub", id: pub, topic: "t", data: new TextEncoder().encode("first") })).toMatchObject({ op: "ok" });
  const first = await nextMsgs(peer);
  expect(first.seq).toBe(1);
  return { server, peer, pub, sub, nextRid: () => ++rid };
}

/** What the server's `onWritten` hook of `topic` answers, commit by commit, from now on. */
function recordTold(server: MqServer, topic: string): boolean[] {
  const log = (server as unknown as { topics: Map<string, { log: { onWritten?: () => boolean } }> }).topics.get(topic)!.log;
  const hook = log.onWritten!;
  const told: boolean[] = [];
  log.onWritten = () => {
    const pushing = hook();
    told.push(pushing);
    return pushing;
  };
  return told;
}

/** The next `msgs` frame (other frames stay behind for `reply`), within 5 s. */
async function nextMsgs(peer: RawPeer): Promise<WireMap> {
  for (let i = 0; i < 20; i++) {
    const f = await peer.next(5000);
    if (!f) break;
    if (f.op === "msgs") return f;
  }
  throw new Error("no msgs frame");
}

test("write (the default): the subscriber is pushed the message while its fdatasync runs; the publisher's answer waits for it", async () => {
  const { server, peer, pub, nextRid } = await setUp(undefined);
  const syncs = holdSyncs();
  try {
    const rid = nextRid();
    peer.send({ op: "pub", rid, id: pub, topic: "t", data: new TextEncoder().encode("second") });
    const pushed = await nextMsgs(peer);
    expect(pushed.seq).toBe(2);
    expect(syncs.count).toBeGreaterThan(0);
    // No answer to the publisher while the sync is held.
    expect(peer.all.some((f) => f.rid === rid)).toBe(false);
    syncs.release();
    expect(await peer.reply(rid)).toMatchObject({ op: "ok", seq: 2 });
  } finally {
    syncs.release();
    syncs.restore();
    peer.end();
    await server.stop();
  }
});

test("fsync: nothing is pushed until the fdatasync returned", async () => {
  const { server, peer, pub, nextRid } = await setUp("fsync");
  const syncs = holdSyncs();
  try {
    const rid = nextRid();
    peer.send({ op: "pub", rid, id: pub, topic: "t", data: new TextEncoder().encode("second") });
    // Bounded: until the commit's sync is held (the message is written then), plus a while for a push that should not come.
    for (let i = 0; i < 200 && syncs.count === 0; i++) await Bun.sleep(10);
    expect(syncs.count).toBeGreaterThan(0);
    await Bun.sleep(200);
    expect(peer.all.some((f) => f.op === "msgs" && f.seq === 2)).toBe(false);
    syncs.release();
    expect(await peer.reply(rid)).toMatchObject({ op: "ok", seq: 2 });
    expect((await nextMsgs(peer)).seq).toBe(2);
  } finally {
    syncs.release();
    syncs.restore();
    peer.end();
    await server.stop();
  }
});

test("write: a commit is told it has readers while its push goes to a consumer that keeps up, not to one that acknowledges nothing", async () => {
  const { server, peer, pub, sub } = await setUp(undefined);
  let rid = 1000;
  try {
    const told = recordTold(server, "t");
    const pushedUpTo = () => Math.max(0, ...peer.all.filter((f) => f.op === "msgs").map((f) => (f.seq as number) + (f.payloads as unknown[]).length - 1));
    const publish = async (n: number) => {
      const payloads = Array.from({ length: n }, (_, i) => new TextEncoder().encode(`m${i}`));
      const answer = await peer.request({ op: "pubs", rid: ++rid, id: pub, topic: "t", payloads });
      expect(answer).toMatchObject({ op: "ok" });
      // Bounded: until they were pushed.
      const last = (answer.seqs as number[])[n - 1]!;
      for (let i = 0; i < 200 && pushedUpTo() < last; i++) await Bun.sleep(10);
      expect(pushedUpTo()).toBe(last);
    };
    const ack = async (seq: number) => {
      peer.send({ op: "ack", id: sub, topic: "t", seq });
      // Bounded: until the server counted it.
      for (let i = 0; i < 200 && server.stats().acked < seq; i++) await Bun.sleep(10);
      expect(server.stats().acked).toBe(seq);
    };
    await publish(10); // seqs 2..11: seq 1 (setUp's) in flight, never acknowledged
    await ack(11);
    await publish(10); // 12..21: acks came since the last look
    await publish(10); // 22..31: 12..21 in flight, no ack since
    await ack(31);
    await publish(10); // 32..41
    expect(told).toEqual([false, true, false, true]);
  } finally {
    peer.end();
    await server.stop();
  }
});

test("write: a queue group member counts as a reader the same way: pushes under way to a member that keeps up", async () => {
  const { server, peer, pub, nextRid } = await setUp(undefined);
  try {
    const member = (await peer.request({ op: "create", rid: nextRid() })).id as number;
    expect(await peer.request({ op: "sub", rid: nextRid(), id: member, topics: ["g"], group: "workers" })).toMatchObject({ op: "ok" });
    expect(await peer.request({ op: "pub", rid: nextRid(), id: pub, topic: "g", data: new TextEncoder().encode("first") })).toMatchObject({ op: "ok" });
    const told = recordTold(server, "g");
    // Bounded: until the member was pushed seq 1 (which it never acknowledges).
    for (let i = 0; i < 200 && !peer.all.some((f) => f.op === "msgs" && f.topic === "g"); i++) await Bun.sleep(10);
    expect(peer.all.some((f) => f.op === "msgs" && f.topic === "g")).toBe(true);
    const payloads = [new TextEncoder().encode("second")];
    expect(await peer.request({ op: "pubs", rid: nextRid(), id: pub, topic: "g", payloads })).toMatchObject({ op: "ok" });
    // Seq 1 was held when the first look came: only once it is freed does the member keep up.
    const held = peer.all.filter((f) => f.op === "msgs" && f.topic === "g").length;
    peer.send({ op: "ack", id: member, topic: "g", seqs: [1] });
    for (let i = 0; i < 200 && server.stats().acked < 1; i++) await Bun.sleep(10);
    for (let i = 0; i < 200 && peer.all.filter((f) => f.op === "msgs" && f.topic === "g").length <= held; i++) await Bun.sleep(10);
    expect(await peer.request({ op: "pubs", rid: nextRid(), id: pub, topic: "g", payloads })).toMatchObject({ op: "ok" });
    expect(told).toEqual([false, true]);
  } finally {
    peer.end();
    await server.stop();
  }
});

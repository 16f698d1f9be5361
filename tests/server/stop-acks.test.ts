/**
 * A clean stop serves no frame after the queue groups' last write (review3, finding 1): an ack
 * that arrives while that write is on its way is not counted and forgotten; it is either not
 * served (the message comes again after the restart) or served and kept.
 */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { configureLog } from "../../lib/log.ts";
import { MqServer } from "../../lib/server/server.ts";
import { RAW_SECRET, RawPeer, type WireMap } from "../security/kit.ts";

const data = fs.mkdtempSync(path.join(os.tmpdir(), "mq-stop-acks-"));
afterAll(() => fs.rmSync(data, { recursive: true, force: true }));
const options = { hostname: "127.0.0.1", port: 0, dataDir: data, defaultTopics: [], fsync: "always" as const, fsyncIntervalMs: 50, maxMessageBytes: 1 << 20 };

async function open() {
  const server = await MqServer.start(options);
  const peer = await RawPeer.connect({ hostname: "127.0.0.1", port: server.port });
  let rid = 10;
  expect(await peer.request({ op: "hello", rid: 1, version: 1, broker: "stop-acks", secret: RAW_SECRET })).toMatchObject({ op: "ok" });
  return { server, peer, ask: (f: WireMap) => peer.request({ ...f, rid: ++rid }) };
}

/** The seqs of the `msgs` frames `peer` gets, until `want` of them or 3 s of silence. */
async function seqsPushed(peer: RawPeer, want: number): Promise<number[]> {
  const seqs: number[] = [];
  for (let frames = 0; seqs.length < want && frames < 100; frames++) {
    const f = await peer.next(3000);
    if (!f) break;
    if (f.op === "msgs") (f.payloads as unknown[]).forEach((_, i) => seqs.push((f.seq as number) + i));
  }
  return seqs;
}

test("an ack sent while a stopping server writes its queue groups is never counted and then delivered again", async () => {
  configureLog({ level: "error" });
  try {
    const a = await open();
    const pub = (await a.ask({ op: "create" })).id as number;
    const member = (await a.ask({ op: "create" })).id as number;
    expect(await a.ask({ op: "sub", id: member, topics: ["stop.acks"], group: "g" })).toMatchObject({ op: "ok" });
    for (const x of ["a", "b", "c"]) await a.ask({ op: "pub", id: pub, topic: "stop.acks", data: new TextEncoder().encode(x) });
    expect(await seqsPushed(a.peer, 3)).toEqual([1, 2, 3]);
    a.peer.send({ op: "ack", id: member, topic: "stop.acks", seqs: [1] });
    // Wait (bounded) until the first ack is served.
    for (let i = 0; i < 100 && a.server.stats().acked < 1; i++) await Bun.sleep(10);
    expect(a.server.stats().acked).toBe(1);
    // The groups' writes during the stop: each sends the ack of 2 and 3 and gives it time to be served.
    const store = (a.server as unknown as { storage: { groups: { save(records: unknown): Promise<void> } } }).storage.groups;
    const save = store.save.bind(store);
    let stopping = false;
    store.save = async (records: unknown) => {
      const written = save(records);
      if (stopping) {
        a.peer.send({ op: "ack", id: member, topic: "stop.acks", seqs: [2, 3] });
        await Bun.sleep(100);
      }
      return written;
    };
    stopping = true;
    await a.server.stop();
    const counted = a.server.stats().acked;
    a.peer.end();

    const b = await open();
    const again = await seqsPushed(b.peer, 2); // waits 3 s for nothing when none should come
    b.peer.end();
    await b.server.stop();
    // What the server counted as acknowledged never comes again; what it did not, does.
    expect(again).toEqual([2, 3].slice(counted - 1));
  } finally {
    configureLog();
  }
});

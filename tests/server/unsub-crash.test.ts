/**
 * An `unsub` of a pattern cut short by a crash must not leave the topics it matched subscribed
 * for good. The crash is taken as a copy of the data directory made the moment the consumer's
 * removal is durable (what a kill at that instant leaves on disk); a server started on the
 * copy must not hold a subscription the id no longer asked for.
 */
import { afterAll, afterEach, beforeEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import { configureLog } from "../../lib/log.ts";
import { MqServer } from "../../lib/server/server.ts";
import type { Storage } from "../../lib/store/types.ts";
import { tmpDir } from "../e2e/harness.ts";
import { RAW_SECRET, RawPeer, type WireMap } from "../security/kit.ts";

const options = (dataDir: string) => ({ hostname: "127.0.0.1", port: 0, dataDir, defaultTopics: [], fsync: "always" as const, fsyncIntervalMs: 50, maxMessageBytes: 1 << 20 });
const dirs: string[] = [];
const servers: MqServer[] = [];
const peers: RawPeer[] = [];
let rid = 10;

async function open(dataDir: string): Promise<{ server: MqServer; ask: (frame: WireMap) => Promise<WireMap> }> {
  const server = await MqServer.start(options(dataDir));
  servers.push(server);
  const peer = await RawPeer.connect({ hostname: "127.0.0.1", port: server.port });
  peers.push(peer);
  expect(await peer.request({ op: "hello", rid: 1, version: 1, broker: "unsub-crash", secret: RAW_SECRET })).toMatchObject({ op: "ok" });
  return { server, ask: (frame) => peer.request({ ...frame, rid: ++rid }) };
}

beforeEach(() => configureLog({ level: "error" }));
afterEach(async () => {
  for (const p of peers.splice(0)) p.end();
  for (const s of servers.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
afterAll(() => configureLog());

test("a crash right after the pattern's removal is durable leaves no subscription of its topics", async () => {
  const data = tmpDir("mq-unsub-crash-");
  const copy = tmpDir("mq-unsub-crash-copy-");
  dirs.push(data, copy);
  const { server, ask } = await open(data);
  const pub = (await ask({ op: "create" })).id as number;
  const sub = (await ask({ op: "create" })).id as number;
  expect(await ask({ op: "sub", id: sub, topics: ["uc.*"] })).toMatchObject({ op: "ok" });
  expect(await ask({ op: "pub", id: pub, topic: "uc.a", data: new TextEncoder().encode("x") })).toMatchObject({ subscribers: 1 });
  // The moment the consumer's removal is on disk, the data directory is copied: the crash.
  const consumers = (server as unknown as { storage: Storage }).storage.consumers;
  const remove = consumers.remove.bind(consumers);
  let copied = false;
  consumers.remove = async (id, filter) => {
    await remove(id, filter);
    fs.cpSync(data, copy, { recursive: true });
    copied = true;
  };
  expect(await ask({ op: "unsub", id: sub, topics: ["uc.*"] })).toMatchObject({ topics: [{ topic: "uc.*", unsubscribed: true, dropped: ["uc.a"] }] });
  expect(copied).toBe(true);
  for (const p of peers.splice(0)) p.end();
  for (const s of servers.splice(0)) await s.stop();

  const after = await open(copy);
  expect(await after.ask({ op: "pub", id: pub, topic: "uc.a", data: new TextEncoder().encode("y") })).toMatchObject({ subscribers: 0 });
});

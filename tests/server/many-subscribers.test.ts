/**
 * Many exact subscribers of one topic: exact consumers are kept per id, not in the subject
 * tree, so each subscribe costs the same however many ids hold the topic (the tree once held
 * them all, and every subscribe copied the topic's whole list). No timing is asserted: the
 * test checks they all subscribe and all count, beside a pattern of one of them.
 */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import { configureLog } from "../../lib/log.ts";
import { MqServer } from "../../lib/server/server.ts";
import { tmpDir } from "../e2e/harness.ts";
import { RAW_SECRET, RawPeer, type WireMap } from "../security/kit.ts";

const SUBSCRIBERS = 20_000;
const BATCH = 500;

afterAll(() => configureLog());

test(`${SUBSCRIBERS} exact subscribers of one topic subscribe, and a pub counts them all`, async () => {
  configureLog({ level: "error" });
  const dataDir = tmpDir("mq-many-subs-");
  const server = await MqServer.start({ hostname: "127.0.0.1", port: 0, dataDir, defaultTopics: [], fsync: "never", fsyncIntervalMs: 50, maxMessageBytes: 1 << 20 });
  const peer = await RawPeer.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    expect(await peer.request({ op: "hello", rid: 1, version: 1, broker: "many-subs", secret: RAW_SECRET })).toMatchObject({ op: "ok" });
    let rid = 10;
    const ask = (frame: WireMap) => peer.request({ ...frame, rid: ++rid }, 60_000);
    const ids: number[] = [];
    for (let done = 0; done < SUBSCRIBERS; done += BATCH) {
      const batch = await Promise.all(Array.from({ length: BATCH }, () => ask({ op: "create" })));
      const fresh = batch.map((r) => r.id as number);
      const subs = await Promise.all(fresh.map((id) => ask({ op: "sub", id, topics: ["busy"] })));
      for (const s of subs) expect(s).toMatchObject({ op: "ok", topics: [{ topic: "busy" }] });
      ids.push(...fresh);
    }
    // A pattern of one of them matching the topic is one more filter, not one more delivery.
    expect(await ask({ op: "sub", id: ids[0]!, topics: [">"] })).toMatchObject({ op: "ok" });
    expect(await ask({ op: "pub", id: ids[1]!, topic: "busy", data: new TextEncoder().encode("x") })).toMatchObject({ subscribers: SUBSCRIBERS });
  } finally {
    peer.end();
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

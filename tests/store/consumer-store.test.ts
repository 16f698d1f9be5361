/**
 * ConsumerStore (DATA/consumers): the file store keeps puts and removes across a reopen and
 * compacts; the memory store answers alike. Consumers (lib/server/consumer.ts) writes only
 * what a restart needs: patterns, and exact filters a pattern of the same id overlaps.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Consumers } from "../../lib/server/consumer.ts";
import { FileConsumerStore, MemoryConsumerStore } from "../../lib/store/consumer-store.ts";
import type { ConsumerStore } from "../../lib/store/types.ts";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-consumers-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const sorted = (store: ConsumerStore) => [...(store.list() as ReturnType<MemoryConsumerStore["list"]>)].sort((a, b) => a.id - b.id || (a.filter < b.filter ? -1 : 1));

describe.each([
  ["FileConsumerStore", () => new FileConsumerStore(path.join(dir, "consumers")), true],
  ["MemoryConsumerStore", () => new MemoryConsumerStore(), false],
] as const)("%s", (_name, make, persistent) => {
  test("put adds or replaces (id, filter); remove takes one out; an unknown one is a no-op", async () => {
    const store = make();
    await store.put({ id: 1, filter: "a.*" });
    await store.put({ id: 1, filter: "a.>" });
    await store.put({ id: 2, filter: "a.*", group: "g" });
    await store.put({ id: 2, filter: "a.*", group: "h" });
    await store.remove(1, "a.>");
    await store.remove(9, "nothing");
    expect(sorted(store)).toEqual([
      { id: 1, filter: "a.*" },
      { id: 2, filter: "a.*", group: "h" },
    ]);
    await store.close();
  });

  test.skipIf(!persistent)("what was put and not removed is read back after a reopen, also after compaction", async () => {
    let store = make();
    for (let i = 0; i < 2000; i++) {
      await store.put({ id: i, filter: `t${i}.*` });
      if (i % 10 !== 0) await store.remove(i, `t${i}.*`);
    }
    await store.close();
    const file = path.join(dir, "consumers");
    // Compacted along the way: far below 2000 puts and 1800 removes.
    expect(fs.statSync(file).size).toBeLessThan(64 * 1024 * 2);
    store = make();
    expect(sorted(store).map((r) => r.id)).toEqual(Array.from({ length: 200 }, (_, k) => k * 10));
    await store.close();
  });

  test.skipIf(!persistent)("a remove while its put is being written writes its removal: nothing comes back after a reopen", async () => {
    let store = make();
    await Promise.all([store.put({ id: 1, filter: "race.*" }), store.remove(1, "race.*")]);
    expect(sorted(store)).toEqual([]);
    await store.close();
    store = make();
    expect(sorted(store)).toEqual([]);
    await store.close();
  });
});

describe("Consumers", () => {
  test("writes patterns, and an exact filter only while a pattern of the same id matches it; removeAll empties the id", async () => {
    const store = new MemoryConsumerStore();
    const consumers = new Consumers(store);
    await consumers.load(() => true);
    const add = (id: number, filter: string) => consumers.add({ id, filter, ackPolicy: "cumulative" });
    expect(await add(1, "a.b")).toBe(true);
    expect(store.list()).toEqual([]); // implied by its subscription
    expect(await add(1, "a.*")).toBe(true);
    expect(store.list().map((r) => r.filter).sort()).toEqual(["a.*", "a.b"]);
    expect(await add(1, "a.c")).toBe(true); // overlapped from the start
    expect(await add(2, "a.d")).toBe(true); // another id's pattern does not count
    expect(await add(1, "a.*")).toBe(false);
    expect(store.list().map((r) => `${r.id}:${r.filter}`).sort()).toEqual(["1:a.*", "1:a.b", "1:a.c"]);
    expect(consumers.count(1)).toBe(3);
    expect(consumers.covers(1, "a.zzz")).toBe(true);
    expect(consumers.covers(2, "a.zzz")).toBe(false);
    expect(consumers.patternIdsMatching("a.q")).toEqual([1]);
    await consumers.removeAll(1);
    expect(consumers.count(1)).toBe(0);
    expect(store.list().map((r) => `${r.id}:${r.filter}`)).toEqual([]);
    expect(consumers.covers(1, "a.b")).toBe(false);
  });

  test("load drops the consumers of ids that are gone (a destroy cut short) from the store", async () => {
    const store = new MemoryConsumerStore();
    await store.put({ id: 1, filter: "x.>" });
    await store.put({ id: 2, filter: "y.>" });
    const consumers = new Consumers(store);
    await consumers.load((id) => id === 1);
    expect(store.list().map((r) => r.id)).toEqual([1]);
    expect(consumers.patternIdsMatching("y.z")).toEqual([]);
    expect(consumers.patternIdsMatching("x.z")).toEqual([1]);
  });

  test("a remove racing the add of a pattern: no error, and the store ends without it", async () => {
    const file = path.join(dir, "consumers");
    const store = new FileConsumerStore(file);
    const consumers = new Consumers(store);
    await consumers.load(() => true);
    await Promise.all([consumers.add({ id: 1, filter: "race.*", ackPolicy: "cumulative" }), consumers.remove(1, "race.*")]);
    expect(consumers.count(1)).toBe(0);
    expect(store.list()).toEqual([]);
    await store.close();
    const reopened = new FileConsumerStore(file);
    expect(reopened.list()).toEqual([]);
    await reopened.close();
  });

  test("a second add of the same pattern answers only once the first's record is durable", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const puts: string[] = [];
    const slow: ConsumerStore = { list: () => [], put: async (r) => (await gate, void puts.push(r.filter)), remove: async () => {}, close: async () => {} };
    const consumers = new Consumers(slow);
    const first = consumers.add({ id: 1, filter: "a.*", ackPolicy: "cumulative" });
    let secondDone = false;
    const second = consumers.add({ id: 1, filter: "a.*", ackPolicy: "cumulative" }).then((v) => ((secondDone = true), v));
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(secondDone).toBe(false);
    release();
    expect(await first).toBe(true);
    expect(await second).toBe(false);
    expect(puts).toEqual(["a.*"]);
  });

  test("only patterns go in the subject tree; 20,000 exact subscribers of one topic are each found by id", async () => {
    const consumers = new Consumers(new MemoryConsumerStore());
    for (let id = 1; id <= 20_000; id++) expect(await consumers.add({ id, filter: "busy.topic", ackPolicy: "cumulative" })).toBe(true);
    expect(consumers.treeSize).toBe(0);
    expect(await consumers.add({ id: 7, filter: "busy.*", ackPolicy: "cumulative" })).toBe(true);
    expect(consumers.treeSize).toBe(1);
    expect(consumers.covers(7, "busy.other")).toBe(true);
    expect(consumers.covers(8, "busy.other")).toBe(false);
    expect(consumers.covers(8, "busy.topic")).toBe(true);
    expect(consumers.patternIdsMatching("busy.topic")).toEqual([7]);
  });

  test("a failed write takes the consumer out again", async () => {
    const failing: ConsumerStore = { list: () => [], put: () => Promise.reject(new Error("ENOSPC")), remove: async () => {}, close: async () => {} };
    const consumers = new Consumers(failing);
    await expect(consumers.add({ id: 1, filter: "a.*", ackPolicy: "cumulative" })).rejects.toThrow("ENOSPC");
    expect(consumers.count(1)).toBe(0);
    expect(consumers.patternIdsMatching("a.b")).toEqual([]);
  });
});

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

  test("a failed write takes the consumer out again", async () => {
    const failing: ConsumerStore = { list: () => [], put: () => Promise.reject(new Error("ENOSPC")), remove: async () => {}, close: async () => {} };
    const consumers = new Consumers(failing);
    await expect(consumers.add({ id: 1, filter: "a.*", ackPolicy: "cumulative" })).rejects.toThrow("ENOSPC");
    expect(consumers.count(1)).toBe(0);
    expect(consumers.patternIdsMatching("a.b")).toEqual([]);
  });
});

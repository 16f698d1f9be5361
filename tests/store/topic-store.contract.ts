/**
 * The TopicStore contract: every backend runs it (see backends.test.ts, which opens each
 * through `openStorage`). A persistent backend passes `reopen`, which closes the store and
 * opens the same storage again; the suite then also checks what survives.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { TopicStore } from "../../lib/store/types.ts";

export interface TopicStoreFixture {
  store: TopicStore;
  /** Closes `store` and opens the same storage again (persistent backends). */
  reopen?: () => Promise<TopicStore>;
  cleanup: () => Promise<void>;
}

export function runTopicStoreSuite(name: string, newStore: () => Promise<TopicStoreFixture>, options: { persistent: boolean }): void {
  const persistentOnly = test.skipIf(!options.persistent);

  describe(`TopicStore contract: ${name}`, () => {
    let fx: TopicStoreFixture;
    let store: TopicStore;

    beforeEach(async () => {
      fx = await newStore();
      store = fx.store;
    });

    afterEach(async () => {
      await fx.cleanup();
    });

    test("TopicStore starts with no topic, and opening an absent one without create gives null and creates nothing", async () => {
      expect(await store.topics()).toEqual([]);
      expect(await store.open("absent", false)).toBeNull();
      expect(await store.topics()).toEqual([]);
    });

    test("TopicStore.open with create makes an empty topic once; opening it again gives the same log, not created", async () => {
      const first = (await store.open("orders", true))!;
      expect(first.created).toBe(true);
      expect([first.log.firstSeq, first.log.nextSeq, first.subscribers.cursors.size]).toEqual([1, 1, 0]);
      await first.log.append(new TextEncoder().encode("x"), 1);
      const again = (await store.open("orders", false))!;
      expect(again.created).toBe(false);
      expect(again.log).toBe(first.log);
      expect(again.subscribers).toBe(first.subscribers);
      expect((await store.open("orders", true))!.created).toBe(false);
    });

    test("TopicStore.topics lists every topic, sorted", async () => {
      for (const name of ["b", "a.x", "c", "a"]) await store.open(name, true);
      expect(await store.topics()).toEqual(["a", "a.x", "b", "c"]);
    });

    test("TopicStore.open of one new topic called concurrently creates it once", async () => {
      const opened = await Promise.all(Array.from({ length: 5 }, () => store.open("raced", true)));
      expect(opened.filter((o) => o!.created)).toHaveLength(1);
      expect(new Set(opened.map((o) => o!.log)).size).toBe(1);
      expect(await store.topics()).toEqual(["raced"]);
    });

    persistentOnly("TopicStore keeps its topics, their messages and subscribers across reopen (persistent backends)", async () => {
      const t = (await store.open("kept", true))!;
      await t.log.append(new TextEncoder().encode("hello"), 5);
      await t.subscribers.add(7, 1);
      await store.open("empty", true);
      store = await fx.reopen!();
      expect(await store.topics()).toEqual(["empty", "kept"]);
      const again = (await store.open("kept", false))!;
      expect(again.created).toBe(false);
      expect((await again.log.read(1, 10, 1 << 20)).map((m) => [m.seq, m.time, new TextDecoder().decode(m.data)])).toEqual([[1, 5, "hello"]]);
      expect([...again.subscribers.cursors]).toEqual([[7, 1]]);
    });
  });
}

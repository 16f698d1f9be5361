/**
 * The SubscriberIndex contract: every implementation runs this suite (see
 * subscriber-index.test.ts). Implementations that persist pass `reopen`, which closes the
 * index and opens the same storage again; the suite then also checks what survives.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { SubscriberIndex } from "../../lib/store/types.ts";

export interface SubscriberIndexFixture {
  index: SubscriberIndex;
  /** Closes `index` and opens the same storage again (persistent implementations only). */
  reopen?: () => Promise<SubscriberIndex>;
  /** Closes whatever is open and removes the storage. */
  cleanup: () => Promise<void>;
}

function entries(index: SubscriberIndex): Array<[number, number]> {
  return [...index.cursors].sort((a, b) => a[0] - b[0]);
}

/** `persistent`: the index survives close and `reopen` (tests of what survives are skipped otherwise). */
export function runSubscriberIndexSuite(name: string, newIndex: () => Promise<SubscriberIndexFixture>, traits: { persistent: boolean }): void {
  const volatile = !traits.persistent;
  describe(`SubscriberIndex contract: ${name}`, () => {
    let fx: SubscriberIndexFixture;
    let index: SubscriberIndex;

    beforeEach(async () => {
      fx = await newIndex();
      index = fx.index;
    });

    afterEach(async () => {
      await fx.cleanup();
    });

    test("SubscriberIndex starts empty", () => {
      expect(entries(index)).toEqual([]);
    });

    test("SubscriberIndex.add records the subscriber with its cursor", async () => {
      await index.add(7, 1);
      await index.add(3, 10);
      expect(entries(index)).toEqual([
        [3, 10],
        [7, 1],
      ]);
    });

    test("SubscriberIndex.add twice keeps the first cursor", async () => {
      await index.add(7, 5);
      index.advance(7, 9);
      await index.add(7, 1);
      await index.add(7, 100);
      expect(index.cursors.get(7)).toBe(9);
    });

    test("SubscriberIndex.remove drops the subscriber", async () => {
      await index.add(1, 1);
      await index.add(2, 1);
      await index.remove(1);
      expect(entries(index)).toEqual([[2, 1]]);
    });

    test("SubscriberIndex.remove of an unknown id is a no-op", async () => {
      await index.add(1, 4);
      await index.remove(99);
      expect(entries(index)).toEqual([[1, 4]]);
    });

    test("SubscriberIndex.advance moves a cursor forward", async () => {
      await index.add(1, 1);
      index.advance(1, 2);
      expect(index.cursors.get(1)).toBe(2);
      index.advance(1, 50);
      expect(index.cursors.get(1)).toBe(50);
    });

    test("SubscriberIndex.advance never moves a cursor back", async () => {
      await index.add(1, 10);
      index.advance(1, 5);
      expect(index.cursors.get(1)).toBe(10);
      index.advance(1, 10);
      expect(index.cursors.get(1)).toBe(10);
      index.advance(1, 20);
      index.advance(1, 15);
      expect(index.cursors.get(1)).toBe(20);
    });

    test("SubscriberIndex.advance of an unknown id is a no-op", async () => {
      await index.add(1, 1);
      index.advance(2, 10);
      expect(entries(index)).toEqual([[1, 1]]);
      await index.flush();
      expect(entries(index)).toEqual([[1, 1]]);
    });

    test("SubscriberIndex.advance after remove is a no-op", async () => {
      await index.add(1, 1);
      await index.remove(1);
      index.advance(1, 10);
      expect(index.cursors.has(1)).toBe(false);
    });

    test("SubscriberIndex.add after remove starts from the new cursor", async () => {
      await index.add(1, 1);
      index.advance(1, 30);
      await index.remove(1);
      await index.add(1, 5);
      expect(index.cursors.get(1)).toBe(5);
    });

    test("SubscriberIndex moves cursors independently", async () => {
      await Promise.all([index.add(1, 1), index.add(2, 1), index.add(3, 1)]);
      index.advance(2, 8);
      index.advance(3, 4);
      expect(entries(index)).toEqual([
        [1, 1],
        [2, 8],
        [3, 4],
      ]);
    });

    test("SubscriberIndex.flush and writeMoved leave the cursors as they are", async () => {
      await index.add(1, 1);
      index.advance(1, 3);
      index.writeMoved();
      index.advance(1, 4);
      await index.flush();
      await index.flush();
      expect(entries(index)).toEqual([[1, 4]]);
    });

    test.skipIf(volatile)("SubscriberIndex keeps subscribers, removals and flushed cursors across reopen (persistent indexes only)", async () => {
      await index.add(1, 1);
      await index.add(2, 1);
      await index.add(3, 7);
      await index.remove(2);
      index.advance(1, 12);
      index.advance(3, 9);
      await index.flush();
      index = await fx.reopen!();
      expect(entries(index)).toEqual([
        [1, 12],
        [3, 9],
      ]);
    });

    test.skipIf(volatile)("SubscriberIndex keeps cursors moved by writeMoved across reopen (persistent indexes only)", async () => {
      await index.add(1, 1);
      index.advance(1, 6);
      index.writeMoved();
      index = await fx.reopen!();
      expect(entries(index)).toEqual([[1, 6]]);
    });

    test.skipIf(volatile)("SubscriberIndex does not bring back a removed subscriber on reopen (persistent indexes only)", async () => {
      await index.add(1, 1);
      index.advance(1, 5);
      await index.flush();
      await index.remove(1);
      index = await fx.reopen!();
      expect(entries(index)).toEqual([]);
      await index.add(1, 2);
      index = await fx.reopen!();
      expect(entries(index)).toEqual([[1, 2]]);
    });
  });
}

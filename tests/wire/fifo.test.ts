/**
 * The queue with a moving head (lib/wire/fifo.ts): as the inbox's unacknowledged seqs, removal in
 * order, out of order, and of what is not held; as the credits' waiting lists, shift in order.
 */
import { describe, expect, test } from "bun:test";
import { Fifo } from "../../lib/wire/fifo.ts";
import { jscDescribe as describeValue } from "bun:jsc";

/** The JavaScriptCore Structure of a Fifo's array (its kind: ints, doubles, any value), from bun:jsc. */
function arrayShapeOf(q: Fifo<unknown>): string {
  return /StructureID: (\d+)/.exec(describeValue((q as unknown as { items: unknown[] }).items))![1]!;
}

function drainAll(q: Fifo<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < 100_000 && q.first !== undefined; i++) {
    out.push(q.first);
    q.remove(q.first);
  }
  return out;
}

describe("Fifo", () => {
  // First in the file: arrays made by `[]` at one place in the code take the kind those made there before ended with.
  test("every Fifo's array has one shape, empty, holding ints, after a shift and a compaction, or holding objects", () => {
    const seqs = new Fifo<number>();
    const shapes = [arrayShapeOf(seqs)];
    for (let i = 0; i < 3000; i++) seqs.push(i);
    shapes.push(arrayShapeOf(seqs));
    seqs.shift();
    shapes.push(arrayShapeOf(seqs));
    for (let i = 0; i < 2000; i++) seqs.shift(); // compacts past 1,024
    shapes.push(arrayShapeOf(seqs));
    const objects = new Fifo<object>();
    objects.push({});
    shapes.push(arrayShapeOf(objects as Fifo<unknown>));
    expect(new Set(shapes).size).toBe(1);
  });

  test("removes in order (the oldest first), through compactions, and is empty after", () => {
    const q = new Fifo<number>();
    for (let s = 1; s <= 5000; s++) q.push(s);
    for (let s = 1; s <= 3000; s++) expect(q.remove(s)).toBe(true);
    expect(q.length).toBe(2000);
    expect(q.first).toBe(3001);
    q.push(5001);
    expect(drainAll(q)).toEqual(Array.from({ length: 2001 }, (_, i) => 3001 + i));
    expect(q.length).toBe(0);
    expect(q.first).toBeUndefined();
  });

  test("removes from the middle, keeps the order of the rest; a seq not held (or removed already) is refused", () => {
    const q = new Fifo<number>();
    for (const s of [3, 5, 8, 9]) q.push(s);
    expect(q.remove(8)).toBe(true);
    expect(q.remove(8)).toBe(false);
    expect(q.remove(4)).toBe(false);
    expect(q.remove(3)).toBe(true);
    expect(q.remove(3)).toBe(false); // below the head now
    expect(q.first).toBe(5);
    expect(drainAll(q)).toEqual([5, 9]);
  });

  test("shift takes the oldest, in order, through compactions; an empty queue gives undefined", () => {
    const q = new Fifo<{ n: number }>();
    for (let n = 1; n <= 3000; n++) q.push({ n });
    const taken: number[] = [];
    for (let i = 0; i < 2500; i++) taken.push(q.shift()!.n);
    expect(taken).toEqual(Array.from({ length: 2500 }, (_, i) => 1 + i));
    expect(q.length).toBe(500);
    expect(q.first?.n).toBe(2501);
    q.push({ n: 3001 });
    for (let i = 0; i < 501; i++) taken.push(q.shift()!.n);
    expect(taken.at(-1)).toBe(3001);
    expect(q.length).toBe(0);
    expect(q.shift()).toBeUndefined();
    expect(q.first).toBeUndefined();
  });

  test("an item removed from the middle is not shifted later; shift and remove mix", () => {
    const q = new Fifo<string>();
    for (const s of ["a", "b", "c", "d"]) q.push(s);
    expect(q.shift()).toBe("a");
    expect(q.remove("c")).toBe(true);
    expect(q.remove("a")).toBe(false); // shifted already
    expect(q.remove("b")).toBe(true);
    expect(q.shift()).toBe("d");
    expect(q.length).toBe(0);
  });

});

/** The inbox's queue of unacknowledged seqs (lib/local/seq-queue.ts): removal in order, out of order, and of what is not held. */
import { describe, expect, test } from "bun:test";
import { SeqQueue } from "../../lib/local/seq-queue.ts";

function drainAll(q: SeqQueue): number[] {
  const out: number[] = [];
  for (let i = 0; i < 100_000 && q.first !== undefined; i++) {
    out.push(q.first);
    q.remove(q.first);
  }
  return out;
}

describe("SeqQueue", () => {
  test("removes in order (the oldest first), through compactions, and is empty after", () => {
    const q = new SeqQueue();
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
    const q = new SeqQueue();
    for (const s of [3, 5, 8, 9]) q.push(s);
    expect(q.remove(8)).toBe(true);
    expect(q.remove(8)).toBe(false);
    expect(q.remove(4)).toBe(false);
    expect(q.remove(3)).toBe(true);
    expect(q.remove(3)).toBe(false); // below the head now
    expect(q.first).toBe(5);
    expect(drainAll(q)).toEqual([5, 9]);
  });
});

/**
 * What a subscription has in flight (lib/server/in-flight.ts): batches shared by the ids that
 * rode one push, taken out by cumulative acks. Checked against the plain list of seqs and
 * sizes it replaced, through random batches (with holes between seqs), acks anywhere (inside a
 * batch, across several, behind what was acked) and two subscriptions holding the same batches.
 */
import { describe, expect, test } from "bun:test";
import { InFlight, pushedBatch } from "../../lib/server/in-flight.ts";
import { Rng } from "../security/kit.ts";

/** The model: seqs and sizes in flight, oldest first. */
class Plain {
  items: Array<{ seq: number; size: number }> = [];
  takeBelow(cursor: number): { count: number; bytes: number } {
    let n = 0;
    while (n < this.items.length && this.items[n]!.seq < cursor) n++;
    const taken = this.items.splice(0, n);
    return { count: n, bytes: taken.reduce((b, i) => b + i.size, 0) };
  }
}

describe("InFlight", () => {
  test("takes out what cumulative acks cover, as the list of seqs and sizes did, with batches shared by two subscriptions", () => {
    const rng = new Rng(7);
    for (let round = 0; round < 50; round++) {
      const [a, b] = [new InFlight(), new InFlight()];
      const [pa, pb] = [new Plain(), new Plain()];
      let seq = 1;
      let cursorA = 1;
      let cursorB = 1;
      for (let step = 0; step < 200; step++) {
        if (rng.int(3) > 0) {
          // A batch of 0 to 70 messages, some seqs skipped (a hole, expired messages); both take it.
          const seqs: number[] = [];
          const sizes: number[] = [];
          for (let k = rng.int(71); k > 0; k--) {
            seq += 1 + (rng.int(10) === 0 ? rng.int(5) : 0);
            seqs.push(seq);
            sizes.push(rng.int(300));
          }
          const batch = pushedBatch(seqs, sizes);
          for (const [f, p] of [[a, pa], [b, pb]] as const) {
            f.add(batch);
            seqs.forEach((s, i) => p.items.push({ seq: s, size: sizes[i]! }));
          }
        } else {
          // Each acknowledges at its own pace, sometimes behind what it acked before.
          cursorA = Math.max(1, cursorA + rng.int(120) - 20);
          cursorB = Math.max(1, cursorB + rng.int(60) - 10);
          for (const [f, p, cursor] of [[a, pa, cursorA], [b, pb, cursorB]] as const) {
            const want = p.takeBelow(cursor);
            expect([f.takeBelow(cursor), f.takenBytes]).toEqual([want.count, want.bytes]);
          }
        }
        for (const [f, p] of [[a, pa], [b, pb]] as const) {
          expect([f.count, f.bytes]).toEqual([p.items.length, p.items.reduce((s, i) => s + i.size, 0)]);
        }
      }
    }
  });

  test("an empty batch holds nothing; clear lets go of everything", () => {
    const f = new InFlight();
    f.add(pushedBatch([], []));
    expect([f.count, f.bytes, f.takeBelow(100)]).toEqual([0, 0, 0]);
    f.add(pushedBatch([5, 6, 9], [10, 20, 30]));
    expect([f.takeBelow(7), f.takenBytes, f.count, f.bytes]).toEqual([2, 30, 1, 30]);
    f.clear();
    expect([f.count, f.bytes, f.takeBelow(100)]).toEqual([0, 0, 0]);
  });
});

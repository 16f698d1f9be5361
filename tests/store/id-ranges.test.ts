import { describe, expect, test } from "bun:test";
import { IdRanges } from "../../lib/store/id-ranges.ts";

describe("IdRanges", () => {
  test("IdRanges.add merges overlapping and adjacent ranges, in any order", () => {
    const set = new IdRanges();
    set.add(10, 12);
    set.add(1);
    set.add(14, 20);
    set.add(13);
    set.add(3, 4);
    set.add(2, 3);
    expect(set.toFlat()).toEqual([1, 4, 10, 20]);
    expect(set.count).toBe(15);
    expect(String(set)).toBe("1-4, 10-20");
  });

  test("IdRanges.has finds exactly the ids in the ranges", () => {
    const set = IdRanges.fromFlat([1, 1, 5, 7, 100, 200]);
    expect([0, 1, 2, 4, 5, 7, 8, 99, 100, 200, 201].map((id) => set.has(id))).toEqual([false, true, false, false, true, true, false, false, true, true, false]);
  });

  test("IdRanges.fromFlat skips malformed pairs", () => {
    expect(IdRanges.fromFlat([3, 1, -1, 2, 1.5, 2, "a", 4, 6, 6, 9]).toFlat()).toEqual([6, 6]);
    expect(IdRanges.fromFlat("junk").empty).toBe(true);
  });

  test("IdRanges.gaps gives what is not taken below the bound", () => {
    expect(IdRanges.gaps(1, 10, [9, 2, 3, 7, 12, 3]).toFlat()).toEqual([1, 1, 4, 6, 8, 8]);
    expect(IdRanges.gaps(1, 1, []).empty).toBe(true);
    expect(IdRanges.gaps(1, 4, []).toFlat()).toEqual([1, 3]);
  });

  test("IdRanges.toRecords splits many ranges over several records", () => {
    const set = IdRanges.fromFlat([1, 1, 3, 3, 5, 5]);
    expect(set.toRecords("x", 2)).toEqual([{ x: [1, 1, 3, 3] }, { x: [5, 5] }]);
  });
});

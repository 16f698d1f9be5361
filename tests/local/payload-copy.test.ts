import { describe, expect, test } from "bun:test";
import { copyPayloads } from "../../lib/local/payload-copy.ts";

describe("copyPayloads", () => {
  test("copies equal the payloads and do not change when the read buffer is reused", () => {
    const readBuffer = new Uint8Array(300_000);
    for (let i = 0; i < readBuffer.length; i++) readBuffer[i] = i % 251;
    // Views into one buffer, as the decoder hands them out: empty, small, around the 64 KiB block, large.
    const sizes = [0, 1, 128, 40_000, 30_000, 0, 65_535, 65_536, 100_000, 7];
    const views: Uint8Array[] = [];
    let pos = 0;
    for (const n of sizes) {
      views.push(readBuffer.subarray(pos, pos + n));
      pos += n;
    }
    const expected = views.map((v) => v.slice());
    const copies = copyPayloads(views);
    readBuffer.fill(0xee); // the next read
    expect(copies).toEqual(expected);
    for (const c of copies) expect(c.buffer).not.toBe(readBuffer.buffer);
  });

  test("small payloads share one allocation; a block holds at most 64 KiB", () => {
    const small = Array.from({ length: 1000 }, (_, i) => new Uint8Array(128).fill(i & 0xff));
    const copies = copyPayloads(small);
    const blocks = new Set(copies.map((c) => c.buffer));
    expect(blocks.size).toBe(Math.ceil((1000 * 128) / (64 * 1024)));
    for (const b of blocks) expect(b.byteLength).toBeLessThanOrEqual(64 * 1024);
    expect(copies.map((c) => c[0])).toEqual(small.map((s) => s[0]));
    expect(copyPayloads([])).toEqual([]);
  });
});

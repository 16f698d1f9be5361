/**
 * The link-sized window (lib/wire/link-window.ts): its bounds, and its sizes kept as 32-bit
 * integers once the JIT has compiled its resizing (code compiled for ints that reads a window
 * was thrown away when a compiled Math.round stored a double there).
 */
import { describe, expect, test } from "bun:test";
import { jscDescribe as describeValue } from "bun:jsc";
import { LinkWindow } from "../../lib/wire/link-window.ts";

const bounds = { minItems: 1024, maxItems: 65_536, minBytes: 1 << 20, maxBytes: 16 << 20 };

describe("LinkWindow", () => {
  test("LinkWindow keeps its sizes as 32-bit integers through many samples (after the JIT compiled its resize)", () => {
    let t = 0;
    const clock = () => (t += 0.37);
    const windows = Array.from({ length: 200 }, () => new LinkWindow(bounds, clock));
    const kinds = () => [describeValue(windows[0]!.items), describeValue(windows[0]!.bytes)].map((d) => d.split(":")[0]);
    // Bounded: up to 3,000 rounds of 200 samples or 10 s; it stops early once a size is a double.
    const until = Date.now() + 10_000;
    for (let round = 0; round < 3000 && Date.now() < until && !kinds().includes("Double"); round++) {
      for (const w of windows) {
        w.sent(100);
        w.full();
        w.done(100, 12_800);
      }
    }
    expect(kinds()).toEqual(["Int32", "Int32"]);
    expect(windows[0]!.items).toBeGreaterThanOrEqual(bounds.minItems);
  });

  test("LinkWindow refuses bounds that are not whole sizes from 1 to 2^31 - 1, or a minimum above the maximum", () => {
    expect(() => new LinkWindow({ ...bounds, maxBytes: 2 ** 31 })).toThrow(RangeError);
    expect(() => new LinkWindow({ ...bounds, minItems: 0 })).toThrow(RangeError);
    expect(() => new LinkWindow({ ...bounds, minItems: 70_000 })).toThrow(/Cannot size a window within 70000..65536 items/);
    expect(new LinkWindow(bounds).items).toBe(1024);
  });
});

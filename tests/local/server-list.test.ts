/** The local broker's server list (lib/local/server-list.ts): parsing, rotation, waits. */
import { describe, expect, test } from "bun:test";
import { BACKOFF_MAX_MS, BACKOFF_MIN_MS, formatAddress, parseServerList, REFUSED_BACKOFF_MAX_MS, REFUSED_BACKOFF_MIN_MS, ServerList } from "../../lib/local/server-list.ts";

/** Jitter at its middle: a wait of `backoff` is exactly `backoff`. */
const half = () => 0.5;
const list = (text: string) => new ServerList(parseServerList(text), half);

describe("parseServerList", () => {
  test("one address, several, spaces, IPv6, an empty host", () => {
    expect(parseServerList("10.0.0.1:7600")).toEqual([{ hostname: "10.0.0.1", port: 7600 }]);
    expect(parseServerList("a:1, b:2 ,[::1]:3")).toEqual([
      { hostname: "a", port: 1 },
      { hostname: "b", port: 2 },
      { hostname: "::1", port: 3 },
    ]);
    expect(parseServerList(":7600")).toEqual([{ hostname: "127.0.0.1", port: 7600 }]);
    expect(formatAddress({ hostname: "::1", port: 3 })).toBe("[::1]:3");
    expect(list("a:1,[::1]:3").toString()).toBe("a:1,[::1]:3");
  });

  test("bad entries are refused, naming the entry", () => {
    expect(() => parseServerList("a:1,nonsense")).toThrow(/"nonsense".*HOST:PORT/);
    expect(() => parseServerList("a:1,b:99999")).toThrow(/"b:99999"/);
    expect(() => parseServerList("a:1,,b:2")).toThrow(/entry 2 is empty/);
    expect(() => parseServerList("")).toThrow(/entry 1 is empty/);
    expect(() => parseServerList("a:1,")).toThrow(/entry 2 is empty/);
    expect(() => parseServerList("a:0")).toThrow(/"a:0": port 0/);
    expect(() => parseServerList("a:1,b:2,A:1")).toThrow(/names "A:1" twice/);
    expect(() => new ServerList([])).toThrow(/at least one/);
  });
});

describe("ServerList", () => {
  test("one address: the reconnect backoff as before, 100 ms doubling up to 2 s, back to 100 ms once connected", () => {
    const s = list("a:1");
    const waits = Array.from({ length: 7 }, () => s.failed(0, false));
    expect(waits).toEqual([100, 200, 400, 800, 1600, 2000, 2000]);
    expect(s.currentText).toBe("a:1");
    s.connected();
    s.lost();
    expect(s.currentText).toBe("a:1");
    expect(s.failed(0, false)).toBe(BACKOFF_MIN_MS);
  });

  test("one address that refuses: its own wait, 1 s doubling up to 15 s; the plain backoff does not grow meanwhile", () => {
    const s = list("a:1");
    let now = 0;
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const wait = s.failed(now, true);
      waits.push(wait);
      now += wait;
    }
    expect(waits).toEqual([1000, 2000, 4000, 8000, REFUSED_BACKOFF_MAX_MS, REFUSED_BACKOFF_MAX_MS]);
    expect(s.failed(now, false)).toBe(BACKOFF_MIN_MS);
    // Unreachable in between: the next refusal starts from 1 s again.
    expect(s.failed(now, true)).toBe(REFUSED_BACKOFF_MIN_MS);
  });

  test("several: each tried in turn at once, the backoff only after a whole round", () => {
    const s = list("a:1,b:2,c:3");
    const seen: string[] = [];
    const waits: number[] = [];
    for (let i = 0; i < 7; i++) {
      seen.push(s.currentText);
      waits.push(s.failed(0, false));
    }
    expect(seen).toEqual(["a:1", "b:2", "c:3", "a:1", "b:2", "c:3", "a:1"]);
    expect(waits).toEqual([0, 0, 100, 0, 0, 200, 0]);
  });

  test("a lost server: the next one is tried first; then the others in turn", () => {
    const s = list("a:1,b:2,c:3");
    s.connected(); // to a
    s.lost();
    expect(s.currentText).toBe("b:2");
    expect(s.failed(0, false)).toBe(0);
    expect(s.currentText).toBe("c:3");
    s.connected();
    s.lost();
    expect(s.currentText).toBe("a:1");
  });

  test("a server that refuses is skipped until its wait is over, the others are not held up", () => {
    const s = list("a:1,b:2");
    let now = 0;
    expect(s.failed(now, true)).toBe(0); // a refused: b at once
    expect(s.currentText).toBe("b:2");
    // b unreachable: a still waits out its refusal (1 s), so b again, after the round's backoff.
    expect(s.failed(now, false)).toBe(BACKOFF_MIN_MS);
    expect(s.currentText).toBe("b:2");
    now += 100;
    expect(s.failed(now, false)).toBe(200);
    expect(s.currentText).toBe("b:2");
    now = 1000; // a's wait is over: its turn comes again
    expect(s.failed(now, false)).toBe(0);
    expect(s.currentText).toBe("a:1");
  });

  test("all refuse: the wait is the one that ends first, never a tight loop", () => {
    const s = list("a:1,b:2");
    expect(s.failed(0, true)).toBe(0);
    expect(s.currentText).toBe("b:2");
    expect(s.failed(10, true)).toBe(990); // a's wait ends at 1000, b's at 1010
    expect(s.currentText).toBe("a:1");
    expect(s.failed(1000, true)).toBe(10); // a again: 2 s more; b's ends at 1010
    expect(s.currentText).toBe("b:2");
  });

  test("allRefused: only when every address refused at its last attempt", () => {
    const s = list("a:1,b:2");
    expect(s.allRefused).toBe(false);
    s.failed(0, true); // a refused, b not tried yet
    expect(s.allRefused).toBe(false);
    s.failed(0, false); // b unreachable (a waits out its refusal: b again)
    s.failed(1000, false); // b unreachable again: a's turn
    expect(s.currentText).toBe("a:1");
    s.failed(1000, true); // a refused again: b was only unreachable
    expect(s.allRefused).toBe(false);
    expect(s.currentText).toBe("b:2");
    s.failed(1000, true); // b refused too
    expect(s.allRefused).toBe(true);
    s.connected(); // to the current one
    expect(s.allRefused).toBe(false);
    const one = list("a:1");
    one.failed(0, true);
    expect(one.allRefused).toBe(true);
  });

  test("the backoff is capped", () => {
    const s = list("a:1,b:2");
    let last = 0;
    for (let i = 0; i < 40; i++) last = Math.max(last, s.failed(0, false));
    expect(last).toBe(BACKOFF_MAX_MS);
  });
});

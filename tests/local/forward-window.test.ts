/**
 * The local broker's forward window (lib/local/forward-window.ts), driven by a clock the
 * test moves: a simulated server link where a round of requests takes `rtt` ms and all of
 * them are answered at its end. The end to end side (a far server, `forward_window` in
 * `mq stats`) is in tests/faults/network.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { ForwardWindow, MAX_FORWARD_BYTES, MAX_FORWARD_REQUESTS, MIN_FORWARD_BYTES, MIN_FORWARD_REQUESTS, payloadBytes } from "../../lib/local/forward-window.ts";

function windowWithClock(maxInFlight?: number) {
  const clock = { ms: 1000 };
  const w = new ForwardWindow(() => clock.ms);
  w.connected(maxInFlight);
  return { w, clock };
}

/**
 * One round trip of a publisher with more to send than the window takes: publishes of `size`
 * bytes go while they fit (the rest waits), and after `rttMs` all are answered. Returns how many went.
 */
function round(w: ForwardWindow, clock: { ms: number }, rttMs: number, size = 128 * 1024): number {
  const sessions: number[] = [];
  while (w.fits(size) && sessions.length < 1_000_000) {
    w.take(size);
    sessions.push(w.sent());
  }
  w.full();
  clock.ms += rttMs;
  for (const s of sessions) {
    w.answered(s, size);
    w.release(size);
  }
  return sessions.length;
}

describe("ForwardWindow", () => {
  test("starts at the minimum; one request always fits when none is in flight, however big", () => {
    const { w } = windowWithClock();
    expect(w.maxRequests).toBe(MIN_FORWARD_REQUESTS);
    expect(w.maxBytes).toBe(MIN_FORWARD_BYTES);
    expect(w.fits(MAX_FORWARD_BYTES * 4)).toBe(true);
    w.take(MAX_FORWARD_BYTES * 4);
    expect(w.fits(0)).toBe(false);
    w.release(MAX_FORWARD_BYTES * 4);
    expect(w.requests).toBe(0);
    expect(w.bytes).toBe(0);
  });

  test("bounded by bytes as well as by requests: the byte window stops big publishes first", () => {
    const { w } = windowWithClock();
    let n = 0;
    while (w.fits(1024 * 1024) && n < 1000) w.take(1024 * 1024), n++;
    expect(n).toBe(MIN_FORWARD_BYTES / (1024 * 1024));
    const small = windowWithClock().w;
    n = 0;
    while (small.fits(0) && n < 100_000) small.take(0), n++;
    expect(n).toBe(MIN_FORWARD_REQUESTS);
  });

  test("grows one doubling per round trip while the server keeps up, up to its cap", () => {
    const { w, clock } = windowWithClock();
    const sizes: number[] = [];
    for (let i = 0; i < 3; i++) {
      round(w, clock, 20, 100);
      sizes.push(w.maxRequests);
    }
    expect(sizes).toEqual([512, 1024, 2048]);
    for (let i = 0; i < 10; i++) round(w, clock, 20, 100);
    expect(w.maxRequests).toBe(MAX_FORWARD_REQUESTS);
  });

  test("settles at twice the request rate × round trip when the link is the limit; the byte window grows up to its maximum", () => {
    const { w, clock } = windowWithClock();
    // A link that carries 100 requests per ms with a 20 ms round trip: 2000 in flight fill it.
    // A round of `n` requests takes max(20, n / 100) ms.
    for (let i = 0; i < 30; i++) {
      const sessions: number[] = [];
      while (w.fits(100) && sessions.length < 100_000) w.take(100), sessions.push(w.sent());
      w.full();
      clock.ms += Math.max(20, sessions.length / 100);
      for (const s of sessions) w.answered(s, 100), w.release(100);
    }
    expect(w.maxRequests).toBe(4000);
    expect(w.maxBytes).toBe(MIN_FORWARD_BYTES);
    // Publishes of 256 KiB answered every 100 ms: the bytes are the limit, and their window grows.
    const big = windowWithClock();
    const sizes: number[] = [];
    for (let i = 0; i < 6; i++) {
      round(big.w, big.clock, 100, 256 * 1024);
      sizes.push(big.w.maxBytes / (1024 * 1024));
    }
    expect(sizes).toEqual([8, 16, 32, 64, 64, 64]);
    expect(MAX_FORWARD_BYTES).toBe(64 * 1024 * 1024);
  });

  test("never above half the maxInFlight the server announced (requests that timed out here may still count there)", () => {
    const { w, clock } = windowWithClock(1000);
    for (let i = 0; i < 10; i++) round(w, clock, 20, 10);
    expect(w.maxRequests).toBe(500);
    const tiny = windowWithClock(100);
    expect(tiny.w.maxRequests).toBe(50);
    for (let i = 0; i < 5; i++) round(tiny.w, tiny.clock, 20, 10);
    expect(tiny.w.maxRequests).toBe(50);
    tiny.w.timedOut();
    expect(tiny.w.maxRequests).toBe(50);
  });

  test("shrinks when the server answers slower (it is busy), never below the minimum", () => {
    const { w, clock } = windowWithClock();
    for (let i = 0; i < 4; i++) round(w, clock, 2, 100);
    expect(w.maxRequests).toBe(4096);
    // The server now takes 40 ms per round of the same size: 2 × rate × 2 ms is a tenth of it.
    round(w, clock, 40, 100);
    expect(w.maxRequests).toBe(Math.round((2 * 4096 * 2) / 40));
    for (let i = 0; i < 5; i++) round(w, clock, 40, 100);
    expect(w.maxRequests).toBe(MIN_FORWARD_REQUESTS);
  });

  test("a request that timed out halves the window; a round it did not limit leaves it as it is", () => {
    const { w, clock } = windowWithClock();
    for (let i = 0; i < 3; i++) round(w, clock, 20, 100);
    expect(w.maxRequests).toBe(2048);
    w.timedOut();
    expect(w.maxRequests).toBe(1024);
    // Ten requests, never a full window, answered slowly.
    w.take(10);
    const s = w.sent();
    clock.ms += 500;
    w.answered(s, 10);
    w.release(10);
    expect(w.maxRequests).toBe(1024);
  });

  test("a new connection starts at the minimum, and answers from the old one do not end its samples", () => {
    const { w, clock } = windowWithClock();
    for (let i = 0; i < 4; i++) round(w, clock, 20, 100);
    expect(w.maxRequests).toBe(4096);
    w.take(100);
    const old = w.sent();
    w.connected(16_384);
    expect(w.maxRequests).toBe(MIN_FORWARD_REQUESTS);
    // The first sample of the new connection is a full round of 20 ms; the old answer comes in the middle of it.
    const sessions: number[] = [];
    while (w.fits(100)) w.take(100), sessions.push(w.sent());
    w.full();
    clock.ms += 1;
    w.answered(old, 100);
    w.release(100);
    clock.ms += 19;
    for (const s of sessions) w.answered(s, 100), w.release(100);
    expect(w.link.minRttMs).toBe(20);
  });

  test("payloadBytes counts what a publish carries; other requests cost none", () => {
    const data = new Uint8Array(300);
    expect(payloadBytes({ op: "pub", id: 1, topic: "t", data })).toBe(300);
    expect(payloadBytes({ op: "pubs", id: 1, topic: "t", payloads: [data, data.subarray(0, 12)] })).toBe(312);
    expect(payloadBytes({ op: "stats" })).toBe(0);
  });
});

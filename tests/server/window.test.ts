/**
 * The delivery window's sizing (lib/server/window.ts), driven by a clock the test moves: a
 * simulated link where each round of the window takes `rtt` ms and is acknowledged at once.
 */
import { describe, expect, test } from "bun:test";
import { DeliveryWindow, MAX_WINDOW_BYTES, MAX_WINDOW_MESSAGES, MIN_MEMBER_WINDOW_MESSAGES, MIN_RTT_SAMPLES, MIN_WINDOW_BYTES, MIN_WINDOW_MESSAGES } from "../../lib/server/window.ts";

/** The floor of the windows sized below (a queue-group member's; a subscription's, MIN_WINDOW_MESSAGES, sizes the same way from its own). */
const FLOOR = MIN_MEMBER_WINDOW_MESSAGES;

/** A window with a clock of its own, from FLOOR. */
function windowWithClock() {
  const clock = { ms: 1000 };
  return { w: new DeliveryWindow(FLOOR, () => clock.ms), clock };
}

/**
 * One round trip of a window-limited subscription: the window's worth of messages is sent
 * (the push stops at a full window), and after `rttMs` they are all acknowledged.
 */
function fullRound(w: DeliveryWindow, clock: { ms: number }, rttMs: number, size = 128): void {
  const n = w.messages;
  w.sent(n);
  w.full();
  clock.ms += rttMs;
  w.done(n, n * size);
}

describe("DeliveryWindow", () => {
  test("a subscription's starts at 1,024 messages, a queue-group member's at 256, both at 1 MiB", () => {
    expect([new DeliveryWindow().messages, MIN_WINDOW_MESSAGES, new DeliveryWindow(MIN_MEMBER_WINDOW_MESSAGES).messages]).toEqual([1024, 1024, 256]);
    expect([new DeliveryWindow().bytes, new DeliveryWindow(MIN_MEMBER_WINDOW_MESSAGES).bytes]).toEqual([MIN_WINDOW_BYTES, MIN_WINDOW_BYTES]);
  });

  test("starts at the minimum", () => {
    const { w } = windowWithClock();
    expect(w.messages).toBe(FLOOR);
    expect(w.bytes).toBe(MIN_WINDOW_BYTES);
  });

  test("doubles per round trip while the link keeps up, up to the server's cap", () => {
    const { w, clock } = windowWithClock();
    const sizes: number[] = [];
    for (let i = 0; i < 4; i++) {
      fullRound(w, clock, 20);
      sizes.push(w.messages);
    }
    expect(sizes).toEqual([512, 1024, 2048, 4096]);
    for (let i = 0; i < 20; i++) fullRound(w, clock, 20);
    expect(w.messages).toBe(MAX_WINDOW_MESSAGES);
    expect(w.minRttMs).toBe(20);
  });

  test("settles at twice the bandwidth × delay when the link is the limit", () => {
    const { w, clock } = windowWithClock();
    // A link that carries 100 messages per ms with a 20 ms round trip: 2000 in flight fill it.
    // A round of `n` messages takes max(20, n / 100) ms.
    for (let i = 0; i < 30; i++) {
      const n = w.messages;
      w.sent(n);
      w.full();
      clock.ms += Math.max(20, n / 100);
      w.done(n, n * 128);
    }
    expect(w.messages).toBe(4000);
  });

  test("shrinks when the acks come back slowly (a slow consumer), never below the minimum", () => {
    const { w, clock } = windowWithClock();
    for (let i = 0; i < 6; i++) fullRound(w, clock, 20);
    expect(w.messages).toBe(16_384);
    // The consumer now takes a second per window.
    fullRound(w, clock, 1000);
    expect(w.messages).toBe(Math.round((2 * 16_384 * 20) / 1000));
    for (let i = 0; i < 5; i++) fullRound(w, clock, 1000);
    expect(w.messages).toBe(FLOOR);
  });

  test("a round the window did not limit (a quiet publisher) leaves it as it is", () => {
    const { w, clock } = windowWithClock();
    for (let i = 0; i < 3; i++) fullRound(w, clock, 20);
    expect(w.messages).toBe(2048);
    // Ten messages, never a full window, acknowledged slowly.
    w.sent(10);
    clock.ms += 500;
    w.done(10, 1280);
    expect(w.messages).toBe(2048);
  });

  test("bytes follow the byte rate, within their bounds", () => {
    const { w, clock } = windowWithClock();
    // Large messages: 64 KiB each, so the byte window is what fills.
    for (let i = 0; i < 10; i++) fullRound(w, clock, 20, 64 * 1024);
    expect(w.bytes).toBe(MAX_WINDOW_BYTES);
    // Small messages: the byte rate is low, and the byte window comes back to its minimum.
    for (let i = 0; i < 10; i++) fullRound(w, clock, 20, 1);
    expect(w.bytes).toBe(MIN_WINDOW_BYTES);
  });

  test("one sample at a time: acks in several pieces end it once all it waited for is in", () => {
    const { w, clock } = windowWithClock();
    w.sent(256);
    w.full();
    clock.ms += 10;
    w.done(100, 12_800); // not yet: the sample waits for all 256
    expect(w.minRttMs).toBe(Infinity);
    w.sent(100); // sent while the sample runs: not a new sample
    clock.ms += 10;
    w.done(156, 19_968);
    expect(w.minRttMs).toBe(20);
    expect(w.messages).toBe(512);
  });

  test("reset (a new session) starts over", () => {
    const { w, clock } = windowWithClock();
    for (let i = 0; i < 3; i++) fullRound(w, clock, 20);
    w.sent(50); // a sample left running by the old session
    w.reset();
    expect(w.messages).toBe(FLOOR);
    expect(w.bytes).toBe(MIN_WINDOW_BYTES);
    expect(w.minRttMs).toBe(Infinity);
    fullRound(w, clock, 200);
    expect(w.minRttMs).toBe(200);
    expect(w.messages).toBe(512);
  });
});

describe("DeliveryWindow minimum round trip", () => {
  test("one sample ended early (an ack already on its way) holds the window back for a while, not for the session", () => {
    const { w, clock } = windowWithClock();
    for (let i = 0; i < 3; i++) fullRound(w, clock, 20);
    expect(w.messages).toBe(2048);
    // Acked 0.1 ms after it was sent: shorter than the link could do.
    w.sent(w.messages);
    w.full();
    clock.ms += 0.1;
    w.done(w.messages, w.messages * 128);
    expect(w.minRttMs).toBeCloseTo(0.1, 6);
    for (let i = 0; i < 2 * MIN_RTT_SAMPLES; i++) fullRound(w, clock, 20);
    expect(w.minRttMs).toBe(20);
    for (let i = 0; i < 10; i++) fullRound(w, clock, 20);
    expect(w.messages).toBe(MAX_WINDOW_MESSAGES);
  });

  test("a link that got slower is measured again: the minimum follows it after at most 2 × MIN_RTT_SAMPLES samples", () => {
    const { w, clock } = windowWithClock();
    for (let i = 0; i < 3; i++) fullRound(w, clock, 20);
    for (let i = 0; i < 2 * MIN_RTT_SAMPLES; i++) fullRound(w, clock, 100);
    expect(w.minRttMs).toBe(100);
  });
});

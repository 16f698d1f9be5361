/** The local broker's per-id buffer and TTL: `take` never hands out an expired message, and reports it for acknowledgement. */
import { describe, expect, test } from "bun:test";
import { Inbox } from "../../lib/local/inbox.ts";
import type { Message } from "../../lib/wire/messages.ts";

function msg(seq: number, expiresAt?: number): Message {
  const m: Message = { topic: "t", seq, time: 0, data: new Uint8Array([seq]) };
  if (expiresAt !== undefined) m.expiresAt = expiresAt;
  return m;
}

const past = () => Date.now() - 1000;
const future = () => Date.now() + 3_600_000;

describe("Inbox.take and expiry", () => {
  test("expired messages are left out, passed to onExpired, and acknowledging them moves the upstream floor past them", () => {
    const inbox = new Inbox();
    const expired: number[] = [];
    inbox.onExpired = (ms, epoch) => {
      expired.push(...ms.map((m) => m.seq));
      expect(inbox.acknowledge(ms, epoch)).toEqual([{ topic: "t", seq: 2 }]);
    };
    for (const m of [msg(1, past()), msg(2, past()), msg(3, future()), msg(4)]) inbox.add(m);
    expect(inbox.take(10).map((m) => m.seq)).toEqual([3, 4]);
    expect(expired).toEqual([1, 2]);
    expect(inbox.pending).toBe(0);
  });

  test("a take fills up to `max` with live messages past the expired ones", () => {
    const inbox = new Inbox();
    let dropped = 0;
    inbox.onExpired = (ms) => void (dropped += ms.length);
    for (let seq = 1; seq <= 6; seq++) inbox.add(msg(seq, seq <= 3 ? past() : undefined));
    expect(inbox.take(2).map((m) => m.seq)).toEqual([4, 5]);
    expect(dropped).toBe(3);
    expect(inbox.take(2).map((m) => m.seq)).toEqual([6]);
  });

  test("all expired: an empty take, and nothing left pending", () => {
    const inbox = new Inbox();
    let dropped = 0;
    inbox.onExpired = (ms) => void (dropped += ms.length);
    for (let seq = 1; seq <= 3; seq++) inbox.add(msg(seq, past()));
    expect(inbox.take(10)).toEqual([]);
    expect({ dropped, pending: inbox.pending }).toEqual({ dropped: 3, pending: 0 });
  });

  test("messages without an expiry, or not yet expired, are taken as before and onExpired is not called", () => {
    const inbox = new Inbox();
    inbox.onExpired = () => {
      throw new Error("nothing expired");
    };
    for (const m of [msg(1), msg(2, future())]) inbox.add(m);
    expect(inbox.take(10).map((m) => m.seq)).toEqual([1, 2]);
  });
});

import { describe, expect, test } from "bun:test";
import { Inbox } from "../../lib/local/inbox.ts";
import type { Message } from "../../lib/wire/messages.ts";

const msg = (seq: number, lost?: number): Message => ({ topic: "t", seq, time: 0, data: new Uint8Array([seq]), ...(lost ? { lost } : {}) });

describe("Inbox and messages the server lost", () => {
  test("Inbox keeps `lost` with the message after the hole", () => {
    const inbox = new Inbox();
    expect(inbox.add(msg(1))).toBe("new");
    expect(inbox.add(msg(5, 3))).toBe("new");
    expect(inbox.take(10)).toEqual([msg(1), msg(5, 3)]);
  });

  test("Inbox reports only the lost seqs it never received: those it holds from before the loss are not missing", () => {
    const inbox = new Inbox();
    for (let seq = 1; seq <= 6; seq++) inbox.add(msg(seq));
    // The server lost 4..8 after pushing 1..6; its next message says 5 are missing before 9.
    expect(inbox.add(msg(9, 5))).toBe("new");
    expect(inbox.add(msg(12, 2))).toBe("new");
    const got = inbox.take(10);
    expect(got.map((m) => [m.seq, m.lost])).toEqual([[1, undefined], [2, undefined], [3, undefined], [4, undefined], [5, undefined], [6, undefined], [9, 2], [12, 2]]);
  });

  test("Inbox drops `lost` when it holds every seq the server reports lost", () => {
    const inbox = new Inbox();
    for (let seq = 1; seq <= 8; seq++) inbox.add(msg(seq));
    expect(inbox.add(msg(9, 3))).toBe("new");
    expect(inbox.take(10).at(-1)).toEqual(msg(9));
  });
});

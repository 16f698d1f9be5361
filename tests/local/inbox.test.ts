/** The local broker's per-id buffer: what `take`, `putBack` and `acknowledge` leave behind. */
import { describe, expect, test } from "bun:test";
import { Inbox } from "../../lib/local/inbox.ts";
import { deliveryCost, messageBytes, type Message } from "../../lib/wire/messages.ts";
import { encodeOncePlain, isEncodedOnce, plainMessage } from "../../lib/wire/hot-frames.ts";

function msg(topic: string, seq: number): Message {
  return { topic, seq, time: 0, data: new Uint8Array([seq]) };
}

/** An inbox holding `seqs` of each topic, pushed in the order given. */
function inboxWith(...messages: Message[]): Inbox {
  const inbox = new Inbox();
  for (const m of messages) expect(inbox.add(m)).toBe("new");
  return inbox;
}

const ids = (messages: Message[]) => messages.map((m) => `${m.topic}${m.seq}`);

describe("Inbox.putBack", () => {
  test("puts an unacknowledged batch back in front of what is still queued, in order", () => {
    const inbox = inboxWith(msg("a", 1), msg("a", 2), msg("a", 3), msg("a", 4));
    const taken = inbox.take(3);
    inbox.putBack(taken.slice(1), inbox.epoch);
    expect(ids(inbox.take(10))).toEqual(["a2", "a3", "a4"]);
  });

  test("keeps each topic in seq order when a newer batch is put back after an older one", () => {
    // A client holding two batches acks the older in part (its rest goes back), then closes
    // (the newer goes back, in front of it).
    const inbox = inboxWith(msg("a", 1), msg("b", 1), msg("a", 2), msg("a", 3), msg("b", 2), msg("a", 4), msg("a", 5));
    const older = inbox.take(3); // a1 b1 a2
    const newer = inbox.take(2); // a3 b2
    inbox.putBack(older.slice(1), inbox.epoch); // a1 was seen: b1 a2 go back
    inbox.putBack(newer, inbox.epoch);
    const rest = inbox.take(10);
    expect(ids(rest.filter((m) => m.topic === "a"))).toEqual(["a2", "a3", "a4", "a5"]);
    expect(ids(rest.filter((m) => m.topic === "b"))).toEqual(["b1", "b2"]);
  });

  test("drops messages of a topic unsubscribed meanwhile", () => {
    const inbox = inboxWith(msg("a", 1), msg("b", 1));
    const taken = inbox.take(2);
    const epoch = inbox.epoch;
    inbox.dropTopic("b");
    inbox.putBack(taken, epoch);
    expect(ids(inbox.take(10))).toEqual(["a1"]);
  });

  test("does not put a batch taken under an ended subscription into a new one of the same topic (no duplicates)", () => {
    // A client holds b1..b3; the id unsubscribes and subscribes again from seq 1; the holder closes.
    const inbox = inboxWith(msg("a", 1), msg("b", 1), msg("b", 2), msg("b", 3));
    const held = inbox.take(4);
    const epoch = inbox.epoch;
    inbox.dropTopic("b");
    for (const seq of [1, 2, 3, 4]) expect(inbox.add(msg("b", seq))).toBe("new");
    inbox.putBack(held, epoch);
    expect(ids(inbox.take(10))).toEqual(["a1", "b1", "b2", "b3", "b4"]);
  });
});

describe("Inbox.acknowledge", () => {
  test("moves the upstream floor only to below the first message still out or put back", () => {
    const inbox = inboxWith(msg("a", 1), msg("a", 2), msg("a", 3));
    const taken = inbox.take(3);
    expect(inbox.acknowledge(taken.slice(0, 1), inbox.epoch)).toEqual([{ topic: "a", seq: 1 }]);
    inbox.putBack(taken.slice(1), inbox.epoch);
    expect(inbox.ackedUpstream("a")).toBe(1);
    expect(inbox.acknowledge(inbox.take(2), inbox.epoch)).toEqual([{ topic: "a", seq: 3 }]);
  });
});

/** A message of topic "t", with the `lost` count the server put on it. */
const lostMsg = (seq: number, lost?: number): Message => ({ topic: "t", seq, time: 0, data: new Uint8Array([seq]), ...(lost ? { lost } : {}) });

describe("Inbox and messages the server lost", () => {
  test("Inbox keeps `lost` with the message after the hole", () => {
    const inbox = new Inbox();
    expect(inbox.add(lostMsg(1))).toBe("new");
    expect(inbox.add(lostMsg(5, 3))).toBe("new");
    expect(inbox.take(10)).toEqual([lostMsg(1), lostMsg(5, 3)]);
  });

  test("Inbox reports only the lost seqs it never received: those it holds from before the loss are not missing", () => {
    const inbox = new Inbox();
    for (let seq = 1; seq <= 6; seq++) inbox.add(lostMsg(seq));
    // The server lost 4..8 after pushing 1..6; its next message says 5 are missing before 9.
    expect(inbox.add(lostMsg(9, 5))).toBe("new");
    expect(inbox.add(lostMsg(12, 2))).toBe("new");
    const got = inbox.take(10);
    expect(got.map((m) => [m.seq, m.lost])).toEqual([[1, undefined], [2, undefined], [3, undefined], [4, undefined], [5, undefined], [6, undefined], [9, 2], [12, 2]]);
  });

  test("Inbox drops `lost` when it holds every seq the server reports lost", () => {
    const inbox = new Inbox();
    for (let seq = 1; seq <= 8; seq++) inbox.add(lostMsg(seq));
    expect(inbox.add(lostMsg(9, 3))).toBe("new");
    expect(inbox.take(10).at(-1)).toEqual(lostMsg(9));
  });
});

describe("Inbox.bytes", () => {
  test("counts what is held, buffered or handed out, until it is acknowledged", () => {
    const inbox = inboxWith(msg("a", 1), msg("a", 2), msg("b", 1));
    const one = deliveryCost(1);
    expect(inbox.bytes).toBe(3 * one);
    expect(inbox.add(msg("a", 2))).toBe("duplicate");
    expect(inbox.bytes).toBe(3 * one);
    const taken = inbox.take(2);
    expect(inbox.bytes).toBe(3 * one);
    inbox.acknowledge(taken, inbox.epoch);
    expect(inbox.bytes).toBe(one);
  });

  test("forgets the bytes of a topic unsubscribed meanwhile", () => {
    const inbox = inboxWith(msg("a", 1), msg("b", 1), msg("b", 2));
    inbox.take(3);
    inbox.dropTopic("b");
    expect(inbox.bytes).toBe(deliveryCost(1));
  });

  test("an ack of a batch taken under an ended subscription leaves the new one of the same topic alone: its floor, its bytes", () => {
    const inbox = inboxWith(msg("b", 1), msg("b", 2));
    const held = inbox.take(2);
    const epoch = inbox.epoch;
    inbox.dropTopic("b");
    for (const seq of [1, 2, 3]) inbox.add(msg("b", seq));
    expect(inbox.acknowledge(held, epoch)).toEqual([]);
    expect(inbox.ackedUpstream("b")).toBe(0);
    expect(inbox.bytes).toBe(3 * deliveryCost(1));
    // The new subscription's own copies are acknowledged as usual, and their bytes freed.
    expect(inbox.acknowledge(inbox.take(3), inbox.epoch)).toEqual([{ topic: "b", seq: 3 }]);
    expect(inbox.bytes).toBe(0);
  });

  test("a topic dropped and subscribed again starts afresh (nothing of its old track is kept, nor remembered as the last one used)", () => {
    const inbox = inboxWith(msg("b", 1), msg("b", 2));
    expect(inbox.acknowledge(inbox.take(2), inbox.epoch)).toEqual([{ topic: "b", seq: 2 }]);
    inbox.dropTopic("b");
    // Seq 1 again (a new subscription from the start): new, not a re-send of an acknowledged one.
    expect(inbox.add(msg("b", 1))).toBe("new");
    expect(inbox.acknowledge(inbox.take(1), inbox.epoch)).toEqual([{ topic: "b", seq: 1 }]);
    expect(inbox.ackedUpstream("b")).toBe(1);
  });
});

describe("Inbox.more", () => {
  test("is true for a topic the server announced (an empty frame) before any of its messages came", () => {
    const inbox = new Inbox();
    inbox.setMore("waiting", true);
    expect(inbox.pending).toBe(0);
    expect(inbox.more).toBe(true);
    inbox.setMore("waiting", false);
    expect(inbox.more).toBe(false);
  });
});

describe("Inbox, explicit topics (queue groups, --max-deliver)", () => {
  test("acknowledges exact seqs, not a floor; a seq held already is a duplicate, a lower new one is not", () => {
    const inbox = new Inbox();
    expect(inbox.add(msg("g", 5), true)).toBe("new");
    expect(inbox.add(msg("g", 2), true)).toBe("new");
    expect(inbox.add(msg("g", 5), true)).toBe("duplicate");
    const taken = inbox.take(10);
    expect(ids(taken)).toEqual(["g5", "g2"]);
    expect(inbox.acknowledge(taken.slice(0, 1), inbox.epoch)).toEqual([{ topic: "g", seqs: [5] }]);
    expect(inbox.bytes).toBe(deliveryCost(1));
  });

  test("giveBack returns explicit messages for a nak and the cumulative ones to be put back", () => {
    const inbox = new Inbox();
    inbox.add(msg("g", 3), true);
    inbox.add(msg("c", 1));
    const taken = inbox.take(10);
    const { naks, rest } = inbox.giveBack(taken, inbox.epoch);
    expect(naks).toEqual([{ topic: "g", seqs: [3] }]);
    expect(ids(rest)).toEqual(["c1"]);
    // No longer held: the server may deliver it here again.
    expect(inbox.add(msg("g", 3), true)).toBe("new");
  });

  test("headers count against the buffer budgets, as for plain subscriptions (messageBytes)", () => {
    const inbox = new Inbox();
    const m: Message = { ...msg("g", 1), headers: { trace: "x".repeat(100) } };
    inbox.add(m, true);
    expect(inbox.bytes).toBe(deliveryCost(messageBytes(m)));
    expect(messageBytes(m)).toBeGreaterThan(m.data.length);
    inbox.acknowledge(inbox.take(1), inbox.epoch);
    expect(inbox.bytes).toBe(0);
  });

  test("a batch taken under an ended explicit subscription is not nak'd for, nor released from, a new one of the same topic", () => {
    const inbox = new Inbox();
    inbox.add(msg("g", 1), true);
    const held = inbox.take(1);
    const epoch = inbox.epoch;
    inbox.dropTopic("g");
    inbox.add(msg("g", 1), true);
    expect(inbox.giveBack(held, epoch).naks).toEqual([]);
    expect(inbox.acknowledge(held, epoch)).toEqual([]);
    // Still held by the new subscription: a re-send of it is a duplicate.
    expect(inbox.add(msg("g", 1), true)).toBe("duplicate");
    expect(ids(inbox.take(10))).toEqual(["g1"]);
  });

  test("unhanded: the explicit messages still buffered, never taken by a client, per topic (for `buffered` before an unsub or destroy)", () => {
    const inbox = new Inbox();
    for (const m of [msg("x", 1), msg("x", 2), msg("y", 5), msg("x", 3), msg("y", 7)]) expect(inbox.add(m, true)).toBe("new");
    expect(inbox.add(msg("plain", 1))).toBe("new");
    expect(ids(inbox.take(2))).toEqual(["x1", "x2"]); // handed to a client: not reported
    expect(inbox.unhanded()).toEqual([{ topic: "y", seqs: [5, 7] }, { topic: "x", seqs: [3] }]);
    expect(inbox.unhanded(["x", "plain"])).toEqual([{ topic: "x", seqs: [3] }]);
    expect(inbox.unhanded(["z"])).toEqual([]);
  });

  test("after the server connection is lost, buffered explicit messages are dropped (the server gives them back); a copy handed out may still be acknowledged", () => {
    const inbox = new Inbox();
    inbox.add(msg("g", 1), true);
    inbox.add(msg("g", 2), true);
    inbox.add(msg("c", 1));
    const handedOut = inbox.take(1);
    inbox.dropExplicit();
    expect(ids(inbox.take(10))).toEqual(["c1"]);
    expect(inbox.bytes).toBe(deliveryCost(1)); // only the plain message, taken
    // The ack of the copy handed out goes on: the server ignores it if another member has it now.
    expect(inbox.acknowledge(handedOut, inbox.epoch)).toEqual([{ topic: "g", seqs: [1] }]);
    // Its nak is not sent: the server gave it back already.
    expect(inbox.giveBack(handedOut, inbox.epoch).naks).toEqual([]);
    // Sent again after the reconnect: new here.
    expect(inbox.add(msg("g", 2), true)).toBe("new");
  });
});

describe("waiting messages hold only their own bytes (detachPending)", () => {
  test("a message that is a view into a bigger buffer (a socket read) gets a copy of its own, once; one with its own bytes and its encodeOnce block are let go", () => {
    const read = new Uint8Array(64 * 1024).map((_, i) => i & 0xff); // one socket read, many messages
    const views = [0, 1, 2].map((k) => plainMessage("t", k + 1, 0, read.subarray(100 + k * 10, 105 + k * 10)));
    encodeOncePlain(views); // as the local broker does for a push shared by several ids
    for (const m of views) expect(isEncodedOnce(m)).toBe(true);
    const own = plainMessage("t", 4, 0, new Uint8Array([9, 9]));
    const inbox = new Inbox();
    for (const m of [...views, own]) expect(inbox.add(m)).toBe("new");
    const ownData = own.data;

    expect(inbox.detachPending()).toBe(4);
    const taken = inbox.take(10);
    expect(taken.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    for (const [k, m] of taken.slice(0, 3).entries()) {
      expect(m.data.buffer.byteLength).toBe(5); // not the 64 KiB read
      expect([...m.data]).toEqual([...read.subarray(100 + k * 10, 105 + k * 10)]);
      expect(isEncodedOnce(m)).toBe(false); // the push's block is not held either
    }
    expect(taken[3]!.data).toBe(ownData); // already its own: not copied
  });

  test("only what came since the last call is looked at; a rebuilt queue is looked at again", () => {
    const read = new Uint8Array(1024);
    const inbox = new Inbox();
    inbox.add(plainMessage("t", 1, 0, read.subarray(0, 4)));
    expect(inbox.detachPending()).toBe(1);
    expect(inbox.detachPending()).toBe(0);
    inbox.add(plainMessage("t", 2, 0, read.subarray(4, 8)));
    expect(inbox.detachPending()).toBe(1);
    const batch = inbox.take(1);
    inbox.putBack(batch, inbox.epoch); // the queue is rebuilt: all of it again, nothing copied twice
    expect(inbox.detachPending()).toBe(2);
    expect(inbox.take(2).map((m) => m.data.buffer.byteLength)).toEqual([4, 4]);
  });
});

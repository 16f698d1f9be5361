/**
 * Follows (lib/local/follow.ts) over a real Inbox: what is pushed within message and byte
 * credits, what cumulative acks acknowledge, and what goes back. The connection is a
 * recorder of the frames sent (the e2e tests, tests/e2e/follow.test.ts, use real sockets).
 */
import { describe, expect, test } from "bun:test";
import { Follows } from "../../lib/local/follow.ts";
import { Inbox } from "../../lib/local/inbox.ts";
import type { Connection } from "../../lib/wire/connection.ts";
import type { DeliveryFrame, Message } from "../../lib/wire/messages.ts";

function setup() {
  const inbox = new Inbox();
  const acked: number[] = [];
  const follows = new Follows({
    inbox: () => inbox,
    acknowledge: (_local, box, messages, epoch) => {
      box.acknowledge(messages, epoch);
      acked.push(...messages.map((m) => m.seq));
    },
    giveBack: (_local, box, messages, epoch) => box.putBack(messages, epoch),
    serve: (box) => follows.serve(box),
    delivered: () => {},
  });
  const frames: DeliveryFrame[] = [];
  const conn = { closed: false, send: (f: DeliveryFrame) => frames.push(f) } as unknown as Connection;
  /** Adds messages of `size` bytes with seqs from..to to the inbox, and serves the follows. */
  const arrive = (from: number, to: number, size = 10) => {
    for (let seq = from; seq <= to; seq++) inbox.add({ topic: "t", seq, time: 1, data: new Uint8Array(size) } satisfies Message);
    follows.serve(inbox);
  };
  /** The seqs pushed since the last call. */
  const pushed = () => frames.splice(0).flatMap((f) => f.messages.map((m) => m.seq));
  return { inbox, follows, conn, arrive, pushed, acked };
}

const flush = () => new Promise<void>((resolve) => queueMicrotask(resolve));

describe("Follows", () => {
  test("message credits bound what is pushed; a credit frame acks cumulatively and grants more", async () => {
    const { follows, conn, arrive, pushed, acked, inbox } = setup();
    follows.follow(conn, 1, 3, undefined);
    arrive(1, 10);
    expect(pushed()).toEqual([1, 2, 3]);
    expect(inbox.pending).toBe(7);
    follows.credit(conn, 1, 2, 2);
    expect(acked).toEqual([1, 2]);
    expect(pushed()).toEqual([4, 5]);
    expect(() => follows.credit(conn, 1, 4)).toThrow('credit: field "acked" is 4, but the follow of id 1 has 3 unacknowledged messages');
    // Unfollow: 3, 4, 5 go back to the front, in order.
    follows.unfollow(conn, 1);
    expect(inbox.take(4).map((m) => m.seq)).toEqual([3, 4, 5, 6]);
    await flush();
  });

  test("what was pushed under an ended subscription is neither acknowledged in, nor put back into, a new one of the same topic", async () => {
    const { follows, conn, arrive, pushed, inbox } = setup();
    follows.follow(conn, 1, 2, undefined);
    arrive(1, 2);
    expect(pushed()).toEqual([1, 2]);
    // Unsubscribed and subscribed again from seq 1: the same seqs come again, on a new track.
    inbox.dropTopic("t");
    arrive(1, 3);
    follows.credit(conn, 1, 0, 1);
    expect(pushed()).toEqual([1]);
    // The ack covers the old 1 and 2 and the new 1: only the new 1 counts.
    follows.credit(conn, 1, 3);
    expect(inbox.ackedUpstream("t")).toBe(1);
    follows.credit(conn, 1, 0, 1);
    expect(pushed()).toEqual([2]);
    follows.unfollow(conn, 1);
    expect(inbox.take(10).map((m) => m.seq)).toEqual([2, 3]);
    await flush();
  });

  test("a follow closed while it holds messages of an ended subscription gives back only those of the new one", async () => {
    const { follows, conn, arrive, pushed, inbox } = setup();
    follows.follow(conn, 1, 2, undefined);
    arrive(1, 2);
    inbox.dropTopic("t");
    arrive(1, 3);
    follows.credit(conn, 1, 0, 1);
    expect(pushed()).toEqual([1, 2, 1]);
    follows.connectionClosed(conn);
    expect(inbox.take(10).map((m) => m.seq)).toEqual([1, 2, 3]);
    await flush();
  });

  test("byte credits: messages up to the bytes granted; one above them comes alone when nothing is unacknowledged", async () => {
    const { follows, conn, arrive, pushed } = setup();
    follows.follow(conn, 1, 100, 250);
    arrive(1, 4, 100);
    expect(pushed()).toEqual([1, 2]);
    // 50 bytes left: 3 waits until 100 more are granted with the ack of 1.
    follows.credit(conn, 1, 1, 1, 100);
    expect(pushed()).toEqual([3]);
    follows.credit(conn, 1, 2, 2, 200);
    expect(pushed()).toEqual([4]);
    // A message of 1000 bytes, above all the byte credits: it comes once nothing is unacknowledged.
    arrive(5, 5, 1000);
    expect(pushed()).toEqual([]);
    follows.credit(conn, 1, 1, 1, 100);
    expect(pushed()).toEqual([5]);
    await flush();
  });

  test("at most 2 delivery frames ahead: what arrives while the client is busy comes in one frame once it acks", async () => {
    const { follows, conn, arrive, acked } = setup();
    const sent: number[][] = [];
    (conn as unknown as { send: (f: DeliveryFrame) => void }).send = (f) => sent.push(f.messages.map((m) => m.seq));
    follows.follow(conn, 1, 100, undefined);
    arrive(1, 1);
    arrive(2, 2);
    arrive(3, 3);
    arrive(4, 5);
    expect(sent).toEqual([[1], [2]]);
    // The first frame acknowledged: the next one carries all that waited.
    follows.credit(conn, 1, 1, 1);
    expect(sent).toEqual([[1], [2], [3, 4, 5]]);
    expect(acked).toEqual([1]);
    await flush();
  });

  test("two follows of one id share its messages; a closed connection gives back what it held", async () => {
    const { follows, arrive, inbox } = setup();
    const framesA: DeliveryFrame[] = [];
    const framesB: DeliveryFrame[] = [];
    const a = { closed: false, send: (f: DeliveryFrame) => framesA.push(f) } as unknown as Connection;
    const b = { closed: false, send: (f: DeliveryFrame) => framesB.push(f) } as unknown as Connection;
    follows.follow(a, 1, 2, undefined);
    follows.follow(b, 1, 2, undefined);
    arrive(1, 6);
    const seqs = (frames: DeliveryFrame[]) => frames.flatMap((f) => f.messages.map((m) => m.seq));
    expect([...seqs(framesA), ...seqs(framesB)].sort()).toEqual([1, 2, 3, 4]);
    follows.connectionClosed(a);
    // A's two come back, then B (with no credits left) leaves them in the buffer with 5 and 6.
    expect(inbox.pending).toBe(4);
    expect(() => follows.follow(b, 1, 2, undefined)).toThrow("follow: id 1 is followed on this connection already");
    await flush();
  });
});

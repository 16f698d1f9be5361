/**
 * One step of a push loop, shared by Subscription.push (lib/server/topic.ts) and
 * GroupMember.push (lib/server/group.ts): the checks before each read of the log, the size
 * of that read, and the reservation of its room in the local broker's budgets.
 */
import type { Connection } from "../wire/connection.ts";
import { MESSAGE_OVERHEAD_BYTES } from "../wire/messages.ts";
import type { Credits } from "./credits.ts";
import type { Subscription } from "./topic.ts";

/**
 * Most expired messages one push skips: a long run of them (a backlog that expired) is read
 * through a bit per turn of the event loop, never in one go.
 */
export const MAX_EXPIRED_PER_PUSH = 4096;

/** The next read of a push: up to `count` messages, about `maxBytes` of payload; `reserved` is charged to the id until the read returns. */
export interface NextRead {
  count: number;
  maxBytes: number;
  reserved: number;
}

/**
 * Why a push stops before its next read. `window`: its own window is full (its acks bring it
 * back). `credits`: a budget it shares is spent (the connection's outbound one, or the
 * broker's or the id's byte budget): it waits in Credits for its turn. `later`: it skipped
 * MAX_EXPIRED_PER_PUSH expired messages and goes on at the next turn of the event loop.
 */
export type PushStop = "window" | "credits" | "later";

/**
 * Before each read of `sub`'s push, with `held` messages and `heldBytes` payload bytes in
 * flight, at most `maxCount` to read and `skipped` expired messages skipped so far: why it
 * stops, or the read's size, its room then reserved in `credits` (so that Credits serves
 * the others only from what is left while the read is in flight).
 */
export function nextRead(sub: Subscription, conn: Connection, credits: Credits, held: number, heldBytes: number, maxCount: number, skipped: number): NextRead | PushStop {
  if (skipped >= MAX_EXPIRED_PER_PUSH) {
    // No ack would wake it: the pump pushes it again.
    setImmediate(() => sub.dropped || sub.topic.repush(sub));
    return "later";
  }
  if (!conn.writable) return "credits";
  const room = sub.window.messages - held;
  if (room <= 0 || heldBytes >= sub.window.bytes) {
    sub.window.full();
    return "window";
  }
  const budget = credits.room(sub.id);
  if (budget <= 0) return "credits";
  // Each message costs its payload + MESSAGE_OVERHEAD_BYTES: read no more than the budget
  // pays for. The read returns at least one message and its last may overshoot, so the
  // budget is exceeded by one message at most, and a message above it still goes.
  const count = Math.max(1, Math.min(room, maxCount, Math.floor(budget / MESSAGE_OVERHEAD_BYTES)));
  const maxBytes = Math.max(1, Math.min(sub.window.bytes - heldBytes, budget - count * MESSAGE_OVERHEAD_BYTES));
  const reserved = count * MESSAGE_OVERHEAD_BYTES + maxBytes;
  credits.charge(sub.id, reserved);
  return { count, maxBytes, reserved };
}

/**
 * Retention of one topic: deletes the oldest segments the policy lets go. Soft (the default)
 * never deletes a message some subscriber has not acknowledged; hard (`--retention-limit
 * hard`) applies the age and size limits anyway, and counts, per subscriber, what was deleted
 * before the server pushed it to the subscriber's local broker (what was pushed is delivered
 * from the local broker's memory). The subscriber's cursor stays where it was: its next delivery
 * from the server starts at the new first seq and carries `lost`, also after a restart.
 */
import { logger } from "../log.ts";
import type { RetentionPolicy } from "../store/types.ts";
import type { RetentionDrop } from "../metrics.ts";
import type { Topic } from "./topic.ts";

const log = logger("server");

export type RetentionLimit = "soft" | "hard";

export interface ServerRetention extends RetentionPolicy {
  /** soft: never past a subscriber's acknowledged cursor (the default); hard: the limits win. */
  limit?: RetentionLimit;
}

/** Messages deleted unacknowledged by the hard limit, per subscriber, since the server started. */
export class RetentionDrops {
  private readonly byKey = new Map<string, RetentionDrop>();

  add(id: number, topic: string, dropped: number): void {
    const key = `${id}\0${topic}`;
    const entry = this.byKey.get(key);
    if (entry) entry.dropped += dropped;
    else this.byKey.set(key, { global_id: id, topic, dropped });
  }

  /** An id destroyed, or unsubscribed from `topic` (all its topics when absent): its counts go. */
  forget(id: number, topic?: string): void {
    for (const [key, entry] of this.byKey) if (entry.global_id === id && (topic === undefined || entry.topic === topic)) this.byKey.delete(key);
  }

  /** For `stats`: copies, sorted by topic then id. */
  list(): RetentionDrop[] {
    return [...this.byKey.values()]
      .map((e) => ({ ...e }))
      .sort((a, b) => (a.topic === b.topic ? a.global_id - b.global_id : a.topic < b.topic ? -1 : 1));
  }
}

/**
 * Trims `topic` by `policy` at `now`; returns how many messages went. Messages appended within
 * the last `dedupeWindowMs` stay, whatever the limit: a start reads the dedupe window's ids back
 * from the records, so deleting them would store a publish sent again after a restart twice.
 */
export async function trimTopic(topic: Topic, policy: ServerRetention, now: number, drops: RetentionDrops, dedupeWindowMs = 0): Promise<number> {
  const messages = topic.log;
  const firstBefore = messages.firstSeq;
  let before = messages.nextSeq;
  if (policy.limit !== "hard") for (const sub of topic.subscriptions.values()) before = Math.min(before, sub.acked);
  if (dedupeWindowMs > 0 && before > firstBefore) before = Math.min(before, await messages.seqAtTime(now - dedupeWindowMs));
  const removed = await messages.trim(before, policy, now);
  if (removed === 0 || policy.limit !== "hard") return removed;
  const first = messages.firstSeq;
  for (const sub of topic.subscriptions.values()) {
    // What the server could no longer push: seqs below `sentCursor` reached the local broker,
    // which delivers them from memory. Seqs below the old first were counted by an earlier trim.
    const dropped = first - Math.max(sub.sentCursor, firstBefore);
    if (dropped > 0) {
      drops.add(sub.id, topic.name, dropped);
      log.warn(`topic "${topic.name}": retention (--retention-limit hard) deleted ${dropped} message${dropped === 1 ? "" : "s"} before id ${sub.id} (global) received ${dropped === 1 ? "it" : "them"}; its next delivery of this topic carries "lost"`);
    }
  }
  return removed;
}

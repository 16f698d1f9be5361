/**
 * Publisher order with several publishes in flight (the `after` field of pub / pubs): a
 * publisher that sends batch k + 1 before batch k is answered names the last id of batch k,
 * and the server stores k + 1 only if that id is stored in the topic, or being appended
 * ahead of it (an append in flight goes to the log before any later one). Otherwise batch
 * k was lost on the way (a cut connection, a request that timed out in the local broker):
 * k + 1 is refused with UNAVAILABLE and nothing of it stored, and the publisher sends k
 * again, then k + 1. What is stored of the topic stays a prefix of what was published.
 *
 * The ids are those of the dedupe window (lib/server/dedupe.ts): with the window off
 * (`--dedupe-window 0`) `after` is not checked, as a retry is not deduplicated either.
 */
import { Code, MqError } from "../errors.ts";
import { splitMsgId, type TopicIds } from "./dedupe.ts";

/** True when the message with id `after` is stored in the topic (within the window) or being appended. */
export function storedOrPending(ids: TopicIds, after: string): boolean {
  const split = splitMsgId(after);
  if (!split) return ids.keys.has(after) || ids.pendingKeys.has(after);
  const runs = ids.runs.get(split.prefix);
  return runs !== undefined && (runs.find(split.n) !== undefined || runs.pendingOf(split.n) !== undefined);
}

/** Throws UNAVAILABLE (sent again later, it may pass) when the publish `after` names is not stored in `topic`. */
export function checkAfter(ids: TopicIds, topic: string, after: string): void {
  if (storedOrPending(ids, after)) return;
  throw new MqError(Code.Unavailable, `not stored: the publish before it (msgId ${JSON.stringify(after.slice(0, 80))}) is not stored in topic "${topic}"; send that one first, then this one again`);
}

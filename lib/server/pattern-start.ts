/**
 * Where a pattern's subscription to a topic starts when a start finds the topic lacks it (a
 * `sub` or a topic creation cut short by a crash): as the `sub` asked, as if it had run to the
 * end. Topics created after the pattern start at their first message (with `latest`, the
 * append time of the consumer's creation gives just that: their messages are all newer).
 */
import type { TopicLog } from "../store/types.ts";
import type { Consumer } from "./consumer.ts";

export async function patternStart(pattern: Consumer, log: TopicLog): Promise<number> {
  const from = pattern.from;
  if (from === undefined || from === "earliest") return log.firstSeq;
  if (typeof from === "object") return await log.seqAtTime(from.since);
  if (from === "latest") return pattern.createdAt === undefined ? log.firstSeq : await log.seqAtTime(pattern.createdAt);
  return Math.max(from, log.firstSeq);
}

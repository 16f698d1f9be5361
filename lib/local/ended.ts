/**
 * The topics whose subscription an `unsub` ended, from the server's reply: each entry's
 * `dropped` (a pattern ends the subscriptions of the topics it matched that no other filter
 * of the id matches; an exact topic still matched by a pattern keeps its subscription). A
 * server older than wildcards sends no `dropped`: there, an unsubscribed topic ended.
 */
export function endedTopics(reply: Record<string, unknown>): string[] {
  const entries = Array.isArray(reply.topics) ? (reply.topics as Array<Record<string, unknown>>) : [];
  const out: string[] = [];
  for (const e of entries) {
    if (Array.isArray(e.dropped)) out.push(...e.dropped.filter((t): t is string => typeof t === "string"));
    else if (e.unsubscribed === true && typeof e.topic === "string") out.push(e.topic);
  }
  return out;
}

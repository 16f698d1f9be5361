/**
 * A consumer: what a client asked for with one `sub` filter. Several consumers of one id may
 * match one topic; the delivery state of (id, topic) stays one Subscription (topic.ts), so a
 * message matched by two filters of one id is delivered once.
 */
import type { From } from "../wire/messages.ts";

export interface Consumer {
  /** The global client id. */
  readonly id: number;
  /** A topic name, or a pattern (`*`: one token, `>`: one or more trailing tokens). */
  readonly filter: string;
  /** Where it started in the topics that existed when it was made (`since`: ms since the epoch). */
  readonly from?: From | { since: number };
  /** Queue group (not used yet). */
  readonly group?: string;
  /** How its deliveries are acknowledged (only "cumulative" is served yet). */
  readonly ackPolicy: "cumulative" | "explicit";
  /** Deliveries of a message before it goes to the dead-letter topic (not used yet). */
  readonly maxDeliver?: number;
  readonly deadLetter?: string;
}

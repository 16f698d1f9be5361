/**
 * The message a dead-letter topic receives for a message that was delivered --max-deliver
 * times without an acknowledgement: the original payload and headers, plus headers saying
 * where it came from and why (these win over original headers of the same names).
 */
import type { StoredMessage } from "../store/types.ts";
import { headersProblem } from "../wire/headers.ts";

/** Why a message was dead-lettered (`mq-dead-reason`). */
export const MAX_DELIVER_REASON = "max-deliver";

export interface DeadLetter {
  data: Uint8Array;
  headers: Record<string, string>;
}

/** The header naming the topic a dead letter came from. */
export const DEAD_TOPIC_HEADER = "mq-dead-topic";
/** Set in place of the original headers when they and the mq-dead-* ones would exceed the header limits: how many were left out. */
export const HEADERS_DROPPED_HEADER = "mq-dead-headers-dropped";

/** True when `m` is a dead letter already (it carries `mq-dead-topic`). */
export function isDeadLetter(m: StoredMessage): boolean {
  return m.headers?.[DEAD_TOPIC_HEADER] !== undefined;
}

/**
 * A dead letter's headers always fit the header limits (MAX_HEADERS, MAX_HEADERS_BYTES):
 * when the original headers and the mq-dead-* ones do not fit together, the original ones
 * are left out and `mq-dead-headers-dropped` says how many. A delivery could not carry it otherwise.
 */
export function deadLetterMessage(topic: string, original: StoredMessage, deliveries: number): DeadLetter {
  const dead: Record<string, string> = {
    [DEAD_TOPIC_HEADER]: topic,
    "mq-dead-seq": String(original.seq),
    "mq-dead-reason": MAX_DELIVER_REASON,
    "mq-dead-deliveries": String(deliveries),
  };
  let headers = { ...original.headers, ...dead };
  if (headersProblem(headers) !== null) headers = { ...dead, [HEADERS_DROPPED_HEADER]: String(Object.keys(original.headers ?? {}).length) };
  // A copy: the read's payload may share the log's read buffer, and the append is asynchronous.
  return { data: original.data.slice(), headers };
}

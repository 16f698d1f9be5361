/**
 * The message a dead-letter topic receives for a message that was delivered --max-deliver
 * times without an acknowledgement: the original payload and headers, plus headers saying
 * where it came from and why (these win over original headers of the same names).
 */
import type { StoredMessage } from "../store/types.ts";

/** Why a message was dead-lettered (`mq-dead-reason`). */
export const MAX_DELIVER_REASON = "max-deliver";

export interface DeadLetter {
  data: Uint8Array;
  headers: Record<string, string>;
}

export function deadLetterMessage(topic: string, original: StoredMessage, deliveries: number): DeadLetter {
  return {
    // A copy: the read's payload may share the log's read buffer, and the append is asynchronous.
    data: original.data.slice(),
    headers: {
      ...original.headers,
      "mq-dead-topic": topic,
      "mq-dead-seq": String(original.seq),
      "mq-dead-reason": MAX_DELIVER_REASON,
      "mq-dead-deliveries": String(deliveries),
    },
  };
}

/** A topic as the server holds it, and one subscriber's delivery state within it. */
import type { StoredMessage, SubscriberIndex, TopicLog } from "../store/types.ts";
import type { Connection } from "../wire/connection.ts";
import type { MsgsFrame } from "../wire/messages.ts";

/** Credits: the most messages and bytes of one subscription sent and not yet acknowledged. */
export const WINDOW_MESSAGES = 256;
export const WINDOW_BYTES = 1024 * 1024;
const READ_BATCH = 64;

export class Topic {
  readonly subscriptions = new Map<number, Subscription>();
  constructor(
    readonly name: string,
    readonly log: TopicLog,
    readonly index: SubscriberIndex,
  ) {}
}

export class Subscription {
  /** Acknowledged cursor: every seq below it reached the client. Persisted (lazily) in the index. */
  acked: number;
  /** Next seq to push. Between `acked` and `sent` messages are in flight. */
  private sent: number;
  // Seqs and sizes in flight, oldest first (a queue with a moving head, no per-message objects).
  private seqs: number[] = [];
  private sizes: number[] = [];
  private head = 0;
  private inflightBytes = 0;
  /** The local broker last heard `more: true` for this subscription (a frame or a notice said so). */
  private moreAnnounced = false;

  constructor(
    readonly id: number,
    readonly topic: Topic,
    cursor: number,
  ) {
    this.acked = cursor;
    this.sent = cursor;
  }

  /** After a (re)connect of the owner: everything unacknowledged is sent again. */
  rewind(): void {
    this.moreAnnounced = false;
    this.sent = this.acked;
    this.seqs = [];
    this.sizes = [];
    this.head = 0;
    this.inflightBytes = 0;
  }

  /**
   * Pushes as much as the window and the connection's budget allow; returns how many.
   * A hole in the log (messages lost to damaged storage) is skipped, never waited for: the
   * first message after it carries `lost`, how many seqs before it are missing.
   */
  push(conn: Connection): number {
    const log = this.topic.log;
    let pushed = 0;
    // `sent <= lastSeq`: something is stored at or after `sent` (a hole at the end waits for the next append).
    while (conn.writable && this.sent <= log.lastSeq) {
      const room = WINDOW_MESSAGES - (this.seqs.length - this.head);
      if (room <= 0 || this.inflightBytes >= WINDOW_BYTES) break;
      const batch: StoredMessage[] = log.read(this.sent, Math.min(room, READ_BATCH), WINDOW_BYTES - this.inflightBytes);
      if (batch.length === 0) break;
      // One frame per run of consecutive seqs; a run that starts past the expected seq follows a hole.
      let expected = this.sent;
      let start = 0;
      for (let k = 1; k <= batch.length; k++) {
        if (k < batch.length && batch[k]!.seq === batch[k - 1]!.seq + 1) continue;
        const run = batch.slice(start, k);
        // `more`: the log holds messages past this frame, which come once credits free up.
        const more = run[run.length - 1]!.seq < log.lastSeq;
        const lost = run[0]!.seq - expected;
        const frame: MsgsFrame = { op: "msgs", id: this.id, topic: this.topic.name, seq: run[0]!.seq, times: run.map((m) => m.time), payloads: run.map((m) => m.data), more };
        if (lost > 0) frame.lost = lost;
        conn.send(frame);
        this.moreAnnounced = more;
        expected = run[run.length - 1]!.seq + 1;
        start = k;
      }
      for (const m of batch) {
        this.seqs.push(m.seq);
        this.sizes.push(m.data.length);
        this.inflightBytes += m.data.length;
      }
      this.sent = batch[batch.length - 1]!.seq + 1;
      pushed += batch.length;
    }
    // Held back by the window with messages waiting: say so once, with an empty frame, so a
    // `recv --count N` knows that more will come after its acknowledgement.
    if (!this.moreAnnounced && this.sent <= log.lastSeq && conn.writable) {
      conn.send({ op: "msgs", id: this.id, topic: this.topic.name, seq: this.sent, times: [], payloads: [], more: true });
      this.moreAnnounced = true;
    }
    return pushed;
  }

  /** Cumulative acknowledgement of every seq up to `seq`; returns how many messages it freed. */
  ack(seq: number): number {
    const cursor = Math.min(seq + 1, this.topic.log.nextSeq);
    if (cursor <= this.acked) return 0;
    let freed = 0;
    while (this.head < this.seqs.length && this.seqs[this.head]! < cursor) {
      this.inflightBytes -= this.sizes[this.head]!;
      this.head++;
      freed++;
    }
    if (this.head > 1024 && this.head * 2 > this.seqs.length) {
      this.seqs = this.seqs.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
    this.acked = cursor;
    // An ack for messages pushed before a reconnect may run ahead of what was re-sent.
    if (this.sent < cursor) this.sent = cursor;
    this.topic.index.advance(this.id, cursor);
    return Math.max(freed, 1);
  }
}

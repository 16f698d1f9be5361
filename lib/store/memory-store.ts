/**
 * In-memory TopicLog and SubscriberIndex: the second implementation that keeps the
 * interfaces honest (it runs the same contract suite), and a backend for `--store memory`
 * style experiments. Nothing survives the process.
 */
import { idAt, type IdRun } from "./id-run.ts";
import type { AppendFields, MsgIdRecord, RetentionPolicy, StoredMessage, SubscriberIndex, TopicLog, TopicStore } from "./types.ts";

export class MemoryTopicLog implements TopicLog {
  private messages: Array<StoredMessage & { msgId?: string }> = [];
  /** Seq of messages[0]. */
  firstSeq = 1;

  get nextSeq(): number {
    return this.firstSeq + this.messages.length;
  }

  get lastSeq(): number {
    return this.messages.length > 0 ? this.nextSeq - 1 : 0;
  }

  get count(): number {
    return this.messages.length;
  }

  /** Memory never loses a message (nor keeps one across a restart). */
  readonly lost = 0;

  async append(data: Uint8Array, time: number, fields?: AppendFields): Promise<number> {
    return this.store(data, time, fields);
  }

  async appendBatch(data: Uint8Array[], time: number, fields: Array<AppendFields | undefined>, ids?: IdRun): Promise<number[]> {
    const seqs = new Array<number>(data.length);
    for (let i = 0; i < data.length; i++) seqs[i] = this.store(data[i]!, time, ids ? { ...fields[i], msgId: idAt(ids, i) } : fields[i]);
    return seqs;
  }

  private store(data: Uint8Array, time: number, fields: AppendFields | undefined): number {
    const seq = this.nextSeq;
    const m: StoredMessage & { msgId?: string } = { seq, time, data: data.slice() };
    if (fields?.msgId !== undefined) m.msgId = fields.msgId;
    if (fields?.headers !== undefined) m.headers = fields.headers;
    if (fields?.expiresAt !== undefined) m.expiresAt = fields.expiresAt;
    this.messages.push(m);
    return seq;
  }

  async recentMsgIds(since: number, limit: number): Promise<MsgIdRecord[]> {
    const out: MsgIdRecord[] = [];
    for (let i = this.messages.length - 1; i >= 0 && out.length < limit; i--) {
      const m = this.messages[i]!;
      if (m.time < since) break;
      if (m.msgId !== undefined) out.push({ msgId: m.msgId, seq: m.seq, time: m.time });
    }
    return out.reverse();
  }

  async read(from: number, maxCount: number, maxBytes: number): Promise<StoredMessage[]> {
    const out: StoredMessage[] = [];
    let bytes = 0;
    for (let i = Math.max(from, this.firstSeq) - this.firstSeq; i < this.messages.length && out.length < maxCount && (out.length === 0 || bytes < maxBytes); i++) {
      const { seq, time, data, headers, expiresAt } = this.messages[i]!;
      const m: StoredMessage = { seq, time, data };
      if (headers !== undefined) m.headers = headers;
      if (expiresAt !== undefined) m.expiresAt = expiresAt;
      out.push(m);
      bytes += this.messages[i]!.data.length;
    }
    return out;
  }

  async seqAtTime(time: number): Promise<number> {
    // The first message at or after `time` (binary search: times rise with seqs).
    let lo = 0;
    let hi = this.messages.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.messages[mid]!.time < time) lo = mid + 1;
      else hi = mid;
    }
    return this.firstSeq + lo;
  }

  async trim(before: number, policy: RetentionPolicy, now: number): Promise<number> {
    let bytes = this.messages.reduce((n, m) => n + m.data.length, 0);
    let drop = 0;
    for (const m of this.messages) {
      if (m.seq >= before || (m.time >= now - policy.maxAgeMs && bytes <= policy.maxBytes)) break;
      bytes -= m.data.length;
      drop++;
    }
    this.messages = this.messages.slice(drop);
    this.firstSeq += drop;
    return drop;
  }

  async close(): Promise<void> {}
}

export class MemorySubscriberIndex implements SubscriberIndex {
  readonly cursors = new Map<number, number>();

  async add(id: number, cursor: number): Promise<void> {
    if (!this.cursors.has(id)) this.cursors.set(id, cursor);
  }

  async remove(id: number): Promise<void> {
    this.cursors.delete(id);
  }

  advance(id: number, cursor: number): void {
    const current = this.cursors.get(id);
    if (current !== undefined && cursor > current) this.cursors.set(id, cursor);
  }

  writeMoved(): void {}
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

export class MemoryTopicStore implements TopicStore {
  private readonly opened = new Map<string, { log: TopicLog; subscribers: SubscriberIndex }>();

  async topics(): Promise<string[]> {
    return [...this.opened.keys()].sort();
  }

  async open(topic: string, create: boolean) {
    const known = this.opened.get(topic);
    if (known) return { ...known, created: false };
    if (!create) return null;
    const entry = { log: new MemoryTopicLog(), subscribers: new MemorySubscriberIndex() };
    this.opened.set(topic, entry);
    return { ...entry, created: true };
  }

  async close(): Promise<void> {}
}

/**
 * In-memory TopicLog and SubscriberIndex: the second implementation that keeps the
 * interfaces honest (it runs the same contract suite), and a backend for `--store memory`
 * style experiments. Nothing survives the process.
 */
import type { StoredMessage, SubscriberIndex, TopicLog, TopicStore } from "./types.ts";

export class MemoryTopicLog implements TopicLog {
  private readonly messages: StoredMessage[] = [];
  readonly firstSeq = 1;

  get nextSeq(): number {
    return this.messages.length + 1;
  }

  async append(data: Uint8Array, time: number): Promise<number> {
    const seq = this.messages.length + 1;
    this.messages.push({ seq, time, data: data.slice() });
    return seq;
  }

  read(from: number, maxCount: number, maxBytes: number): StoredMessage[] {
    const out: StoredMessage[] = [];
    let bytes = 0;
    for (let i = Math.max(from, 1) - 1; i < this.messages.length && out.length < maxCount && (out.length === 0 || bytes < maxBytes); i++) {
      out.push(this.messages[i]!);
      bytes += this.messages[i]!.data.length;
    }
    return out;
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

  topics(): string[] {
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

/**
 * `DATA/consumers` (and its copy `consumers.mirror`): the consumers the server keeps beside
 * the subscriber indexes (types.ts ConsumerStore), as a RecordFile of `{p: record}` (put)
 * and `{r: [id, filter]}` (removed); a snapshot is the puts of the live consumers.
 */
import { RecordFile, type Record_ } from "./record-file.ts";
import type { ConsumerRecord, ConsumerStore } from "./types.ts";

const COMPACT_MIN_BYTES = 64 * 1024;

function key(id: number, filter: string): string {
  return `${id} ${filter}`;
}

/** A stored record as read back: only well-formed ones are kept (the file is checksummed, this guards the shape). */
export function asRecord(value: unknown): ConsumerRecord | null {
  if (typeof value !== "object" || value === null) return null;
  const r = value as Record<string, unknown>;
  if (!Number.isSafeInteger(r.id) || typeof r.filter !== "string") return null;
  return r as unknown as ConsumerRecord;
}

export class FileConsumerStore implements ConsumerStore {
  private readonly consumers = new Map<string, ConsumerRecord>();
  private readonly file: RecordFile;
  private garbage = 0;

  constructor(file: string) {
    this.file = RecordFile.open(file, {
      apply: (r: Record_) => {
        const put = asRecord(r.p);
        if (put) {
          if (this.consumers.has(key(put.id, put.filter))) this.garbage++;
          this.consumers.set(key(put.id, put.filter), put);
        } else if (Array.isArray(r.r) && this.consumers.delete(key(r.r[0] as number, r.r[1] as string))) this.garbage += 2;
      },
      snapshot: () => [...this.consumers.values()].map((p) => ({ p })),
    });
  }

  list(): ConsumerRecord[] {
    return [...this.consumers.values()];
  }

  async put(record: ConsumerRecord): Promise<void> {
    // In the map before the append: a remove meanwhile writes its record after this one.
    const k = key(record.id, record.filter);
    const before = this.consumers.get(k);
    this.consumers.set(k, record);
    try {
      await this.file.append({ p: record }, true);
    } catch (err) {
      if (this.consumers.get(k) === record) {
        if (before) this.consumers.set(k, before);
        else this.consumers.delete(k);
      }
      throw err;
    }
  }

  async remove(id: number, filter: string): Promise<void> {
    if (!this.consumers.delete(key(id, filter))) return;
    this.garbage += 2;
    await this.file.append({ r: [id, filter] }, true);
    if (this.file.bytes > COMPACT_MIN_BYTES && this.garbage > this.consumers.size) {
      this.garbage = 0;
      await this.file.rewrite();
    }
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

/** Nothing survives the process (with the memory topic store). */
export class MemoryConsumerStore implements ConsumerStore {
  private readonly consumers = new Map<string, ConsumerRecord>();

  list(): ConsumerRecord[] {
    return [...this.consumers.values()];
  }

  async put(record: ConsumerRecord): Promise<void> {
    this.consumers.set(key(record.id, record.filter), { ...record });
  }

  async remove(id: number, filter: string): Promise<void> {
    this.consumers.delete(key(id, filter));
  }

  async close(): Promise<void> {}
}

/**
 * FileSubscriberIndex: `topics/<topic>/subscribers` (and its copy `subscribers.mirror`), a
 * RecordFile of events `{s: id, c: cursor}` (subscribe, durable), `{u: id}` (unsubscribe,
 * durable) and `{a: id, c: cursor}` (cursor moved, lazy). Compacted to a snapshot when the
 * events outweigh it.
 */
import { logger } from "../log.ts";
import type { OpenFiles } from "./open-files.ts";
import { RecordFile, type Record_ } from "./record-file.ts";
import type { SubscriberIndex } from "./types.ts";

const COMPACT_MIN_BYTES = 64 * 1024;
const log = logger("store");

export class FileSubscriberIndex implements SubscriberIndex {
  private readonly map = new Map<number, number>();
  private readonly file: RecordFile;
  /** Cursor moves not yet written. */
  private readonly moved = new Map<number, number>();
  private compacting = false;

  /** `files`: the pool its two copies are opened in (open-files.ts); by default no bound. */
  constructor(file: string, files?: OpenFiles) {
    this.file = RecordFile.open(
      file,
      {
      apply: (r) => this.apply(r),
      snapshot: () => this.snapshot(),
      // Which record went is unknown: a subscribe (that subscriber is gone), an unsubscribe
      // (it is back) or a cursor move (older cursor: re-delivery). Say what is left.
      lost: ({ where }) =>
        log.error(`${file}: after the loss (${where}): a subscriber may be missing or back, or a cursor older; subscribers now: ${describe(this.map)}`),
      },
      files,
    );
  }

  /** Makes the files of an empty index off the event loop (the caller fsyncs the directory); the constructor then only reads them. */
  static create(file: string): Promise<void> {
    return RecordFile.create(file);
  }

  get cursors(): ReadonlyMap<number, number> {
    return this.map;
  }

  private apply(r: Record_): void {
    if (typeof r.s === "number" && typeof r.c === "number") this.map.set(r.s, r.c);
    else if (typeof r.a === "number" && typeof r.c === "number") {
      if (this.map.has(r.a)) this.map.set(r.a, Math.max(this.map.get(r.a)!, r.c));
    } else if (typeof r.u === "number") this.map.delete(r.u);
  }

  async add(id: number, cursor: number): Promise<void> {
    // Already there: its record may still be on its way to the disk, so wait for that.
    if (this.map.has(id)) return this.file.sync();
    this.map.set(id, cursor);
    await this.file.append({ s: id, c: cursor }, true);
  }

  async remove(id: number): Promise<void> {
    if (!this.map.has(id)) return this.file.sync();
    this.map.delete(id);
    this.moved.delete(id);
    await this.file.append({ u: id }, true);
    await this.maybeCompact();
  }

  advance(id: number, cursor: number): void {
    const current = this.map.get(id);
    if (current === undefined || cursor <= current) return;
    this.map.set(id, cursor);
    this.moved.set(id, cursor);
  }

  async flush(): Promise<void> {
    if (this.moved.size > 0) {
      const writes = [...this.moved].map(([id, c]) => this.file.append({ a: id, c }, false));
      this.moved.clear();
      await Promise.all(writes);
      await this.maybeCompact();
    }
    await this.file.sync();
  }

  /** Writes pending cursor moves without waiting for the disk (called on a timer). */
  writeMoved(): void {
    if (this.moved.size === 0) return;
    // A failed cursor write only means a re-delivery after a crash; log it, do not fail anyone.
    const failed = (err: unknown) => log.warn(`${this.file.file}: cursor write failed:`, err);
    for (const [id, c] of this.moved) this.file.append({ a: id, c }, false).catch(failed);
    this.moved.clear();
    this.maybeCompact().catch(failed);
  }

  private async maybeCompact(): Promise<void> {
    if (this.compacting || this.file.bytes < COMPACT_MIN_BYTES || this.file.bytes < this.map.size * 64) return;
    this.compacting = true;
    try {
      await this.file.rewrite();
    } finally {
      this.compacting = false;
    }
  }

  private snapshot(): Record_[] {
    return [...this.map].map(([s, c]) => ({ s, c }));
  }

  async close(): Promise<void> {
    await this.flush();
    await this.file.close();
  }
}

/** "id 1 at 5, id 3 at 1" (the first 20). */
function describe(map: ReadonlyMap<number, number>): string {
  if (map.size === 0) return "none";
  const shown = [...map].slice(0, 20).map(([id, c]) => `id ${id} at ${c}`);
  return shown.join(", ") + (map.size > 20 ? `, … (${map.size})` : "");
}

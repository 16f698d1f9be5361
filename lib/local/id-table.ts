/**
 * The local broker's table local id ↔ global id, in `DATA/ids` as a RecordFile of
 * `{l, g}` (mapped) and `{d: l}` (removed), with `{n: next}` in snapshots. Local ids are
 * small and never reused, so a destroyed id stays UNKNOWN_ID forever.
 */
import { RecordFile } from "../store/record-file.ts";

export class IdTable {
  private readonly toGlobal = new Map<number, number>();
  private readonly toLocal = new Map<number, number>();
  private next = 1;
  private readonly file: RecordFile;
  private removed = 0;

  constructor(file: string) {
    this.file = RecordFile.open(file, (r) => {
      if (typeof r.l === "number" && typeof r.g === "number") {
        this.toGlobal.set(r.l, r.g);
        this.toLocal.set(r.g, r.l);
        this.next = Math.max(this.next, r.l + 1);
      } else if (typeof r.d === "number") {
        const g = this.toGlobal.get(r.d);
        this.toGlobal.delete(r.d);
        if (g !== undefined) this.toLocal.delete(g);
        this.removed++;
      } else if (typeof r.n === "number") this.next = Math.max(this.next, r.n);
    });
  }

  global(local: number): number | undefined {
    return this.toGlobal.get(local);
  }

  local(global: number): number | undefined {
    return this.toLocal.get(global);
  }

  get size(): number {
    return this.toGlobal.size;
  }

  /** Maps a new global id to the next local id; durable when the promise resolves. */
  async add(global: number): Promise<number> {
    const local = this.next++;
    // Live only once durable: a failed write leaves no half-made id behind (the number is skipped).
    await this.file.append({ l: local, g: global }, true);
    this.toGlobal.set(local, global);
    this.toLocal.set(global, local);
    return local;
  }

  async remove(local: number): Promise<void> {
    const g = this.toGlobal.get(local);
    if (g === undefined) return;
    this.toGlobal.delete(local);
    this.toLocal.delete(g);
    await this.file.append({ d: local }, true);
    if (++this.removed > 1000 && this.removed > this.toGlobal.size) {
      this.removed = 0;
      await this.file.rewrite(() => [{ n: this.next }, ...[...this.toGlobal].map(([l, g]) => ({ l, g }))]);
    }
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

/**
 * The local broker's table local id ↔ global id, in `DATA/ids` (and its copy `ids.mirror`)
 * as a RecordFile of `{l, g}` (mapped) and `{d: l}` (removed); snapshots add `{n: next}`
 * and `{x: [lo, hi, …]}` (local ids whose records were lost). Local ids are small and never
 * reused, so a destroyed id stays UNKNOWN_ID forever: the next local id is kept as the
 * RecordFile's mark, in the headers of both copies, so losing records never lowers it.
 */
import { logger } from "../log.ts";
import { IdRanges } from "../store/id-ranges.ts";
import { RecordFile, type Record_ } from "../store/record-file.ts";

const log = logger("local");

export class IdTable {
  private readonly toGlobal = new Map<number, number>();
  private readonly toLocal = new Map<number, number>();
  private next = 1;
  private readonly file: RecordFile;
  private removed = 0;
  /** Local ids whose records were lost (damage in both copies). */
  private readonly lostIds = new IdRanges();

  constructor(file: string) {
    const gone = new Set<number>();
    this.file = RecordFile.open(file, {
      apply: (r) => {
        if (typeof r.l === "number" && typeof r.g === "number") {
          this.toGlobal.set(r.l, r.g);
          this.toLocal.set(r.g, r.l);
          this.next = Math.max(this.next, r.l + 1);
        } else if (typeof r.d === "number") {
          const g = this.toGlobal.get(r.d);
          this.toGlobal.delete(r.d);
          if (g !== undefined) this.toLocal.delete(g);
          gone.add(r.d);
          this.removed++;
        } else if (typeof r.n === "number") this.next = Math.max(this.next, r.n);
        else if (r.x !== undefined) this.lostIds.addFlat(r.x);
      },
      snapshot: () => this.snapshot(),
      mark: () => this.next,
      lost: ({ where, mark }) => {
        this.next = Math.max(this.next, mark);
        const unknown = IdRanges.gaps(1, this.next, [...this.toGlobal.keys(), ...gone]);
        this.lostIds.addFlat(unknown.toFlat());
        log.error(
          `${file}: after the loss (${where}): ${this.toGlobal.size} ids mapped; ${unknown.count} local ids neither mapped nor known destroyed (${unknown}) ` +
            `are marked lost: each was destroyed before or lost its record; they answer UNKNOWN_ID, and local ids are handed out from ${this.next} on`,
        );
      },
    });
    this.next = Math.max(this.next, this.file.mark);
  }

  private snapshot(): Record_[] {
    return [{ n: this.next }, ...this.lostIds.toRecords("x"), ...[...this.toGlobal].map(([l, g]) => ({ l, g }))];
  }

  global(local: number): number | undefined {
    return this.toGlobal.get(local);
  }

  local(global: number): number | undefined {
    return this.toLocal.get(global);
  }

  /** True when `local` is not mapped because its record was lost (or it may have been destroyed before the loss). */
  isLost(local: number): boolean {
    return !this.toGlobal.has(local) && this.lostIds.has(local);
  }

  /** Every mapping, local → global (a copy). */
  entries(): Array<[number, number]> {
    return [...this.toGlobal];
  }

  get size(): number {
    return this.toGlobal.size;
  }

  /** The local id the next add gets: above every local id ever handed out. */
  get nextId(): number {
    return this.next;
  }

  /** Maps a new global id to the next local id; durable when the promise resolves. */
  async add(global: number): Promise<number> {
    const local = this.next++;
    // Live only once durable: a failed write leaves no half-made id behind (the number is
    // skipped). The headers' mark moves with the record: a lost record cannot lower it.
    await this.file.append({ l: local, g: global }, true, local + 1);
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
      await this.file.rewrite();
    }
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

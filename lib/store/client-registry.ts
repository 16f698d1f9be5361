/**
 * The client registry (the ClientRegistry interface of types.ts): MemoryClientRegistry keeps
 * the table in memory, FileClientRegistry adds its file.
 *
 * `DATA/clients` (and its copy `clients.mirror`): the global ids and the local broker that
 * owns each, as a RecordFile of `{c: id, o: owner}` (created) and `{d: id}` (destroyed);
 * snapshots add `{n: next}` and `{x: [lo, hi, …]}` (ids whose records were lost).
 *
 * Ids are never handed out twice: the next id is kept as the RecordFile's mark, in the
 * headers of both copies and written with each create, so losing records never lowers it.
 * When records are lost in both copies, every id below the mark that is neither live nor
 * known destroyed is marked lost, for good: it answers UNKNOWN_ID saying so.
 */
import { logger } from "../log.ts";
import { IdRanges } from "./id-ranges.ts";
import { RecordFile, type Record_ } from "./record-file.ts";
import type { ClientRegistry } from "./types.ts";

const COMPACT_MIN_BYTES = 64 * 1024;
const log = logger("store");

/**
 * The table of ids in memory: the whole registry of a memory store, and the state of a file
 * one. A memory store forgets its ids at a restart, while a local broker may still map one
 * of them: so that such an id is not handed out again (to someone else), a fresh table
 * starts at the start time in ms × 1024, above the ids of every earlier run (unless one made
 * more than 1024 ids per ms it ran, or the clock went back).
 */
export class MemoryClientRegistry implements ClientRegistry {
  protected readonly owners = new Map<number, string>();
  /** Ids per owner, so a reconnect or a drain touches only that broker's ids. */
  private readonly byOwner = new Map<string, Set<number>>();
  protected next: number;
  /** Ids whose records were lost (damage in both copies): never live again, never reissued. */
  protected readonly lostIds = new IdRanges();

  constructor(firstId = Date.now() * 1024) {
    this.next = firstId;
  }

  protected set(id: number, owner: string): void {
    this.owners.set(id, owner);
    let ids = this.byOwner.get(owner);
    if (!ids) this.byOwner.set(owner, (ids = new Set()));
    ids.add(id);
  }

  protected unset(id: number): boolean {
    const owner = this.owners.get(id);
    if (owner === undefined) return false;
    this.owners.delete(id);
    const ids = this.byOwner.get(owner)!;
    ids.delete(id);
    if (ids.size === 0) this.byOwner.delete(owner);
    return true;
  }

  countOwnedBy(owner: string): number {
    return this.byOwner.get(owner)?.size ?? 0;
  }

  owner(id: number): string | undefined {
    return this.owners.get(id);
  }

  isLost(id: number): boolean {
    return !this.owners.has(id) && this.lostIds.has(id);
  }

  lost(): number[] {
    return this.lostIds.toFlat();
  }

  ownedBy(broker: string): number[] {
    return [...(this.byOwner.get(broker) ?? [])];
  }

  get size(): number {
    return this.owners.size;
  }

  get nextId(): number {
    return this.next;
  }

  /** Moves the next id above `id`; returns the first id marked lost, or null when `id` was below the next id. */
  protected markLostUpTo(id: number): number | null {
    if (id < this.next) return null;
    const from = this.next;
    this.next = id + 1;
    this.lostIds.add(from, id);
    return from;
  }

  async witness(id: number): Promise<void> {
    this.markLostUpTo(id);
  }

  async create(owner: string): Promise<number> {
    const id = this.next++;
    this.set(id, owner);
    return id;
  }

  async destroy(id: number): Promise<void> {
    this.unset(id);
  }

  async close(): Promise<void> {}
}

/** The registry kept in `DATA/clients` (see the top of this file). */
export class FileClientRegistry extends MemoryClientRegistry {
  private readonly file: RecordFile;
  private garbage = 0;

  constructor(file: string) {
    super(1);
    // Destroys seen in the journal: ids that are accounted for if records are lost.
    const destroyed = new Set<number>();
    this.file = RecordFile.open(file, {
      apply: (r) => {
        if (typeof r.c === "number" && typeof r.o === "string") {
          this.set(r.c, r.o);
          this.next = Math.max(this.next, r.c + 1);
        } else if (typeof r.d === "number") {
          this.unset(r.d);
          destroyed.add(r.d);
          this.garbage++;
        } else if (typeof r.n === "number") this.next = Math.max(this.next, r.n);
        else if (r.x !== undefined) this.lostIds.addFlat(r.x);
      },
      snapshot: () => this.snapshot(),
      mark: () => this.next,
      lost: ({ where, mark }) => {
        this.next = Math.max(this.next, mark);
        const unknown = IdRanges.gaps(1, this.next, [...this.owners.keys(), ...destroyed]);
        this.lostIds.addFlat(unknown.toFlat());
        log.error(
          `${file}: after the loss (${where}): ${this.owners.size} ids live; ${unknown.count} ids neither live nor known destroyed (${unknown}) ` +
            `are marked lost: each was destroyed before or lost its record; they answer UNKNOWN_ID, and ids are handed out from ${this.next} on`,
        );
      },
    });
    this.next = Math.max(this.next, this.file.mark);
  }

  private snapshot(): Record_[] {
    return [{ n: this.next }, ...this.lostIds.toRecords("x"), ...[...this.owners].map(([c, o]) => ({ c, o }))];
  }

  /**
   * Another store shows that `id` was handed out (a subscriber index names it): when it is
   * at or above the next id, the registry lost it and its mark too (both copies damaged,
   * headers included), so the next id moves above it and every id in between is marked
   * lost. Durable when the promise resolves.
   */
  override async witness(id: number): Promise<void> {
    const from = this.markLostUpTo(id);
    if (from === null) return;
    log.error(`${this.file.file}: id ${id} is named elsewhere (a subscriber index) but lies above every id the registry knows; ids ${from}-${id} are marked lost and ids are handed out from ${this.next} on`);
    await this.file.append({ x: [from, id] }, true, this.next);
  }

  /** Allocates a new id for `owner`; durable when the promise resolves. */
  override async create(owner: string): Promise<number> {
    const id = this.next++;
    // Live only once durable: a failed write leaves no half-made id behind (the number is
    // skipped). The headers' mark moves with the record: a lost record cannot lower it.
    await this.file.append({ c: id, o: owner }, true, id + 1);
    this.set(id, owner);
    return id;
  }

  override async destroy(id: number): Promise<void> {
    if (!this.unset(id)) return;
    this.garbage++;
    await this.file.append({ d: id }, true);
    if (this.file.bytes > COMPACT_MIN_BYTES && this.garbage > this.owners.size) {
      this.garbage = 0;
      await this.file.rewrite();
    }
  }

  override async close(): Promise<void> {
    await this.file.close();
  }
}

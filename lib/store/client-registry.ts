/**
 * `DATA/clients`: the global ids and the local broker that owns each, as a RecordFile of
 * `{c: id, o: owner}` (created) and `{d: id}` (destroyed), plus `{n: next}` in snapshots so
 * that an id is never handed out twice, even after compaction.
 */
import { RecordFile } from "./record-file.ts";

const COMPACT_MIN_BYTES = 64 * 1024;

export class ClientRegistry {
  private readonly owners = new Map<number, string>();
  /** Ids per owner, so a reconnect or a drain touches only that broker's ids. */
  private readonly byOwner = new Map<string, Set<number>>();
  private next = 1;
  private readonly file: RecordFile;
  private garbage = 0;

  constructor(file: string) {
    this.file = RecordFile.open(file, (r) => {
      if (typeof r.c === "number" && typeof r.o === "string") {
        this.set(r.c, r.o);
        this.next = Math.max(this.next, r.c + 1);
      } else if (typeof r.d === "number") {
        this.unset(r.d);
        this.garbage++;
      } else if (typeof r.n === "number") this.next = Math.max(this.next, r.n);
    });
  }

  private set(id: number, owner: string): void {
    this.owners.set(id, owner);
    let ids = this.byOwner.get(owner);
    if (!ids) this.byOwner.set(owner, (ids = new Set()));
    ids.add(id);
  }

  private unset(id: number): boolean {
    const owner = this.owners.get(id);
    if (owner === undefined) return false;
    this.owners.delete(id);
    const ids = this.byOwner.get(owner)!;
    ids.delete(id);
    if (ids.size === 0) this.byOwner.delete(owner);
    return true;
  }

  /** How many ids one local broker owns. */
  countOwnedBy(owner: string): number {
    return this.byOwner.get(owner)?.size ?? 0;
  }

  /** The owning local broker of `id`, or undefined when there is no such id. */
  owner(id: number): string | undefined {
    return this.owners.get(id);
  }

  /** Ids owned by one local broker (a copy: safe to hold across awaits). */
  ownedBy(broker: string): number[] {
    return [...(this.byOwner.get(broker) ?? [])];
  }

  get size(): number {
    return this.owners.size;
  }

  /** Allocates a new id for `owner`; durable when the promise resolves. */
  async create(owner: string): Promise<number> {
    const id = this.next++;
    // Live only once durable: a failed write leaves no half-made id behind (the number is skipped).
    await this.file.append({ c: id, o: owner }, true);
    this.set(id, owner);
    return id;
  }

  async destroy(id: number): Promise<void> {
    if (!this.unset(id)) return;
    this.garbage++;
    await this.file.append({ d: id }, true);
    if (this.file.bytes > COMPACT_MIN_BYTES && this.garbage > this.owners.size) {
      this.garbage = 0;
      await this.file.rewrite(() => [{ n: this.next }, ...[...this.owners].map(([c, o]) => ({ c, o }))]);
    }
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

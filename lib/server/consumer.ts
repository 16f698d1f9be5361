/**
 * A consumer: what a client asked for with one `sub` filter. Several consumers of one id may
 * match one topic; the delivery state of (id, topic) stays one Subscription (topic.ts), so a
 * message matched by two filters of one id is delivered once.
 */
import type { ConsumerRecord, ConsumerStore } from "../store/types.ts";
import type { From } from "../wire/messages.ts";
import { isPattern } from "../wire/topic.ts";
import { filterMatches, SubjectTree } from "./subjects.ts";

export interface Consumer {
  /** The global client id. */
  readonly id: number;
  /** A topic name, or a pattern (`*`: one token, `>`: one or more trailing tokens). */
  readonly filter: string;
  /** Where it started in the topics that existed when it was made (`since`: ms since the epoch). */
  readonly from?: From | { since: number };
  /** When it was made (ms since the epoch): a start subscribes the older topics it lacks from there. */
  readonly createdAt?: number;
  /** Queue group (not used yet). */
  readonly group?: string;
  /** How its deliveries are acknowledged (only "cumulative" is served yet). */
  readonly ackPolicy: "cumulative" | "explicit";
  /** Deliveries of a message before it goes to the dead-letter topic (not used yet). */
  readonly maxDeliver?: number;
  readonly deadLetter?: string;
}

/**
 * The consumers of every id, indexed by filter; the patterns also in the subject tree (an id
 * may have very many exact consumers: they are found by their id, never by walking the tree).
 * An exact consumer is implied by its Subscription (the subscriber index keeps it); it is
 * written to the store only when a pattern of the same id also matches its topic, so that
 * unsubscribing one of the two after a restart still knows the other was asked for. Patterns
 * are always written.
 */
export class Consumers {
  private readonly byId = new Map<number, Map<string, Consumer>>();
  /** The patterns of each id (a few), for the overlap and cover checks of that id. */
  private readonly patternsById = new Map<number, Set<Consumer>>();
  private readonly tree = new SubjectTree();
  private readonly stored = new WeakSet<Consumer>();
  /** Writes under way: a second add of the same consumer answers only when the first is durable. */
  private readonly writing = new WeakMap<Consumer, Promise<void>>();

  constructor(private readonly store: ConsumerStore) {}

  /** Reads the stored consumers back; those of ids that `live` rejects (a destroy cut short by a crash) are removed. */
  async load(live: (id: number) => boolean): Promise<void> {
    for (const record of await this.store.list()) {
      if (!live(record.id)) {
        await this.store.remove(record.id, record.filter);
        continue;
      }
      const consumer: Consumer = { ...record, ackPolicy: record.ackPolicy ?? "cumulative" };
      this.insert(consumer);
      this.stored.add(consumer);
    }
  }

  get(id: number, filter: string): Consumer | undefined {
    return this.byId.get(id)?.get(filter);
  }

  /** How many consumers (filters) `id` has. */
  count(id: number): number {
    return this.byId.get(id)?.size ?? 0;
  }

  /** How many patterns `id` has (each counts as one against --max-subscriptions-per-id). */
  patternCount(id: number): number {
    return this.patternsById.get(id)?.size ?? 0;
  }

  /** The number of patterns in the subject tree (exact consumers are not in it). */
  get treeSize(): number {
    return this.tree.size;
  }

  /** True when some consumer of `id` other than `except` matches the topic `name`. */
  covers(id: number, name: string, except?: Consumer): boolean {
    const exact = this.byId.get(id)?.get(name);
    if (exact && exact !== except) return true;
    for (const p of this.patternsById.get(id) ?? []) if (p !== except && filterMatches(p.filter, name)) return true;
    return false;
  }

  /** The ids with a pattern matching the topic `name` (each once). */
  patternIdsMatching(name: string): number[] {
    return [...new Set(this.tree.match(name).map((c) => c.id))];
  }

  /** The patterns matching the topic `name`. */
  patternsMatching(name: string): Consumer[] {
    return this.tree.match(name);
  }

  /** An exact consumer read back from a subscriber index (nothing is written). */
  addImplied(id: number, topic: string): void {
    if (!this.get(id, topic)) this.insert({ id, filter: topic, ackPolicy: "cumulative" });
  }

  /**
   * Adds a consumer (or keeps the one of the same id and filter): in memory at once, so that a
   * topic created meanwhile sees it; durable, where it must be stored, when the promise
   * resolves. Returns false when it existed already. A failed write takes it out again.
   */
  async add(consumer: Consumer): Promise<boolean> {
    const existing = this.get(consumer.id, consumer.filter);
    if (existing) {
      await this.writing.get(existing);
      await this.storeIfOverlapped(existing);
      return false;
    }
    this.insert(consumer);
    try {
      if (isPattern(consumer.filter)) {
        await this.write(consumer);
        // The exact filters of this id that the pattern overlaps are written too.
        for (const other of [...(this.byId.get(consumer.id)?.values() ?? [])]) {
          if (!isPattern(other.filter) && filterMatches(consumer.filter, other.filter)) await this.write(other);
        }
      } else await this.storeIfOverlapped(consumer);
    } catch (err) {
      this.delete(consumer);
      throw err;
    }
    // Removed while it was written (an unsub racing the sub): its record goes too.
    if (this.get(consumer.id, consumer.filter) === undefined && this.stored.has(consumer)) await this.store.remove(consumer.id, consumer.filter);
    return true;
  }

  /** Takes the consumer (id, filter) out of memory (not the store: see forget); undefined when there was none. */
  take(id: number, filter: string): Consumer | undefined {
    const consumer = this.get(id, filter);
    if (consumer) this.delete(consumer);
    return consumer;
  }

  /** Removes a consumer taken out by `take` from the store; durable when this resolves. */
  async forget(consumer: Consumer): Promise<void> {
    await this.writing.get(consumer)?.catch(() => {});
    // A new consumer of the same filter made meanwhile has written its own record over this one.
    if (this.stored.has(consumer) && this.get(consumer.id, consumer.filter) === undefined) await this.store.remove(consumer.id, consumer.filter);
  }

  /** Removes the consumer (id, filter); returns it, or undefined when there was none. */
  async remove(id: number, filter: string): Promise<Consumer | undefined> {
    const consumer = this.take(id, filter);
    if (consumer) await this.forget(consumer);
    return consumer;
  }

  /** Removes every consumer of `id` (destroy). */
  async removeAll(id: number): Promise<void> {
    for (const filter of [...(this.byId.get(id)?.keys() ?? [])]) await this.remove(id, filter);
  }

  /** The filters of `id` (a copy). */
  filtersOf(id: number): string[] {
    return [...(this.byId.get(id)?.keys() ?? [])];
  }

  /** A consumer another server stored (a shared store, lib/server/cluster.ts): in memory now, nothing written. */
  adopt(record: ConsumerRecord): void {
    if (this.get(record.id, record.filter)) return;
    const consumer: Consumer = { ...record, ackPolicy: record.ackPolicy ?? "cumulative" };
    this.insert(consumer);
    this.stored.add(consumer);
  }

  close(): Promise<void> {
    return this.store.close();
  }

  private async storeIfOverlapped(consumer: Consumer): Promise<void> {
    if (isPattern(consumer.filter) || this.stored.has(consumer)) return;
    for (const p of this.patternsById.get(consumer.id) ?? []) {
      if (filterMatches(p.filter, consumer.filter)) return await this.write(consumer);
    }
  }

  private write(consumer: Consumer): Promise<void> {
    if (this.stored.has(consumer)) return Promise.resolve();
    const pending = this.writing.get(consumer);
    if (pending) return pending;
    const record: ConsumerRecord = { id: consumer.id, filter: consumer.filter };
    if (consumer.from !== undefined) record.from = consumer.from;
    if (consumer.createdAt !== undefined) record.createdAt = consumer.createdAt;
    if (consumer.group !== undefined) record.group = consumer.group;
    if (consumer.ackPolicy !== "cumulative") record.ackPolicy = consumer.ackPolicy;
    if (consumer.maxDeliver !== undefined) record.maxDeliver = consumer.maxDeliver;
    if (consumer.deadLetter !== undefined) record.deadLetter = consumer.deadLetter;
    const writing = this.store.put(record).then(
      () => {
        this.stored.add(consumer);
        this.writing.delete(consumer);
      },
      (err) => {
        this.writing.delete(consumer);
        throw err;
      },
    );
    this.writing.set(consumer, writing);
    return writing;
  }

  private insert(consumer: Consumer): void {
    let mine = this.byId.get(consumer.id);
    if (!mine) this.byId.set(consumer.id, (mine = new Map()));
    mine.set(consumer.filter, consumer);
    if (!isPattern(consumer.filter)) return;
    let patterns = this.patternsById.get(consumer.id);
    if (!patterns) this.patternsById.set(consumer.id, (patterns = new Set()));
    patterns.add(consumer);
    this.tree.add(consumer);
  }

  private delete(consumer: Consumer): void {
    const mine = this.byId.get(consumer.id);
    if (mine?.get(consumer.filter) !== consumer) return;
    mine.delete(consumer.filter);
    if (mine.size === 0) this.byId.delete(consumer.id);
    if (!isPattern(consumer.filter)) return;
    const patterns = this.patternsById.get(consumer.id)!;
    patterns.delete(consumer);
    if (patterns.size === 0) this.patternsById.delete(consumer.id);
    this.tree.remove(consumer.id, consumer.filter);
  }
}

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
  /** Queue group (not used yet). */
  readonly group?: string;
  /** How its deliveries are acknowledged (only "cumulative" is served yet). */
  readonly ackPolicy: "cumulative" | "explicit";
  /** Deliveries of a message before it goes to the dead-letter topic (not used yet). */
  readonly maxDeliver?: number;
  readonly deadLetter?: string;
}

/**
 * The consumers of every id, indexed by filter and in the subject tree. An exact consumer is
 * implied by its Subscription (the subscriber index keeps it); it is written to the store
 * only when a pattern of the same id also matches its topic, so that unsubscribing one of the
 * two after a restart still knows the other was asked for. Patterns are always written.
 */
export class Consumers {
  private readonly byId = new Map<number, Map<string, Consumer>>();
  private readonly tree = new SubjectTree();
  private readonly stored = new WeakSet<Consumer>();

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

  /** How many consumers `id` has (what --max-subscriptions-per-id counts). */
  count(id: number): number {
    return this.byId.get(id)?.size ?? 0;
  }

  /** True when some consumer of `id` matches the topic `name`. */
  covers(id: number, name: string): boolean {
    if (this.byId.get(id)?.has(name)) return true;
    return this.tree.match(name).some((c) => c.id === id);
  }

  /** The ids with a pattern matching the topic `name` (each once). */
  patternIdsMatching(name: string): number[] {
    const ids = new Set<number>();
    for (const c of this.tree.match(name)) if (isPattern(c.filter)) ids.add(c.id);
    return [...ids];
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
    if (this.get(consumer.id, consumer.filter)) {
      await this.storeIfOverlapped(this.get(consumer.id, consumer.filter)!);
      return false;
    }
    this.insert(consumer);
    try {
      if (isPattern(consumer.filter)) {
        await this.write(consumer);
        // The exact filters of this id that the pattern overlaps are written too.
        for (const other of this.byId.get(consumer.id)!.values()) {
          if (!isPattern(other.filter) && filterMatches(consumer.filter, other.filter)) await this.write(other);
        }
      } else await this.storeIfOverlapped(consumer);
    } catch (err) {
      this.delete(consumer);
      throw err;
    }
    return true;
  }

  /** Removes the consumer (id, filter); returns it, or undefined when there was none. */
  async remove(id: number, filter: string): Promise<Consumer | undefined> {
    const consumer = this.get(id, filter);
    if (!consumer) return undefined;
    this.delete(consumer);
    if (this.stored.has(consumer)) await this.store.remove(id, filter);
    return consumer;
  }

  /** Removes every consumer of `id` (destroy). */
  async removeAll(id: number): Promise<void> {
    for (const filter of [...(this.byId.get(id)?.keys() ?? [])]) await this.remove(id, filter);
  }

  close(): Promise<void> {
    return this.store.close();
  }

  private async storeIfOverlapped(consumer: Consumer): Promise<void> {
    if (isPattern(consumer.filter) || this.stored.has(consumer)) return;
    if (this.tree.match(consumer.filter).some((c) => c.id === consumer.id && isPattern(c.filter))) await this.write(consumer);
  }

  private async write(consumer: Consumer): Promise<void> {
    if (this.stored.has(consumer)) return;
    const record: ConsumerRecord = { id: consumer.id, filter: consumer.filter };
    if (consumer.group !== undefined) record.group = consumer.group;
    if (consumer.ackPolicy !== "cumulative") record.ackPolicy = consumer.ackPolicy;
    if (consumer.maxDeliver !== undefined) record.maxDeliver = consumer.maxDeliver;
    if (consumer.deadLetter !== undefined) record.deadLetter = consumer.deadLetter;
    await this.store.put(record);
    this.stored.add(consumer);
  }

  private insert(consumer: Consumer): void {
    let mine = this.byId.get(consumer.id);
    if (!mine) this.byId.set(consumer.id, (mine = new Map()));
    mine.set(consumer.filter, consumer);
    this.tree.add(consumer);
  }

  private delete(consumer: Consumer): void {
    const mine = this.byId.get(consumer.id);
    if (mine?.get(consumer.filter) !== consumer) return;
    mine.delete(consumer.filter);
    if (mine.size === 0) this.byId.delete(consumer.id);
    this.tree.remove(consumer.id, consumer.filter);
  }
}

/**
 * What a server does when it shares its store with other servers (PostgreSQL, `storage.shared`;
 * docs/scale-out.md): every server serves every topic and id, so each keeps its in-memory view
 * (topic extents, subscriptions and cursors, ids and owners, patterns) in step with what the
 * others write. The store's events are hints to re-read, never data: a lost one costs a delay
 * until the next event or `resync`, never a message. Nothing here runs for a file or memory store.
 */
import { errorText, logger } from "../log.ts";
import type { ClientRegistry, ConsumerStore, MsgIdRecord, ScheduleStore, SharedStore, StoreEvent } from "../store/types.ts";
import type { Consumers } from "./consumer.ts";
import { GroupMember } from "./group.ts";
import { Subscription, type Topic } from "./topic.ts";
import { isPattern } from "../wire/topic.ts";
import type { Scheduler } from "./scheduler.ts";

const log = logger("server");

/** How often the singleton jobs (scheduler, retention) check who holds them: a dead server's jobs move within this. */
export const JOB_CHECK_MS = 1000;
/**
 * A session this young may be a local broker that failed over, sending again what its last
 * server stored: its publishes are looked up whatever this server heard (an event takes
 * milliseconds; a failover, a reconnect and a hello take longer).
 */
const NEW_SESSION_MS = 2000;
/** A failing re-read is logged at most this often (PostgreSQL away: every event would fail). */
const ERROR_LOG_MS = 10_000;

/** What the server lends the cluster: its maps and the few operations that change them. */
export interface ClusterHost {
  readonly topics: ReadonlyMap<string, Topic>;
  readonly registry: ClientRegistry;
  readonly consumers: Consumers;
  readonly consumerStore: ConsumerStore;
  /** The subscriptions of each id held here. */
  readonly subscriptionsOf: ReadonlyMap<number, ReadonlyMap<string, Subscription>>;
  /** Names of the topics in the store. */
  storedTopics(): Promise<string[]>;
  /** Opens a topic another server created (null: not there); new ones get the subscriptions of matching patterns. */
  openTopic(name: string): Promise<Topic | null>;
  addSubscription(sub: Subscription): void;
  /** Forgets a subscription here only (its record was removed by another server). */
  dropHere(id: number, topic: string): void;
  /** Pushes a subscription to its local broker, when that broker is connected here. */
  pump(sub: Subscription): void;
  /** True when the local broker that owns `id` is connected to this server. */
  connectedHere(id: number): boolean;
  /** Takes the queue group members as the store has them (joined or left through other servers). */
  reloadGroups(): Promise<void>;
}

/** Message ids of publishes to one topic looked up together, and their common answer. */
interface LookupGroup {
  keys: string[];
  answer: PromiseWithResolvers<MsgIdRecord[]>;
}

/** Runs `work` one at a time; a call while it runs makes it run once more after (calls in between fold into that one). */
class Coalesced {
  private running: Promise<void> | null = null;
  private again = false;

  constructor(private readonly work: () => Promise<void>) {}

  run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.work();
        } while (this.again);
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }
}

export class Cluster {
  /** Topics with `appended` events not yet acted on; read once per turn of the event loop, whatever the number of events. */
  private readonly appended = new Set<string>();
  private appendedScheduled = false;
  /** One re-read at a time per topic (extent; subscribers). */
  private readonly refreshes = new Map<string, Coalesced>();
  private readonly reloads = new Map<string, Coalesced>();
  private readonly registryReload: Coalesced;
  private readonly consumersReload: Coalesced;
  private readonly groupsReload: Coalesced;
  private readonly resyncing: Coalesced;
  /** Ids whose consumers changed elsewhere since the last reload of the consumers. */
  private readonly consumersChanged = new Set<number>();
  private lastErrorLog = 0;
  private stopped = false;
  /** Events received and re-reads of topic extents done (stats: batching keeps the second well below the first under load). */
  events = 0;
  refreshed = 0;

  private started = false;
  private scheduleTimer: ReturnType<typeof setInterval> | null = null;
  private schedulePolling = false;

  /** Listens at once: what other servers change while this one loads its state is not missed. */
  constructor(
    private readonly shared: SharedStore,
    private readonly host: ClusterHost,
  ) {
    this.registryReload = new Coalesced(() => this.reloadRegistry());
    this.consumersReload = new Coalesced(() => this.reloadConsumers());
    this.groupsReload = new Coalesced(() => this.host.reloadGroups());
    this.resyncing = new Coalesced(() => this.resyncAll());
    shared.onEvent((event) => {
      if (this.stopped) return;
      if (!this.started) {
        // `start` reads everything again; the dedupe windows are read after this, but not what comes next.
        if (event.kind === "appended") this.foreignAppends.set(event.topic, Date.now());
        return;
      }
      this.events++;
      this.onEvent(event);
    });
  }

  /** Acts on events from now on, and keeps the scheduler's pending messages as the store has them. */
  start(scheduler: Scheduler, schedule: ScheduleStore): void {
    this.started = true;
    // What other servers changed while this one loaded its state is read again.
    void this.catching("cannot re-read the store", () => this.resyncing.run());
    const reload = schedule.reload?.bind(schedule);
    if (!reload) return;
    // The holder delivers what any server accepted; a server holding entries learns which went.
    this.scheduleTimer = setInterval(() => {
      if (this.schedulePolling) return;
      this.schedulePolling = true;
      void this.catching("cannot re-read the schedule", async () => {
        if (scheduler.pending > 0 || (await this.holds("scheduler"))) scheduler.replacePending(await reload());
      }).finally(() => {
        this.schedulePolling = false;
      });
    }, JOB_CHECK_MS);
  }

  stop(): void {
    this.stopped = true;
    if (this.scheduleTimer) clearInterval(this.scheduleTimer);
  }

  /** True while this server holds the singleton job (`scheduler`, `retention`); false when the store cannot say. */
  async holds(job: string): Promise<boolean> {
    try {
      return await this.shared.holds(job);
    } catch (err) {
      this.failed(`cannot check who runs the ${job}`, err);
      return false;
    }
  }

  private onEvent(event: StoreEvent): void {
    switch (event.kind) {
      case "appended": {
        this.foreignAppends.set(event.topic, Date.now());
        const topic = this.host.topics.get(event.topic);
        // This server read that far already (its own append, or an earlier refresh).
        if (topic && topic.log.lastSeq >= event.lastSeq) return;
        this.appended.add(event.topic);
        if (!this.appendedScheduled) {
          this.appendedScheduled = true;
          // After the events already queued: those of one topic then cost one refresh.
          setImmediate(() => this.refreshAppended());
        }
        return;
      }
      case "topic":
        void this.catching(`topic ${event.topic}: cannot open it`, () => this.host.openTopic(event.topic));
        return;
      case "client":
      case "destroyed":
        void this.catching("cannot re-read the client ids", () => this.registryReload.run());
        return;
      case "subscribers":
        void this.catching(`topic ${event.topic}: cannot re-read its subscribers`, () => this.reloadSubscribers(event.topic, event.id));
        return;
      case "consumers":
        this.consumersChanged.add(event.id);
        void this.catching("cannot re-read the consumers", () => this.consumersReload.run());
        return;
      case "groups":
        void this.catching("cannot re-read the queue groups", () => this.groupsReload.run());
        return;
      case "resync":
        // Appends of other servers may have been missed: any topic may hold ids this server's windows lack.
        this.eventsResumedAt = Date.now();
        void this.catching("cannot re-read the store after its events were interrupted", async () => {
          await this.resyncing.run();
          log.info(`store events resumed: ${this.host.topics.size} topics and ${this.host.registry.size} ids read again`);
        });
        return;
    }
  }

  private refreshAppended(): void {
    this.appendedScheduled = false;
    const names = [...this.appended];
    this.appended.clear();
    for (const name of names) void this.catching(`topic ${name}: cannot read what other servers appended`, () => this.refresh(name));
  }

  /** Re-reads a topic's extent (opening it if this server has not yet) and pushes its new messages. */
  private refresh(name: string): Promise<void> {
    let refresh = this.refreshes.get(name);
    if (!refresh) {
      refresh = new Coalesced(async () => {
        const topic = this.host.topics.get(name) ?? (await this.host.openTopic(name));
        if (!topic) return;
        await topic.log.refresh?.();
        this.refreshed++;
        for (const sub of topic.subscriptions.values()) this.host.pump(sub);
      });
      this.refreshes.set(name, refresh);
    }
    return refresh.run();
  }

  /** Re-reads a topic's subscribers and makes this server's subscriptions match; `removed`: an id the event named. */
  private reloadSubscribers(name: string, changed?: number): Promise<void> {
    if (changed !== undefined) (this.changedIds.get(name) ?? this.changedIds.set(name, new Set()).get(name)!).add(changed);
    let reload = this.reloads.get(name);
    if (!reload) {
      reload = new Coalesced(async () => {
        const topic = this.host.topics.get(name) ?? (await this.host.openTopic(name));
        if (!topic) return;
        const changedIds = this.changedIds.get(name);
        this.changedIds.delete(name);
        await topic.index.reload?.();
        await this.match(topic, changedIds);
      });
      this.reloads.set(name, reload);
    }
    return reload.run();
  }

  /** Ids named by `subscribers` events per topic, not yet matched: only these may lose a subscription here. */
  private readonly changedIds = new Map<string, Set<number>>();

  /**
   * Makes the subscriptions of `topic` here match its index as just re-read: new ones are
   * added (from their stored cursor), cursors moved by acks through another server are taken
   * for subscriptions whose broker is not connected here, and those of `removable` ids the
   * index no longer has go. (Only named ids are removed: a subscription being made here is in
   * memory before its record is committed.) Queue group members follow mq_groups (reloadGroups).
   */
  private async match(topic: Topic, removable?: ReadonlySet<number>): Promise<void> {
    const cursors = topic.index.cursors;
    let unknown = false;
    for (const [id, cursor] of cursors) {
      const sub = topic.subscriptions.get(id);
      if (sub) {
        if (!(sub instanceof GroupMember) && cursor > sub.acked && !this.host.connectedHere(id)) {
          sub.acked = cursor;
          sub.rewind();
        }
        continue;
      }
      if (this.host.registry.owner(id) === undefined) {
        unknown = true;
        continue;
      }
      this.addSubscription(topic, id, cursor);
    }
    for (const id of removable ?? []) {
      const sub = topic.subscriptions.get(id);
      if (sub && !(sub instanceof GroupMember) && !cursors.has(id)) {
        this.host.dropHere(id, topic.name);
        // The exact consumer it implied goes with it; a pattern of the id stays (the consumers event says).
        const exact = this.host.consumers.get(id, topic.name);
        if (exact && !this.host.consumers.covers(id, topic.name, exact)) this.host.consumers.take(id, topic.name);
      }
    }
    // Ids made by another server after this one read the registry: read it again, then add them.
    if (unknown) {
      await this.registryReload.run();
      for (const [id, cursor] of topic.index.cursors) {
        if (!topic.subscriptions.has(id) && this.host.registry.owner(id) !== undefined) this.addSubscription(topic, id, cursor);
      }
    }
  }

  private addSubscription(topic: Topic, id: number, cursor: number): void {
    const sub = new Subscription(id, topic, cursor);
    this.host.addSubscription(sub);
    this.host.consumers.addImplied(id, topic.name);
    this.host.pump(sub);
  }

  /** Ids made or destroyed elsewhere: the registry is read again; subscriptions of ids gone are dropped here. */
  private async reloadRegistry(): Promise<void> {
    await this.host.registry.reload?.();
    for (const [id, subs] of [...this.host.subscriptionsOf]) {
      if (this.host.registry.owner(id) !== undefined) continue;
      for (const name of [...subs.keys()]) this.host.dropHere(id, name);
      for (const filter of this.host.consumers.filtersOf(id)) this.host.consumers.take(id, filter);
    }
  }

  /** Patterns made elsewhere are adopted (topics created later match them here too); those of changed ids removed elsewhere go. */
  private async reloadConsumers(): Promise<void> {
    const changed = new Set(this.consumersChanged);
    this.consumersChanged.clear();
    const records = await this.host.consumerStore.list();
    const stored = new Set<string>();
    for (const record of records) {
      stored.add(`${record.id}\u0000${record.filter}`);
      if (this.host.registry.owner(record.id) !== undefined) this.host.consumers.adopt(record);
    }
    for (const id of changed) {
      for (const filter of this.host.consumers.filtersOf(id)) {
        // An exact filter is implied by its subscription; patterns are always stored.
        if (isPattern(filter)) {
          if (!stored.has(`${id}\u0000${filter}`)) this.host.consumers.take(id, filter);
        }
      }
    }
  }

  /** Anything may have been missed: everything is read again. */
  private async resyncAll(): Promise<void> {
    await this.registryReload.run();
    await this.consumersReload.run();
    for (const name of await this.host.storedTopics()) {
      if (!this.host.topics.has(name)) await this.host.openTopic(name);
    }
    for (const topic of [...this.host.topics.values()]) {
      await this.refresh(topic.name);
      await this.reloadSubscribers(topic.name);
    }
    await this.groupsReload.run();
  }

  /**
   * Before a local broker's subscriptions resume here (its hello): it may come from another
   * server that saw later acks and ids, so the registry and the cursors of its ids' topics are
   * read again first.
   */
  async beforeResume(broker: string): Promise<void> {
    await this.registryReload.run();
    // Its queue group members may have joined through another server.
    await this.groupsReload.run();
    const names = new Set<string>();
    for (const id of this.host.registry.ownedBy(broker)) for (const name of this.host.subscriptionsOf.get(id)?.keys() ?? []) names.add(name);
    await Promise.all([...names].map((name) => this.reloadSubscribers(name)));
    // The broker is connected here from now on: its subscriptions start from the cursors just read.
    for (const id of this.host.registry.ownedBy(broker)) {
      for (const sub of this.host.subscriptionsOf.get(id)?.values() ?? []) {
        const cursor = sub.topic.index.cursors.get(id);
        if (cursor !== undefined && cursor > sub.acked && !(sub instanceof GroupMember)) sub.acked = cursor;
      }
    }
  }

  /**
   * True when ids of a publish to `topic` through a session that said hello at `helloAt` may
   * have been stored by another server within the dedupe window (`windowMs`): another server
   * appended to the topic within it (this server heard so, or may have missed it), or the
   * session is new (a local broker that failed over sends again what its last server may have
   * stored, maybe before that server's event arrived). Otherwise this server's window, read
   * from the log at open and kept since, has every id there is: no query.
   */
  mayBeStoredElsewhere(topic: Topic, helloAt: number, windowMs: number): boolean {
    // Behind a lookup in progress a publish waits its turn too (its `after` may name that one).
    if (this.asking.has(topic) || this.lookups.has(topic)) return true;
    const now = Date.now();
    if (now - helloAt < NEW_SESSION_MS) return true;
    return now - Math.max(this.eventsResumedAt, this.foreignAppends.get(topic.name) ?? -Infinity) < windowMs;
  }

  /** When another server last appended to each topic (as heard), for `mayBeStoredElsewhere`. */
  private readonly foreignAppends = new Map<string, number>();
  /** When the events resumed after a loss of the listening connection (anything may have been missed). */
  private eventsResumedAt = -Infinity;

  /**
   * Message ids another server stored in `topic` (its log), among `keys` this server's dedupe
   * window does not have: a publish retried through another server is stored once.
   */
  storedElsewhere(topic: Topic, keys: string[]): Promise<MsgIdRecord[]> {
    // The publishes of a topic that ask in one turn of the event loop share one query (under
    // load many are in flight); each group answers only after the one asked before it, so
    // the publishes of a topic register in the order they came (pub-order.ts).
    let group = this.asking.get(topic);
    if (!group) {
      const created: LookupGroup = { keys: [], answer: Promise.withResolvers<MsgIdRecord[]>() };
      this.asking.set(topic, (group = created));
      setImmediate(() => this.lookUp(topic, created));
    }
    for (const key of keys) group.keys.push(key);
    return group.answer.promise;
  }

  private lookUp(topic: Topic, group: LookupGroup): void {
    this.asking.delete(topic);
    const lookup = group.keys.length > 0 && topic.log.findMsgIds ? topic.log.findMsgIds(group.keys) : Promise.resolve([]);
    const before = this.lookups.get(topic);
    const inOrder = before ? before.then(() => lookup) : lookup;
    inOrder.then(group.answer.resolve, group.answer.reject);
    const tail = inOrder.then(
      () => {},
      () => {},
    );
    this.lookups.set(topic, tail);
    void tail.then(() => {
      if (this.lookups.get(topic) === tail) this.lookups.delete(topic);
    });
  }

  /** The message id lookups of each topic being gathered in this turn. */
  private readonly asking = new Map<Topic, LookupGroup>();
  /** The message id lookups of each topic not yet answered, last one asked. */
  private readonly lookups = new Map<Topic, Promise<void>>();

  /** The retention holder trims with the cursors as stored (acks through other servers), every subscriber included. */
  async beforeTrim(topic: Topic): Promise<void> {
    await topic.log.refresh?.();
    await this.reloadSubscribers(topic.name);
  }

  private async catching(what: string, work: () => Promise<unknown>): Promise<void> {
    try {
      await work();
    } catch (err) {
      this.failed(what, err);
    }
  }

  private failed(what: string, err: unknown): void {
    if (this.stopped) return;
    const now = Date.now();
    if (now - this.lastErrorLog < ERROR_LOG_MS) return;
    this.lastErrorLog = now;
    log.warn(`shared store: ${what}: ${errorText(err)} (read again on the next event, or when the store's events resume; logged at most every ${ERROR_LOG_MS / 1000} s)`);
  }
}

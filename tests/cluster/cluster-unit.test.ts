/**
 * lib/server/cluster.ts on its own: how events become re-reads. The events come from a
 * stand-in for the shared store (the real one, PostgreSQL's LISTEN, is in cluster.test.ts);
 * topics, logs and indexes are the memory store's.
 */
import { expect, test } from "bun:test";
import { Cluster, type ClusterHost } from "../../lib/server/cluster.ts";
import { Consumers } from "../../lib/server/consumer.ts";
import { Subscription, Topic } from "../../lib/server/topic.ts";
import { MemoryTopicStore } from "../../lib/store/memory-store.ts";
import { MemoryConsumerStore } from "../../lib/store/consumer-store.ts";
import { MemorySchedule } from "../../lib/store/schedule.ts";
import type { SharedStore, StoreEvent, TopicLog } from "../../lib/store/types.ts";

/** A shared store whose events the test sends. */
class Events implements SharedStore {
  readonly serverId = "test";
  private listener: (event: StoreEvent) => void = () => {};
  onEvent(listener: (event: StoreEvent) => void): void {
    this.listener = listener;
  }
  send(event: StoreEvent): void {
    this.listener(event);
  }
  async holds(): Promise<boolean> {
    return true;
  }
}

async function fixture() {
  const store = new MemoryTopicStore();
  const opened = (await store.open("t", true))!;
  const topic = new Topic("t", opened.log, opened.subscribers);
  const topics = new Map([["t", topic]]);
  let refreshes = 0;
  // What another server appended shows up in this log only when refreshed.
  (opened.log as TopicLog).refresh = async () => {
    refreshes++;
    await Bun.sleep(5);
  };
  const pumped: number[] = [];
  const owners = new Map<number, string>([[7, "broker-a"]]);
  const subscriptionsOf = new Map<number, Map<string, Subscription>>();
  const host: ClusterHost = {
    topics,
    registry: {
      owner: (id: number) => owners.get(id),
      ownedBy: (b: string) => [...owners].filter(([, o]) => o === b).map(([id]) => id),
      reload: async () => {},
    } as unknown as ClusterHost["registry"],
    consumers: new Consumers(new MemoryConsumerStore()),
    consumerStore: new MemoryConsumerStore(),
    subscriptionsOf,
    storedTopics: async () => [...topics.keys()],
    openTopic: async (name) => topics.get(name) ?? null,
    addSubscription: (sub) => {
      sub.topic.subscriptions.set(sub.id, sub);
      subscriptionsOf.set(sub.id, new Map([[sub.topic.name, sub]]));
    },
    dropHere: (id, name) => {
      topics.get(name)?.subscriptions.delete(id);
      subscriptionsOf.get(id)?.delete(name);
    },
    pump: (sub) => void pumped.push(sub.id),
    connectedHere: () => false,
    reloadGroups: async () => {},
  };
  const events = new Events();
  const cluster = new Cluster(events, host);
  cluster.start({ pending: 0, replacePending: () => true } as never, new MemorySchedule());
  return { events, cluster, topic, host, pumped, refreshes: () => refreshes };
}

test("many appended events of one topic in one turn cost one refresh; events during it, one more", async () => {
  const f = await fixture();
  await Bun.sleep(20); // the resync of the start
  const before = f.refreshes();
  for (let seq = 1; seq <= 200; seq++) f.events.send({ kind: "appended", topic: "t", lastSeq: seq });
  await Bun.sleep(1);
  for (let seq = 201; seq <= 400; seq++) f.events.send({ kind: "appended", topic: "t", lastSeq: seq });
  for (let i = 0; i < 100 && f.refreshes() - before < 2; i++) await Bun.sleep(10);
  await Bun.sleep(30);
  expect(f.refreshes() - before).toBe(2);
  expect(f.cluster.events).toBe(400);
  // An event for what this server has read already (its own append) costs nothing.
  await f.topic.log.append(new Uint8Array([1]), Date.now());
  f.events.send({ kind: "appended", topic: "t", lastSeq: 1 });
  await Bun.sleep(30);
  expect(f.refreshes() - before).toBe(2);
});

test("subscribers events: a subscription made elsewhere appears here from its stored cursor and is pumped; one removed elsewhere goes", async () => {
  const f = await fixture();
  await f.topic.index.add(7, 5);
  f.events.send({ kind: "subscribers", topic: "t", id: 7 });
  for (let i = 0; i < 100 && !f.topic.subscriptions.has(7); i++) await Bun.sleep(5);
  expect(f.topic.subscriptions.get(7)?.acked).toBe(5);
  expect(f.pumped).toContain(7);
  // A cursor moved by acks through another server is taken (its broker is not connected here).
  await f.topic.index.remove(7);
  await f.topic.index.add(7, 9);
  f.events.send({ kind: "subscribers", topic: "t", id: 7 });
  for (let i = 0; i < 100 && f.topic.subscriptions.get(7)?.acked !== 9; i++) await Bun.sleep(5);
  expect(f.topic.subscriptions.get(7)?.acked).toBe(9);
  await f.topic.index.remove(7);
  f.events.send({ kind: "subscribers", topic: "t", id: 7 });
  for (let i = 0; i < 100 && f.topic.subscriptions.has(7); i++) await Bun.sleep(5);
  expect(f.topic.subscriptions.has(7)).toBe(false);
});

test("an id no registry knows (a subscriber row of an unknown id) is not subscribed here", async () => {
  const f = await fixture();
  await f.topic.index.add(99, 1);
  f.events.send({ kind: "subscribers", topic: "t", id: 99 });
  await Bun.sleep(50);
  expect(f.topic.subscriptions.has(99)).toBe(false);
});

test("message ids are looked up in the store only when another server may have stored them: a new session, another server's append, events resumed", async () => {
  const f = await fixture();
  const window = 60_000;
  expect(f.cluster.mayBeStoredElsewhere(f.topic, Date.now(), window)).toBe(true); // a broker that just said hello
  const old = Date.now() - 10_000;
  expect(f.cluster.mayBeStoredElsewhere(f.topic, old, window)).toBe(false); // only this server wrote it: the window has every id
  f.events.send({ kind: "appended", topic: "t", lastSeq: 0 });
  expect(f.cluster.mayBeStoredElsewhere(f.topic, old, window)).toBe(true);
  expect(f.cluster.mayBeStoredElsewhere(f.topic, old, 0)).toBe(false); // past the window: not deduplicated anyway

  const g = await fixture();
  expect(g.cluster.mayBeStoredElsewhere(g.topic, old, window)).toBe(false);
  g.events.send({ kind: "resync" });
  expect(g.cluster.mayBeStoredElsewhere(g.topic, old, window)).toBe(true);
});

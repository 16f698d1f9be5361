/**
 * What the HTTP API and /metrics read of a running server (lib/http/): topics with their
 * counters, each subscriber's cursor and backlog, the connected local brokers. Built on
 * demand (a scrape, an API call) by walking the server's maps; nothing here runs per message.
 */
import type { ServerStats } from "../metrics.ts";
import type { ClientRegistry } from "../store/types.ts";
import type { Consumers } from "./consumer.ts";
import { GroupMember } from "./group.ts";
import type { Topic } from "./topic.ts";

export interface ConsumerView {
  /** The global client id. */
  id: number;
  topic: string;
  /** Queue group name; null for a plain subscription (and for a private explicit one). */
  group: string | null;
  /** What the id subscribed with: the topic name or the pattern that matched it. */
  filter: string;
  /** Newest seq acknowledged, all before it too (0: none yet). */
  ackedSeq: number;
  /** headSeq − ackedSeq: messages stored and not yet acknowledged by this subscriber. */
  backlog: number;
  /** Messages pushed to its local broker and not yet acknowledged. */
  pending: number;
  /** Identity of the local broker that owns the id. */
  broker: string | null;
}

export interface TopicView {
  name: string;
  /** Messages stored now. */
  messages: number;
  /** Newest seq stored (0: none ever) and oldest seq still stored. */
  headSeq: number;
  firstSeq: number;
  /** Messages lost to damaged storage. */
  lost: number;
  /** Since the server started. */
  published: number;
  publishedBytes: number;
  delivered: number;
  acked: number;
  consumers: ConsumerView[];
}

export interface BrokerView {
  /** Its identity. */
  name: string;
  address: string;
  /** When its session started (ms since the epoch). */
  connectedAt: number;
  /** Client ids it owns. */
  ids: number;
  /** Messages pushed to it and not yet acknowledged, all its subscriptions. */
  inFlight: number;
}

export interface ServerView {
  /** False once the server is stopping. */
  serving: boolean;
  stats: ServerStats;
  topics: TopicView[];
  brokers: BrokerView[];
}

/** A connected local broker, as the server's session map holds it. */
export interface SessionLike {
  broker: string;
  address: string;
  connectedAt: number;
}

export function buildView(state: {
  serving: boolean;
  stats: ServerStats;
  topics: Iterable<Topic>;
  sessions: Iterable<SessionLike>;
  registry: ClientRegistry;
  consumers: Consumers;
}): ServerView {
  const inFlightOf = new Map<string, number>();
  const topics: TopicView[] = [];
  for (const t of state.topics) {
    const headSeq = t.log.lastSeq;
    const consumers: ConsumerView[] = [];
    for (const sub of t.subscriptions.values()) {
      const ackedSeq = sub.acked - 1;
      const broker = state.registry.owner(sub.id) ?? null;
      const pending = sub.inFlight;
      if (broker !== null) inFlightOf.set(broker, (inFlightOf.get(broker) ?? 0) + pending);
      consumers.push({
        id: sub.id,
        topic: t.name,
        group: sub instanceof GroupMember ? (sub.group.name ?? null) : null,
        filter: filterOf(state.consumers, sub.id, t.name),
        ackedSeq,
        backlog: Math.max(0, headSeq - ackedSeq),
        pending,
        broker,
      });
    }
    consumers.sort((a, b) => a.id - b.id);
    const c = t.counts;
    topics.push({ name: t.name, messages: t.log.count, headSeq, firstSeq: t.log.firstSeq, lost: t.log.lost, published: c.published, publishedBytes: c.publishedBytes, delivered: c.delivered, acked: c.acked, consumers });
  }
  topics.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const brokers: BrokerView[] = [];
  for (const s of state.sessions) {
    brokers.push({ name: s.broker, address: s.address, connectedAt: s.connectedAt, ids: state.registry.ownedBy(s.broker).length, inFlight: inFlightOf.get(s.broker) ?? 0 });
  }
  brokers.sort((a, b) => a.connectedAt - b.connectedAt);
  return { serving: state.serving, stats: state.stats, topics, brokers };
}

/** The filter that subscribed `id` to `topic`: the topic itself, or the first of its patterns that matches. */
function filterOf(consumers: Consumers, id: number, topic: string): string {
  if (consumers.get(id, topic)) return topic;
  return consumers.patternsMatching(topic).find((c) => c.id === id)?.filter ?? topic;
}

/**
 * The JSON API of the HTTP endpoint (docs/http.md): what the dashboard and scripts read.
 * Server: /api/topics, /api/topics/NAME, /api/consumers, /api/brokers, /api/server.
 * Local broker: /api/local. Each answer is built from a fresh view of the daemon.
 */
import type { LocalStats } from "../metrics.ts";
import type { ConsumerView, ServerView, TopicView } from "../server/view.ts";
import { topicProblem } from "../wire/topic.ts";
import type { Rates } from "./rates.ts";

/** An answer: the status and the JSON body. */
export interface JsonAnswer {
  status: number;
  body: unknown;
}

const ok = (body: unknown): JsonAnswer => ({ status: 200, body });
export const problem = (status: number, message: string): JsonAnswer => ({ status, body: { error: message } });

function topicSummary(t: TopicView, rates: Rates) {
  return {
    name: t.name,
    messages: t.messages,
    headSeq: t.headSeq,
    firstSeq: t.firstSeq,
    subscribers: t.consumers.length,
    bytes: t.publishedBytes,
    publishedTotal: t.published,
    deliveredTotal: t.delivered,
    ackedTotal: t.acked,
    rate: rates.rate(t.name),
    backlog: t.consumers.reduce((n, c) => Math.max(n, c.backlog), 0),
    lost: t.lost,
  };
}

function consumerOf(c: ConsumerView) {
  return { id: c.id, topic: c.topic, group: c.group, filter: c.filter, ackedSeq: c.ackedSeq, backlog: c.backlog, pending: c.pending, broker: c.broker };
}

/** The answer to GET `path` on a server; null: not an API path. */
export function serverApi(path: string, view: (topic?: string) => ServerView, rates: Rates): JsonAnswer | null {
  if (path.startsWith("/api/topics")) rates.wake();
  if (path === "/api/topics") return ok({ topics: view().topics.map((t) => topicSummary(t, rates)) });
  if (path.startsWith("/api/topics/")) {
    let name: string;
    try {
      name = decodeURIComponent(path.slice("/api/topics/".length));
    } catch {
      return problem(400, `bad topic name in ${JSON.stringify(path)}: not valid percent-encoding`);
    }
    const bad = topicProblem(name);
    if (bad) return problem(400, `bad topic name ${JSON.stringify(name)}: ${bad}`);
    const t = view(name).topics[0];
    if (!t) return problem(404, `no topic ${JSON.stringify(name)} on this server; GET /api/topics lists them`);
    return ok({ ...topicSummary(t, rates), consumers: t.consumers.map(consumerOf) });
  }
  if (path === "/api/consumers") return ok({ consumers: view().topics.flatMap((t) => t.consumers.map(consumerOf)) });
  if (path === "/api/brokers") return ok({ brokers: view().brokers.map((b) => ({ ...b, connectedAt: new Date(b.connectedAt).toISOString() })) });
  if (path === "/api/server") return ok({ server: view().stats });
  return null;
}

export interface LocalState {
  stats: LocalStats;
  connected: boolean;
  serverAddress: string;
  ids: Array<{ id: number; globalId: number | null; pending: number; bytes: number }>;
}

/** The answer to GET `path` on a local broker; null: not an API path. */
export function localApi(path: string, state: () => LocalState): JsonAnswer | null {
  if (path === "/api/local") {
    const s = state();
    return ok({ local: s.stats, server: s.connected ? "connected" : "unreachable", serverAddress: s.serverAddress, ids: s.ids });
  }
  if (path === "/api/topics" || path.startsWith("/api/topics/") || path === "/api/consumers" || path === "/api/brokers" || path === "/api/server") {
    return problem(404, `${path} is served by the server's --http, not by a local broker's; GET /api/local here`);
  }
  return null;
}

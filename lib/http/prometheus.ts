/**
 * GET /metrics: the Prometheus text exposition format (version 0.0.4) of a server or a local
 * broker. The daemons' totals come from their declarations in lib/metrics.ts (kind, unit,
 * help); the per-topic and per-subscriber series from the server's view (lib/server/view.ts);
 * the histograms from lib/histogram.ts. Names are `mq_…` with the unit in the name (`_total`,
 * `_bytes`, `_seconds`). docs/http.md lists every family.
 */
import type { Histogram } from "../histogram.ts";
import type { Metrics } from "../metrics.ts";
import { LOCAL_METRICS, SERVER_METRICS, type LocalStats } from "../metrics.ts";
import type { ServerView, TopicView } from "../server/view.ts";

/** The label value that sums the topics past --metrics-max-topics. */
export const OTHER_TOPICS = "_other";

/** Builds one exposition: `family` once per metric name, then its samples. */
export class PromText {
  private readonly lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Labels | undefined, value: number | boolean): void {
    this.lines.push(`${name}${labelText(labels)} ${formatNumber(value)}`);
  }

  /** A histogram's series: cumulative `_bucket`s ending with +Inf, then `_sum` and `_count`. */
  histogram(name: string, help: string, h: Histogram): void {
    this.family(name, "histogram", help);
    const cumulative = h.cumulative();
    h.bounds.forEach((le, i) => this.sample(`${name}_bucket`, { le: String(le) }, cumulative[i]!));
    this.sample(`${name}_bucket`, { le: "+Inf" }, cumulative[h.bounds.length]!);
    this.sample(`${name}_sum`, undefined, h.sum);
    this.sample(`${name}_count`, undefined, h.count);
  }

  /** The totals of a stats section (`mq_<section>_…`), by their declarations. */
  section(section: string, metrics: Metrics, stats: Record<string, unknown>): void {
    for (const [key, m] of Object.entries(metrics)) {
      const value = stats[key];
      if (value === undefined || value === null) continue;
      const name = metricName(section, key, m.kind, m.unit);
      this.family(name, m.kind === "counter" ? "counter" : "gauge", m.help);
      if (m.kind === "info") this.sample(name, { [key]: String(value) }, 1);
      else if (m.labels) {
        for (const entry of value as Array<Record<string, unknown>>) {
          const labels: Labels = {};
          for (const l of m.labels) if (entry[l] !== undefined) labels[l] = String(entry[l]);
          this.sample(name, labels, entry[m.field!] as number);
        }
      } else this.sample(name, undefined, value as number | boolean);
    }
  }

  text(): string {
    return this.lines.length > 0 ? `${this.lines.join("\n")}\n` : "";
  }
}

type Labels = Record<string, string>;

/**
 * `mq_<section>_<key>` with the unit in the name: seconds as `_seconds` (`uptime_s` →
 * `uptime_seconds`), bytes as `_bytes`, counters ending in `_total`, info metrics in `_info`.
 */
export function metricName(section: string, key: string, kind: string, unit: string): string {
  let name = `mq_${section}_${key}`;
  if (unit === "seconds") name = name.replace(/_s$/, "") + (name.endsWith("_seconds") ? "" : "_seconds");
  if (unit === "bytes" && !/_bytes(_|$)/.test(name)) name += "_bytes";
  if (kind === "info") return `${name}_info`;
  if (kind === "counter" && !name.endsWith("_total")) name += "_total";
  return name;
}

/**
 * Which topics get series of their own: the first `max` seen, kept across scrapes (a series
 * must not jump between a topic and `_other`); the rest are summed under topic="_other".
 */
export class TopicCap {
  private readonly admitted = new Set<string>();

  constructor(readonly max: number) {}

  has(topic: string): boolean {
    if (this.admitted.has(topic)) return true;
    if (this.admitted.size >= this.max) return false;
    this.admitted.add(topic);
    return true;
  }

  /** Forgets topics that no longer exist, so that their room goes to others. */
  keepOnly(existing: ReadonlySet<string>): void {
    for (const t of this.admitted) if (!existing.has(t)) this.admitted.delete(t);
  }
}

export function serverMetrics(view: ServerView, cap: TopicCap, fsync: Histogram): string {
  const p = new PromText();
  p.section("server", SERVER_METRICS, view.stats as unknown as Record<string, unknown>);
  p.histogram("mq_fsync_seconds", "Time of each fsync of a topic file by the group commit (--fsync always), seconds.", fsync);

  cap.keepOnly(new Set(view.topics.map((t) => t.name)));
  const own: TopicView[] = [];
  let other: TopicView | null = null;
  for (const t of view.topics) {
    if (cap.has(t.name)) own.push(t);
    else other = sumInto(other, t);
  }
  const rows = other ? [...own, other] : own;
  const perTopic: Array<[string, "counter" | "gauge", string, (t: TopicView) => number]> = [
    ["mq_topic_published_messages_total", "counter", "Messages stored in the topic since the server started (duplicates not counted).", (t) => t.published],
    ["mq_topic_published_bytes_total", "counter", "Payload bytes of the messages stored since the server started.", (t) => t.publishedBytes],
    ["mq_topic_delivered_messages_total", "counter", "Messages of the topic pushed to local brokers (a re-send after a reconnect counts again).", (t) => t.delivered],
    ["mq_topic_acked_messages_total", "counter", "Messages of the topic acknowledged by local brokers.", (t) => t.acked],
    ["mq_topic_messages", "gauge", "Messages stored in the topic now.", (t) => t.messages],
    ["mq_topic_head_seq", "gauge", "Newest seq stored in the topic (0: none).", (t) => t.headSeq],
    ["mq_topic_lost_messages", "gauge", "Messages of the topic lost to damaged storage (kept across restarts).", (t) => t.lost],
    ["mq_topic_subscribers", "gauge", "Subscribers of the topic.", (t) => t.consumers.length],
  ];
  for (const [name, type, help, value] of perTopic) {
    p.family(name, type, help);
    for (const t of rows) p.sample(name, { topic: t.name }, value(t));
  }

  const subscriberSeries: Array<[string, string, (c: TopicView["consumers"][number]) => number]> = [
    ["mq_subscriber_backlog_messages", "Messages stored and not yet acknowledged by the subscriber: head seq − acknowledged seq.", (c) => c.backlog],
    ["mq_subscriber_pending_messages", "Messages pushed to the subscriber's local broker and not yet acknowledged.", (c) => c.pending],
  ];
  for (const [name, help, value] of subscriberSeries) {
    p.family(name, "gauge", help);
    for (const t of own) {
      for (const c of t.consumers) p.sample(name, c.group === null ? { topic: t.name, id: String(c.id) } : { topic: t.name, id: String(c.id), group: c.group }, value(c));
    }
    if (other) p.sample(name, { topic: OTHER_TOPICS, id: OTHER_TOPICS }, other.consumers.reduce((n, c) => n + value(c), 0));
  }
  return p.text();
}

/** `acc` plus `t`: the `_other` row (its consumers listed, to be summed). */
function sumInto(acc: TopicView | null, t: TopicView): TopicView {
  if (!acc) return { ...t, name: OTHER_TOPICS, consumers: [...t.consumers] };
  acc.published += t.published;
  acc.publishedBytes += t.publishedBytes;
  acc.delivered += t.delivered;
  acc.acked += t.acked;
  acc.messages += t.messages;
  acc.headSeq = Math.max(acc.headSeq, t.headSeq);
  acc.lost += t.lost;
  acc.consumers.push(...t.consumers);
  return acc;
}

export function localMetrics(stats: LocalStats, latency: { endToEnd: Histogram; publishToAck: Histogram }): string {
  const p = new PromText();
  p.section("local", LOCAL_METRICS, stats as unknown as Record<string, unknown>);
  p.histogram("mq_local_end_to_end_seconds", "From the server's append of a message to its hand-over to a client by this local broker (clocks of two hosts may differ), seconds.", latency.endToEnd);
  p.histogram("mq_local_publish_to_ack_seconds", "From the server's append of a message to its acknowledgement by the client, seconds.", latency.publishToAck);
  return p.text();
}

function formatNumber(v: number | boolean): string {
  if (typeof v === "boolean") return v ? "1" : "0";
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function labelText(labels: Labels | undefined): string {
  if (!labels) return "";
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length > 0 ? `{${parts.join(",")}}` : "";
}

/** HELP text: backslash and newline escaped. */
function escapeHelp(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** A label value: backslash, double quote and newline escaped. */
export function escapeLabel(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/**
 * The metrics registry (lib/metrics.ts): declarations, the counters object the daemons
 * increment in place, and the Prometheus text of `render`.
 */
import { describe, expect, test } from "bun:test";
import { counter, defineCounters, flag, gauge, gaugeOrNull, info, labelledCounter, LOCAL_COUNTERS, LOCAL_METRICS, optionalGauge, render, SERVER_COUNTERS, SERVER_METRICS, type Metrics } from "../lib/metrics.ts";

describe("declarations", () => {
  test("every metric has a kind, a help text, and a name Prometheus accepts", () => {
    for (const metrics of [SERVER_METRICS, LOCAL_METRICS] as Metrics[]) {
      for (const [name, m] of Object.entries(metrics)) {
        expect({ name, ok: /^[a-z_][a-z0-9_]*$/.test(name) }).toEqual({ name, ok: true });
        expect(["counter", "gauge", "info"]).toContain(m.kind);
        expect(m.help.length).toBeGreaterThan(10);
      }
    }
  });

  test("the counters of each daemon are declared in its stats, in one block", () => {
    const serverNames = Object.keys(SERVER_METRICS);
    const at = serverNames.indexOf("published");
    expect(serverNames.slice(at, at + Object.keys(SERVER_COUNTERS).length)).toEqual(Object.keys(SERVER_COUNTERS));
    for (const name of Object.keys(LOCAL_COUNTERS)) expect(Object.keys(LOCAL_METRICS)).toContain(name);
  });
});

describe("defineCounters", () => {
  test("a plain object, every declared counter at 0, incremented in place", () => {
    const counters = defineCounters(SERVER_COUNTERS);
    expect(counters).toEqual({ published: 0, duplicates: 0, delivered: 0, fanout_shared: 0, acked: 0, accepted: 0, rejected: 0, expired: 0, dead_lettered: 0, pattern_skipped: 0, dead_letters_dropped: 0 });
    counters.published += 3;
    counters.acked++;
    expect({ ...counters }).toMatchObject({ published: 3, acked: 1 });
    expect(Object.keys(defineCounters(LOCAL_COUNTERS))).toEqual(["received", "delivered", "pushed", "duplicates", "forwarded", "reconnects", "failovers", "expired"]);
  });

  test("a gauge or a labelled counter is refused as a counter", () => {
    expect(() => defineCounters({ open: gauge("files", "Files open now.") })).toThrow("open is not declared as a plain counter");
    expect(() => defineCounters({ drops: labelledCounter<{ topic: string; n: number }>(["topic"], "n", "messages", "Per topic.") as never })).toThrow("drops is not declared");
  });
});

describe("render (Prometheus text exposition format)", () => {
  const metrics = {
    uptime_s: gauge("seconds", "Seconds since the start."),
    published: counter("messages", "Messages stored."),
    identity: info('The "name", with \\ and\na newline.'),
    connected: flag("Up."),
    rss_bytes: gaugeOrNull("bytes", "RSS."),
    open_files: optionalGauge("files", "Open."),
    dropped: labelledCounter<{ global_id: number; id?: number; topic: string; dropped: number }>(["global_id", "id", "topic"], "dropped", "messages", "Per subscriber."),
  } satisfies Metrics;

  test("HELP and TYPE per metric, counters with _total, info as a label, booleans as 1/0, one series per labelled entry", () => {
    const text = render("server", metrics, {
      uptime_s: 12,
      published: 5,
      identity: 'a"b\\c\nd',
      connected: true,
      rss_bytes: 1024,
      dropped: [
        { global_id: 7, id: 2, topic: "orders", dropped: 3 },
        { global_id: 9, topic: 'we"ird', dropped: 1 },
      ],
    });
    expect(text).toBe(
      [
        "# HELP mq_server_uptime_s Seconds since the start.",
        "# TYPE mq_server_uptime_s gauge",
        "mq_server_uptime_s 12",
        "# HELP mq_server_published_total Messages stored.",
        "# TYPE mq_server_published_total counter",
        "mq_server_published_total 5",
        '# HELP mq_server_identity_info The "name", with \\\\ and\\na newline.',
        "# TYPE mq_server_identity_info gauge",
        'mq_server_identity_info{identity="a\\"b\\\\c\\nd"} 1',
        "# HELP mq_server_connected Up.",
        "# TYPE mq_server_connected gauge",
        "mq_server_connected 1",
        "# HELP mq_server_rss_bytes RSS.",
        "# TYPE mq_server_rss_bytes gauge",
        "mq_server_rss_bytes 1024",
        "# HELP mq_server_dropped_total Per subscriber.",
        "# TYPE mq_server_dropped_total counter",
        'mq_server_dropped_total{global_id="7",id="2",topic="orders"} 3',
        'mq_server_dropped_total{global_id="9",topic="we\\"ird"} 1',
        "",
      ].join("\n"),
    );
  });

  test("unknown (null) and absent values are left out; keys not declared are not rendered", () => {
    const text = render("local", metrics, { rss_bytes: null, connected: false, stray: 5 });
    expect(text).toBe("# HELP mq_local_connected Up.\n# TYPE mq_local_connected gauge\nmq_local_connected 0\n");
    expect(render("local", metrics, {})).toBe("");
  });

  test("a whole stats answer of the server renders every declared field it holds", () => {
    const counters = defineCounters(SERVER_COUNTERS);
    counters.published = 4;
    const stats = { uptime_s: 1, topics: 2, max_topics: 10, ids: 1, sessions: 1, connections: 1, ...counters, dedupe_keys: 0, dedupe_evicted: 0, lost: 0, retention_dropped: [], rss_bytes: 1 };
    const text = render("server", SERVER_METRICS, stats);
    expect(text).toContain("mq_server_published_total 4\n");
    expect(text).toContain("# TYPE mq_server_retention_dropped_total counter\n");
    expect(text).not.toContain("open_files"); // absent: no file store
    // Every line is a comment or `name{labels} value`.
    for (const line of text.trimEnd().split("\n")) expect(line).toMatch(/^(# (HELP|TYPE) mq_\w+ .+|mq_\w+(\{.*\})? \S+)$/);
  });
});

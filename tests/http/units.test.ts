/**
 * The pieces of the HTTP endpoint, without a daemon: the histogram, metric names, a stats
 * section by its declarations, the label cap, label escaping (read back by the strict
 * parser), rates, and the config-file reader.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Histogram } from "../../lib/histogram.ts";
import { metricName, PromText, TopicCap } from "../../lib/http/prometheus.ts";
import { counter, defineCounters, flag, gauge, gaugeOrNull, info, labelledCounter, optionalGauge, SERVER_COUNTERS, SERVER_METRICS, type Metrics } from "../../lib/metrics.ts";
import { Rates } from "../../lib/http/rates.ts";
import { configFileArgs, configFileOf } from "../../lib/cli/config-file.ts";
import type { OptionDef } from "../../lib/cli/help.ts";
import { tmpDir } from "../e2e/harness.ts";
import { parseProm, valueOf } from "./prom.ts";

describe("Histogram", () => {
  test("each observation in the first bucket whose bound it does not pass; cumulative counts end with the total", () => {
    const h = new Histogram([0.1, 1, 10]);
    for (const v of [0.05, 0.1, 0.5, 5, 50, -1]) h.observe(v);
    expect([...h.counts]).toEqual([3, 1, 1, 1]); // -1 counts as 0
    expect(h.cumulative()).toEqual([3, 4, 5, 6]);
    expect(h.count).toBe(6);
    expect(h.sum).toBeCloseTo(55.65);
  });

  test("several observations of one value at once count as that many", () => {
    const once = new Histogram([0.1, 1, 10]);
    const each = new Histogram([0.1, 1, 10]);
    for (const [v, n] of [[0.05, 3], [5, 2], [-1, 4], [50, 1]] as const) {
      once.observe(v, n);
      for (let k = 0; k < n; k++) each.observe(v);
    }
    expect([...once.counts]).toEqual([...each.counts]);
    expect([once.count, once.sum]).toEqual([each.count, each.sum]);
    expect([...once.counts]).toEqual([7, 0, 2, 1]);
  });

  test("rendered as a Prometheus histogram the strict parser accepts", () => {
    const h = new Histogram([0.5, 2]);
    h.observe(1);
    const p = new PromText();
    p.histogram("mq_x_seconds", "X.", h);
    const e = parseProm(p.text());
    expect(valueOf(e, "mq_x_seconds_bucket", { le: "0.5" })).toBe(0);
    expect(valueOf(e, "mq_x_seconds_bucket", { le: "+Inf" })).toBe(1);
    expect(valueOf(e, "mq_x_seconds_count")).toBe(1);
  });
});

describe("names and labels", () => {
  test("units in the name: seconds, bytes, _total on counters, _info on info", () => {
    expect(metricName("server", "uptime_s", "gauge", "seconds")).toBe("mq_server_uptime_seconds");
    expect(metricName("server", "published", "counter", "messages")).toBe("mq_server_published_total");
    expect(metricName("local", "rss_bytes", "gauge", "bytes")).toBe("mq_local_rss_bytes");
    expect(metricName("local", "buffered_bytes_max_id", "gauge", "bytes")).toBe("mq_local_buffered_bytes_max_id");
    expect(metricName("server", "scheduled_bytes", "gauge", "bytes")).toBe("mq_server_scheduled_bytes");
    expect(metricName("local", "identity", "info", "")).toBe("mq_local_identity_info");
  });

  test('label values with a quote, a backslash and a newline are escaped, and read back the same', () => {
    const p = new PromText();
    p.family("mq_t", "gauge", 'Help with \\ and\na newline.');
    const odd = 'a"b\\c\nd';
    p.sample("mq_t", { topic: odd }, 1);
    const text = p.text();
    expect(text).toContain('mq_t{topic="a\\"b\\\\c\\nd"} 1');
    expect(text).toContain("# HELP mq_t Help with \\\\ and\\na newline.");
    expect(parseProm(text).samples[0]!.labels.topic).toBe(odd);
  });

  test("the strict parser refuses a malformed line and a sample without # TYPE", () => {
    expect(() => parseProm("# TYPE mq_a gauge\nmq_a{topic=\"x} 1\n")).toThrow("bad labels");
    expect(() => parseProm("mq_b 1\n")).toThrow("no # TYPE");
    expect(() => parseProm("# TYPE mq_c gauge\nmq_c one\n")).toThrow("bad value");
  });
});

/** The text PromText.section makes of one stats section (the totals of /metrics). */
function sectionText(section: string, metrics: Metrics, stats: Record<string, unknown>): string {
  const p = new PromText();
  p.section(section, metrics, stats);
  return p.text();
}

describe("PromText.section (a stats answer by its declarations)", () => {
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
    const text = sectionText("server", metrics, {
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
        "# HELP mq_server_uptime_seconds Seconds since the start.",
        "# TYPE mq_server_uptime_seconds gauge",
        "mq_server_uptime_seconds 12",
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
    const text = sectionText("local", metrics, { rss_bytes: null, connected: false, stray: 5 });
    expect(text).toBe("# HELP mq_local_connected Up.\n# TYPE mq_local_connected gauge\nmq_local_connected 0\n");
    expect(sectionText("local", metrics, {})).toBe("");
  });

  test("a whole stats answer of the server renders every declared field it holds", () => {
    const counters = defineCounters(SERVER_COUNTERS);
    counters.published = 4;
    const stats = { uptime_s: 1, topics: 2, max_topics: 10, ids: 1, sessions: 1, connections: 1, ...counters, dedupe_keys: 0, dedupe_evicted: 0, lost: 0, retention_dropped: [], rss_bytes: 1 };
    const text = sectionText("server", SERVER_METRICS, stats);
    expect(text).toContain("mq_server_published_total 4\n");
    expect(text).toContain("# TYPE mq_server_retention_dropped_total counter\n");
    expect(text).not.toContain("open_files"); // absent: no file store
    // Every line is a comment or `name{labels} value`.
    for (const line of text.trimEnd().split("\n")) expect(line).toMatch(/^(# (HELP|TYPE) mq_\w+ .+|mq_\w+(\{.*\})? \S+)$/);
  });
});

describe("TopicCap", () => {
  test("the first N topics seen keep their series across scrapes; a topic gone gives its room back", () => {
    const cap = new TopicCap(2);
    expect(["a", "b", "c"].map((t) => cap.has(t))).toEqual([true, true, false]);
    // A later scrape: the same answer (a series never jumps to _other).
    expect(["c", "a", "b"].map((t) => cap.has(t))).toEqual([false, true, true]);
    cap.keepOnly(new Set(["b", "c"]));
    expect(cap.has("c")).toBe(true);
  });

  test("a cap of 0: every topic in _other", () => {
    expect(new TopicCap(0).has("a")).toBe(false);
  });
});

describe("Rates", () => {
  test("messages per second between the oldest and the newest sample; 0 with one sample; a new topic counts from 0", () => {
    const r = new Rates();
    r.sample(0, [{ name: "t", counts: { published: 10 } }]);
    expect(r.rate("t")).toBe(0);
    r.sample(2000, [{ name: "t", counts: { published: 30 } }, { name: "new", counts: { published: 4 } }]);
    expect(r.rate("t")).toBe(10);
    expect(r.rate("new")).toBe(2);
    expect(r.rate("absent")).toBe(0);
  });
});

describe("config file", () => {
  const defs: Record<string, OptionDef> = {
    listen: { type: "string" },
    insecure: { type: "boolean" },
    header: { type: "string", repeatable: true },
    topic: { type: "positional" },
    config: { type: "string" },
  };

  test("--config FILE and --config=FILE are found; the last one counts; nothing after --", () => {
    expect(configFileOf(["server", "--config", "a.toml"])).toBe("a.toml");
    expect(configFileOf(["server", "--config=b.json", "--config", "c.toml"])).toBe("c.toml");
    expect(configFileOf(["server", "--", "--config", "x"])).toBeUndefined();
  });

  test("TOML and JSON become flags; numbers as written; lists for repeatable options", () => {
    const dir = tmpDir();
    try {
      const toml = path.join(dir, "a.toml");
      fs.writeFileSync(toml, 'listen = "0.0.0.0:7600"\ninsecure = true\nheader = ["a=1", "b=2"]\n');
      expect(configFileArgs(toml, "server", defs)).toEqual({ words: ["--listen=0.0.0.0:7600", "--insecure=true", "--header=a=1", "--header=b=2"], keys: ["listen", "insecure", "header"] });
      const json = path.join(dir, "a.json");
      fs.writeFileSync(json, '{"listen": 7600}');
      expect(configFileArgs(json, "server", defs).words).toEqual(["--listen=7600"]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a positional, --config itself, a table as a value, and a top-level list are refused", () => {
    const dir = tmpDir();
    try {
      const write = (text: string) => {
        const f = path.join(dir, `${Math.random()}.json`);
        fs.writeFileSync(f, text);
        return f;
      };
      expect(() => configFileArgs(write('{"topic": "t"}'), "server", defs)).toThrow('unknown key "topic"');
      expect(() => configFileArgs(write('{"config": "other.toml"}'), "server", defs)).toThrow('unknown key "config"');
      expect(() => configFileArgs(write('{"listen": {"a": 1}}'), "server", defs)).toThrow('key "listen" must be a string or a number');
      expect(() => configFileArgs(write("[1]"), "server", defs)).toThrow("expected a table of options");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The metrics registry (lib/metrics.ts): declarations, the counters object the daemons
 * increment in place (their Prometheus text: PromText.section, tests/http/units.test.ts).
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { counter, defineCounters, gauge, info, labelledCounter, LOCAL_COUNTERS, LOCAL_METRICS, SERVER_COUNTERS, SERVER_METRICS, type Metrics } from "../lib/metrics.ts";

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

describe("docs/cli.md", () => {
  /** The words in backquotes that look like field names, of the `mq stats` bullet of `section`, first mention each, in order. */
  function namedInDocs(section: "local" | "server"): string[] {
    const doc = fs.readFileSync(new URL("../docs/cli.md", import.meta.url), "utf8");
    const start = doc.indexOf(`  - \`${section}\`: `);
    const end = doc.indexOf("\n  - `", start + 1);
    expect(start).toBeGreaterThan(0);
    return [...new Set([...doc.slice(start, end).matchAll(/`([a-z_0-9]+)`/g)].map((m) => m[1]!))];
  }
  /** Words of those bullets that are not fields: a command, a section's name. */
  const PROSE = { local: ["local", "recv"], server: ["server"] };

  test("the `mq stats` field lists name every field, in the order shown, and no field that is gone", () => {
    for (const [section, metrics] of [["local", LOCAL_METRICS], ["server", SERVER_METRICS]] as const) {
      const names = Object.keys(metrics);
      const named = namedInDocs(section);
      expect({ section, fields: named.filter((n) => names.includes(n)) }).toEqual({ section, fields: names });
      // A field removed from lib/metrics.ts but still described would show up here.
      expect({ section, notFields: named.filter((n) => !names.includes(n)) }).toEqual({ section, notFields: PROSE[section] });
    }
  });
});

describe("defineCounters", () => {
  test("a plain object, every declared counter at 0, incremented in place", () => {
    const counters = defineCounters(SERVER_COUNTERS);
    expect(counters).toEqual({ published: 0, duplicates: 0, delivered: 0, fanout_shared: 0, acked: 0, accepted: 0, rejected: 0, expired: 0, dead_lettered: 0, pattern_skipped: 0, dead_letters_dropped: 0 });
    counters.published += 3;
    counters.acked++;
    expect({ ...counters }).toMatchObject({ published: 3, acked: 1 });
    expect(Object.keys(defineCounters(LOCAL_COUNTERS))).toEqual(["received", "delivered", "pushed", "duplicates", "reused", "forwarded", "reconnects", "failovers", "expired"]);
  });

  test("a gauge or a labelled counter is refused as a counter", () => {
    expect(() => defineCounters({ open: gauge("files", "Files open now.") })).toThrow("open is not declared as a plain counter");
    expect(() => defineCounters({ drops: labelledCounter<{ topic: string; n: number }>(["topic"], "n", "messages", "Per topic.") as never })).toThrow("drops is not declared");
  });
});

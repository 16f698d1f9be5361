/**
 * `mq stats` through the binary: every field declared in lib/metrics.ts is there with the
 * type its declaration says, in both sections, and the text form shows each of them.
 */
import { expect, test } from "bun:test";
import { LOCAL_METRICS, SERVER_METRICS, type Metrics } from "../../lib/metrics.ts";
import { startCluster } from "./harness.ts";

/** The type of a JSON value, as the registry's `json` names it (a list: entries). */
function typeOf(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "entries" : typeof value;
}

/** The types each declared field may have. */
function expectedTypes(metrics: Metrics): Record<string, string[]> {
  return Object.fromEntries(Object.entries(metrics).map(([name, m]) => [name, m.json === "number|null" ? ["number", "null"] : [m.json.replace("optional ", "")]]));
}

test("mq stats --json: the local and server fields declared in the registry, each of its type; the counters count", async () => {
  await using cluster = await startCluster();
  const id = await cluster.create();
  await cluster.run(["sub", String(id), "stats.t"]);
  expect((await cluster.run(["pub", String(id), "stats.t", "--lines"], { stdin: "a\nb\n" })).code).toBe(0);
  expect((await cluster.run(["recv", String(id), "--follow", "--count", "2"])).code).toBe(0);

  const r = await cluster.run(["stats", "--json"]);
  expect(r.code).toBe(0);
  const s = JSON.parse(r.stdout);
  expect(Object.keys(s)).toEqual(["local", "server"]);
  for (const [section, metrics] of [["local", LOCAL_METRICS], ["server", SERVER_METRICS]] as const) {
    const want = expectedTypes(metrics);
    // Exactly the declared fields, in declaration order (the file store has open_files; the
    // store_* counters are the postgres store's: tests/cluster).
    const postgresOnly = new Set(["store_events", "store_refreshes"]);
    expect(Object.keys(s[section])).toEqual(Object.keys(metrics).filter((name) => !postgresOnly.has(name)));
    for (const [name, value] of Object.entries(s[section])) expect({ section, name, type: typeOf(value), ok: want[name]!.includes(typeOf(value)) }).toEqual({ section, name, type: typeOf(value), ok: true });
  }
  expect(s.server).toMatchObject({ published: 2, retention_dropped: [] });
  expect(s.server.acked).toBeGreaterThanOrEqual(1);
  expect(s.local).toMatchObject({ received: 2, delivered: 2, connected: true });

  // The text form: a section header, then one `name value` row per field.
  const text = (await cluster.run(["stats"])).stdout;
  expect(text).toMatch(/^local:\n/m);
  expect(text).toMatch(/^server:\n/m);
  expect(text).toMatch(/^ {2}published +2$/m);
  expect(text).toMatch(/^ {2}retention_dropped +none$/m);
  for (const name of [...Object.keys(LOCAL_METRICS), ...Object.keys(SERVER_METRICS)].filter((n) => !n.startsWith("store_"))) expect(text).toMatch(new RegExp(`^ {2}${name} +\\S`, "m"));
});

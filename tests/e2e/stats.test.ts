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

test("tail_cache_bytes: what the subscriber has read leaves the server's memory, the newest message it has yet to read stays", async () => {
  await using cluster = await startCluster();
  const id = await cluster.create();
  expect((await cluster.run(["sub", String(id), "cache.t"])).code).toBe(0);
  const lines = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(4, "0")} ${"x".repeat(195)}`).join("\n") + "\n";
  expect((await cluster.run(["pub", String(id), "cache.t", "--lines"], { stdin: lines })).code).toBe(0);
  const got = await cluster.run(["recv", String(id), "--follow", "--count", "1000"]);
  expect(got.stdout.split("\n").length).toBe(1001);
  // All 1,000 were pushed to the local broker. The next commit holds 64 KiB or more, so the
  // log asks the server's floor: what is left is that message alone (the cache counts 64 B
  // per message over its payload), not the 1,000 before it (~264 KB).
  expect((await cluster.run(["pub", String(id), "cache.t"], { stdin: "y".repeat(70_000) })).code).toBe(0);
  const s = JSON.parse((await cluster.run(["stats", "--json"])).stdout);
  expect(s.server.tail_cache_bytes).toBe(70_000 + 64);
});

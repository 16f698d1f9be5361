/** Retention (SPEC §3): old segments go once every subscriber is past them and they are old enough. */
import { expect, test } from "bun:test";
import { startCluster, jsonLines } from "./harness.ts";

test("retention deletes segments every subscriber is past, and keeps those a lagging subscriber needs", async () => {
  await using cluster = await startCluster({ serverArgs: ["--retention", "1s", "--max-segment-bytes", "1K"] });
  const reader = await cluster.create();
  const laggard = await cluster.create();
  await cluster.run(["sub", String(reader), "trimmed"]);
  await cluster.run(["sub", String(laggard), "kept"]);
  const lines = `${Array.from({ length: 40 }, (_, i) => `${i + 1}`.padEnd(100, ".")).join("\n")}\n`;
  expect((await cluster.run(["pub", String(reader), "kept", "--lines"], { stdin: lines })).code).toBe(0);
  expect((await cluster.run(["pub", String(reader), "trimmed", "--lines"], { stdin: lines })).code).toBe(0);
  expect((await cluster.run(["recv", String(reader), "--follow", "--count", "40"])).code).toBe(0);

  const counts = async () => Object.fromEntries(jsonLines((await cluster.run(["topics", "--json"])).stdout).map((t) => [t.topic, t.messages]));
  let now = await counts();
  for (let i = 0; i < 100 && now.trimmed === 40; i++) {
    await Bun.sleep(200);
    now = await counts();
  }
  expect(now.trimmed).toBeLessThan(40);
  // The laggard has not received anything: its topic is whole.
  expect(now.kept).toBe(40);
  expect(cluster.server.daemon.log).toContain("deleted by retention");

  // What is left still reads in order, from the new first seq, and the log goes on.
  const late = await cluster.create();
  await cluster.run(["sub", String(late), "trimmed", "--from", "earliest"]);
  const got = jsonLines((await cluster.run(["recv", String(late), "--follow", "--count", String(now.trimmed), "--json"])).stdout);
  const first = 40 - (now.trimmed as number) + 1;
  expect(got.map((m) => m.seq)).toEqual(Array.from({ length: now.trimmed as number }, (_, i) => first + i));
  expect(JSON.parse((await cluster.run(["pub", String(reader), "trimmed", "next", "--json"])).stdout).seq).toBe(41);
  expect((await cluster.run(["recv", String(laggard), "--follow", "--count", "40"])).stdout.split("\n").length).toBe(41);
});

test("bad --retention and --retention-bytes values are bad usage (exit 2)", async () => {
  const { mq } = await import("./harness.ts");
  for (const args of [["server", "--retention", "soon"], ["server", "--retention-bytes", "lots"], ["server", "--max-segment-bytes", "-1"]]) {
    const r = await mq(null, args);
    expect({ args, code: r.code }).toEqual({ args, code: 2 });
  }
});

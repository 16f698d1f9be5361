/**
 * `--deliver-after write|fsync` through the real binary: a bad value is bad usage, and each
 * value reaches the topic logs of `mq server` (the flag in each topic's `head`, storage.md)
 * while delivery stays whole and in order. What each value changes (pushed before or after the
 * fsync; a power cut) is tested on the log and the server: tests/store/deliver-after.test.ts,
 * tests/server/deliver-after.test.ts.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { jsonLines, mq, startCluster, teardown } from "./harness.ts";

test("a bad or missing --deliver-after is bad usage (exit 2) naming the value, for mq server and mq up", async () => {
  for (const args of [["server", "--deliver-after", "sometimes"], ["up", "--deliver-after", "sometimes"], ["server", "--deliver-after"]]) {
    const r = await mq(null, args);
    expect({ args, code: r.code }).toEqual({ args, code: 2 });
  }
  const r = await mq(null, ["server", "--deliver-after", "sometimes"]);
  expect(r.stderr).toContain('--deliver-after must be write (push a message to subscribers once written, while its fsync runs) or fsync (only once it is on disk), got "sometimes"');
});

for (const mode of ["write", "fsync", "default"] as const) {
  test(`--deliver-after ${mode}: every message reaches the subscriber in order, and the topic's head records the mode`, async () => {
    const cluster = await startCluster({ serverArgs: mode === "default" ? [] : ["--deliver-after", mode] });
    try {
      const pub = await cluster.create();
      const sub = await cluster.create();
      expect((await cluster.run(["sub", String(sub), "da"])).code).toBe(0);
      const lines = Array.from({ length: 200 }, (_, i) => `m${i}`).join("\n") + "\n";
      expect((await cluster.run(["pub", String(pub), "da", "--lines"], { stdin: lines })).code).toBe(0);
      const got = jsonLines((await cluster.run(["recv", String(sub), "--follow", "--count", "200", "--json"])).stdout);
      expect(got.map((m) => m.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      const head = path.join(cluster.server.dataDir, "topics", "da", "head");
      const bytes = fs.readFileSync(head);
      expect([bytes[4], bytes[6]]).toEqual(mode === "fsync" ? [1, 0] : [2, 1]);
    } finally {
      await teardown([cluster.local.daemon, cluster.server.daemon], [cluster.server.dataDir]);
    }
  });
}

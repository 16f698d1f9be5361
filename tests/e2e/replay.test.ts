/** Replay by time (`mq sub --since`) through the compiled binary: durations, timestamps, patterns, restarts, bad input. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/client.ts";
import { createOn, jsonLines, mq, startCluster, startLocal, startServer, teardown, tmpDir, restartServer } from "./harness.ts";

type Cluster = Awaited<ReturnType<typeof startCluster>>;

/** The append times of a topic's messages 1..count, read by a fresh id subscribed from the earliest. */
async function appendTimes(run: Cluster["run"], id: number, topic: string, count: number): Promise<number[]> {
  expect((await run(["sub", String(id), topic, "--from", "earliest"])).code).toBe(0);
  const got = jsonLines((await run(["recv", String(id), "--follow", "--count", String(count), "--json"], { timeoutMs: 30_000 })).stdout);
  expect(got.map((m) => m.seq)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
  // `recv --json` gives the append time as an ISO timestamp with ms.
  return got.map((m) => Date.parse(m.time as string));
}

/** Publishes `lines` to `topic` one message at a time, each in its own command (distinct append times, in order). */
async function publishEach(run: Cluster["run"], id: number, topic: string, lines: string[]): Promise<void> {
  for (const l of lines) expect((await run(["pub", String(id), topic, l])).code).toBe(0);
}

describe("replay by time", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    await cluster[Symbol.asyncDispose]();
  });

  test("--since TIMESTAMP starts at the first message appended at or after it", async () => {
    const pub = await cluster.create();
    await publishEach(cluster.run, pub, "rp.ts", ["m1", "m2", "m3", "m4"]);
    const times = await appendTimes(cluster.run, await cluster.create(), "rp.ts", 4);
    // The first message whose time is at or after the third one's (ties go to the lower seq).
    const want = times.findIndex((t) => t >= times[2]!) + 1;
    const sub = await cluster.create();
    const s = await cluster.run(["sub", String(sub), "rp.ts", "--since", new Date(times[2]!).toISOString(), "--json"]);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ topic: "rp.ts", from: want });
    const got = jsonLines((await cluster.run(["recv", String(sub), "--follow", "--count", String(5 - want), "--json"])).stdout);
    expect(got.map((m) => m.data)).toEqual(["m1", "m2", "m3", "m4"].slice(want - 1));
    // A time past every message: the next one published.
    const late = await cluster.create();
    const l = await cluster.run(["sub", String(late), "rp.ts", "--since", new Date(times[3]! + 1).toISOString(), "--json"]);
    expect(JSON.parse(l.stdout).from).toBe(5);
  });

  test("--since DURATION reaches back from now: 1h replays what this test stored; the default (latest) does not", async () => {
    const pub = await cluster.create();
    await cluster.run(["pub", String(pub), "rp.dur", "--lines"], { stdin: "d1\nd2\n" });
    const since = await cluster.create();
    expect(JSON.parse((await cluster.run(["sub", String(since), "rp.dur", "--since", "1h", "--json"])).stdout).from).toBe(1);
    expect((await cluster.run(["recv", String(since), "--follow", "--count", "2"])).stdout).toBe("d1\nd2\n");
    const latest = await cluster.create();
    expect(JSON.parse((await cluster.run(["sub", String(latest), "rp.dur", "--json"])).stdout).from).toBe(3);
  });

  test("--since with a pattern applies to every matching topic that exists; a subscription that exists keeps its cursor", async () => {
    const pub = await cluster.create();
    await publishEach(cluster.run, pub, "rp.p.a", ["a1", "a2", "a3"]);
    await publishEach(cluster.run, pub, "rp.p.b", ["b1", "b2"]);
    const tA = await appendTimes(cluster.run, await cluster.create(), "rp.p.a", 3);
    const tB = await appendTimes(cluster.run, await cluster.create(), "rp.p.b", 2);
    const cut = tA[1]!;
    const sub = await cluster.create();
    const s = JSON.parse((await cluster.run(["sub", String(sub), "rp.p.*", "--since", new Date(cut).toISOString(), "--json"])).stdout);
    const fromA = tA.findIndex((t) => t >= cut) + 1;
    const fromB = tB.findIndex((t) => t >= cut) + 1 || 3;
    expect(s.matched).toEqual([
      { topic: "rp.p.a", from: fromA },
      { topic: "rp.p.b", from: fromB },
    ]);
    // Subscribing again (to replay) keeps the cursor: unsub, then sub, to start over.
    const again = JSON.parse((await cluster.run(["sub", String(sub), "rp.p.a", "--since", "1h", "--json"])).stdout);
    expect(again.from).toBe(fromA);
  });

  test("bad --since, and --since with --from, are usage errors (exit 2) naming the value", async () => {
    const id = await cluster.create();
    for (const bad of ["yesterday", "10x", "-5m", "2026-11-30T12:00:00", "2026-13-45T99:00:00Z", ""]) {
      const r = await cluster.run(["sub", String(id), "rp.bad", "--since", bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`--since must be a duration`);
      expect(r.stderr).toContain(JSON.stringify(bad));
    }
    const both = await cluster.run(["sub", String(id), "rp.bad", "--since", "10m", "--from", "earliest"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("--from and --since cannot be used together");
    // Nothing was subscribed by the refused commands.
    expect(jsonLines((await cluster.run(["topics", "--json"])).stdout).some((t) => t.topic === "rp.bad")).toBe(false);
  });

  test("--since in the future and impossible dates (--since and --at) are usage errors; --since takes ms since the epoch", async () => {
    const id = await cluster.create();
    const future = new Date(Date.now() + 3_600_000).toISOString();
    for (const bad of [future, String(Date.now() + 3_600_000)]) {
      const r = await cluster.run(["sub", String(id), "rp.future", "--since", bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("--since must not be in the future");
      expect(r.stderr).toContain(JSON.stringify(bad));
    }
    for (const bad of ["2026-02-31", "2026-02-31T00:00:00Z", "2025-04-31T12:00:00Z", "2026-01-01T24:00:00Z"]) {
      const r = await cluster.run(["sub", String(id), "rp.future", "--since", bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(JSON.stringify(bad));
      const at = await cluster.run(["pub", String(id), "rp.future", "x", "--at", bad]);
      expect(at.code).toBe(2);
      expect(at.stderr).toContain(`--at must be an ISO-8601 time`);
    }
    expect(jsonLines((await cluster.run(["topics", "--json"])).stdout).some((t) => t.topic === "rp.future")).toBe(false);
    // ms since the epoch, like --at.
    const pub = await cluster.create();
    await publishEach(cluster.run, pub, "rp.ms", ["a", "b"]);
    const times = await appendTimes(cluster.run, await cluster.create(), "rp.ms", 2);
    const sub = await cluster.create();
    const s = await cluster.run(["sub", String(sub), "rp.ms", "--since", String(times[1]!), "--json"]);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout).from).toBe(times.findIndex((t) => t >= times[1]!) + 1);
  });

  test("the server refuses a since in the future with BAD_REQUEST (the library skips the CLI's check)", async () => {
    await using client = await MqClient.connect({ socket: cluster.local.socket });
    const id = await client.create();
    const since = Date.now() + 3_600_000;
    await expect(client.subscribe(id, ["rp.srvfuture"], { since })).rejects.toThrow(/BAD_REQUEST|"since" \d+ .* is in the future/);
    await expect(client.subscribe(id, ["rp.srvfuture"], { since })).rejects.toThrow(/in the future/);
    // Just now is fine.
    expect((await client.subscribe(id, ["rp.srvfuture"], { since: Date.now() }))[0]).toMatchObject({ topic: "rp.srvfuture" });
  });
});

test("--since after a server restart finds the same seqs (the log is searched by append time on disk)", async () => {
  const data = tmpDir("mq-server-");
  let server = await startServer({ dataDir: data, args: ["--max-segment-bytes", "1K"] });
  const local = await startLocal(server.address);
  try {
    const pub = await createOn(local.socket);
    const reader = await createOn(local.socket);
    // Messages of 300 bytes: several segments.
    const lines = Array.from({ length: 12 }, (_, i) => `${String(i + 1).padStart(2, "0")}${"x".repeat(298)}`);
    for (const l of lines) expect((await mq(local.socket, ["pub", String(pub), "rp.restart", l])).code).toBe(0);
    await mq(local.socket, ["sub", String(reader), "rp.restart", "--from", "earliest"]);
    const times = jsonLines((await mq(local.socket, ["recv", String(reader), "--follow", "--count", "12", "--json"])).stdout).map((m) => Date.parse(m.time as string));
    server = await restartServer(server, [local], { kill: true, args: ["--max-segment-bytes", "1K"] });
    for (const k of [0, 4, 9, 11]) {
      const id = await createOn(local.socket);
      const r = JSON.parse((await mq(local.socket, ["sub", String(id), "rp.restart", "--since", new Date(times[k]!).toISOString(), "--json"])).stdout);
      expect(r.from).toBe(times.findIndex((t) => t >= times[k]!) + 1);
    }
  } finally {
    await teardown([local.daemon, server.daemon], [data, local.dataDir]);
  }
});

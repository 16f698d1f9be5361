/**
 * Retention (SPEC §3): old segments go once every subscriber is past them and they are old
 * enough; with --retention-limit hard they go anyway, and each subscriber that lost
 * unacknowledged messages is counted in `mq stats` and told `lost` on its next delivery.
 */
import { expect, test } from "bun:test";
import { createOn, jsonLines, mq, startCluster, startLocal, startServer, teardown, tmpDir, type Daemon, type LocalHandle, restartServer } from "./harness.ts";

// Each server below runs --dedupe-window 1s: retention keeps the records of the window (2
// minutes by default), which these tests would otherwise wait out.

/** 40 lines of 100 bytes: about 8 to a 1K segment. */
const LINES = `${Array.from({ length: 40 }, (_, i) => `${i + 1}`.padEnd(100, ".")).join("\n")}\n`;

/** Retention runs on `server`: a topic that a reader is past loses a segment (waits a bounded time for the log line). */
async function witnessRetention(host: LocalHandle, server: Daemon, topic: string): Promise<void> {
  const reader = await createOn(host.socket);
  expect((await mq(host.socket, ["sub", String(reader), topic])).code).toBe(0);
  expect((await mq(host.socket, ["pub", String(reader), topic, "--lines"], { stdin: LINES })).code).toBe(0);
  expect((await mq(host.socket, ["recv", String(reader), "--follow", "--count", "40"])).code).toBe(0);
  await server.waitFor(new RegExp(`topics/${topic}/.*deleted by retention`), 20_000);
}

test("retention deletes segments every subscriber is past, and keeps those a lagging subscriber needs", async () => {
  await using cluster = await startCluster({ serverArgs: ["--retention", "1s", "--dedupe-window", "1s", "--max-segment-bytes", "1K"] });
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
  for (const args of [["server", "--retention", "soon"], ["server", "--retention-bytes", "lots"], ["server", "--max-segment-bytes", "-1"], ["server", "--retention-limit", "medium"], ["server", "--retention-limit"]]) {
    const r = await mq(null, args);
    expect({ args, code: r.code }).toEqual({ args, code: 2 });
  }
  const r = await mq(null, ["server", "--retention-limit", "medium"]);
  expect(r.stderr).toContain('--retention-limit must be soft (never delete a message a subscriber has not acknowledged) or hard (apply --retention and --retention-bytes anyway), got "medium"');
});

test("soft (the default): a slow subscriber keeps its unacknowledged messages past the age limit, also across a server restart", async () => {
  const serverData = tmpDir("mq-server-");
  const flags = ["--retention", "1s", "--dedupe-window", "1s", "--max-segment-bytes", "1K"];
  let server = await startServer({ dataDir: serverData, args: flags });
  const pubHost = await startLocal(server.address);
  const subData = tmpDir("mq-local-");
  let subHost = await startLocal(server.address, { dataDir: subData });
  try {
    const publisher = await createOn(pubHost.socket);
    const slow = await createOn(subHost.socket);
    expect((await mq(subHost.socket, ["sub", String(slow), "slow"])).code).toBe(0);
    expect((await mq(pubHost.socket, ["pub", String(publisher), "slow", "--lines"], { stdin: LINES })).code).toBe(0);
    // Ten received and acknowledged; then its host goes away (and with it what its buffer held):
    // the thirty others are only on the server, unacknowledged.
    expect(jsonLines((await mq(subHost.socket, ["recv", String(slow), "--count", "10", "--json"])).stdout).map((m) => m.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(await subHost.daemon.stop()).toBe(0);
    await witnessRetention(pubHost, server.daemon, "witness1");

    // Restarted with the same flags: retention runs again, and still keeps what is not acknowledged.
    server = await restartServer(server, [pubHost], { args: flags });
    await witnessRetention(pubHost, server.daemon, "witness2");

    subHost = await startLocal(server.address, { dataDir: subData, socket: subHost.socket });
    const rest = jsonLines((await mq(subHost.socket, ["recv", String(slow), "--follow", "--count", "30", "--json"])).stdout);
    expect(rest.map((m) => m.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 11));
    expect(rest.filter((m) => m.lost !== undefined)).toEqual([]);
    const stats = JSON.parse((await mq(subHost.socket, ["stats", "--json"])).stdout);
    expect(stats.server.retention_dropped).toEqual([]);
  } finally {
    await teardown([subHost.daemon, pubHost.daemon, server.daemon], [serverData, subData, pubHost.dataDir]);
  }
});

test("--retention-limit hard: the age limit deletes unacknowledged messages; the drop is counted per subscriber in mq stats, and its next delivery says lost, also after a server restart", async () => {
  const serverData = tmpDir("mq-server-");
  const flags = ["--retention", "1s", "--dedupe-window", "1s", "--max-segment-bytes", "1K", "--retention-limit", "hard"];
  let server = await startServer({ dataDir: serverData, args: flags });
  const pubHost = await startLocal(server.address);
  const subData = tmpDir("mq-local-");
  let subHost = await startLocal(server.address, { dataDir: subData });
  try {
    const publisher = await createOn(pubHost.socket);
    // A second id on the subscriber's host first, so that its local and global ids differ.
    await createOn(subHost.socket);
    const subscriber = await createOn(subHost.socket);
    expect((await mq(subHost.socket, ["sub", String(subscriber), "hard"])).code).toBe(0);
    // Another subscriber on the same host, destroyed once counted: its entry goes.
    const gone = await createOn(subHost.socket);
    expect((await mq(subHost.socket, ["sub", String(gone), "hard"])).code).toBe(0);
    // Its host is away: nothing reaches it, nothing is acknowledged.
    expect(await subHost.daemon.stop()).toBe(0);
    expect((await mq(pubHost.socket, ["pub", String(publisher), "hard", "--lines"], { stdin: LINES })).code).toBe(0);

    const remaining = async () => jsonLines((await mq(pubHost.socket, ["topics", "--json"])).stdout).find((t) => t.topic === "hard")!.messages as number;
    let left = await remaining();
    for (let i = 0; i < 100 && left === 40; i++) {
      await Bun.sleep(200);
      left = await remaining();
    }
    expect(left).toBeLessThan(40);
    const dropped = 40 - left;
    expect(server.daemon.log).toContain(`topic "hard": retention (--retention-limit hard) deleted ${dropped} messages before id`);

    // Counted per subscriber: the publisher's host sees the global id only, the subscriber's host its local id too.
    const both = JSON.parse((await mq(pubHost.socket, ["stats", "--json"])).stdout).server.retention_dropped;
    expect(both).toEqual([
      { global_id: expect.any(Number), topic: "hard", dropped },
      { global_id: expect.any(Number), topic: "hard", dropped },
    ]);
    // The subscriber's global id is the smaller: it was created first.
    const seen = both.slice(0, 1);
    subHost = await startLocal(server.address, { dataDir: subData, socket: subHost.socket });
    expect(JSON.parse((await mq(subHost.socket, ["stats", "--json"])).stdout).server.retention_dropped).toHaveLength(2);
    expect((await mq(subHost.socket, ["destroy", String(gone)])).code).toBe(0);
    const own = JSON.parse((await mq(subHost.socket, ["stats", "--json"])).stdout).server.retention_dropped;
    expect(own).toEqual([{ global_id: seen[0].global_id, id: subscriber, topic: "hard", dropped }]);
    const text = await mq(subHost.socket, ["stats"]);
    expect(text.stdout).toMatch(new RegExp(`\\n  retention_dropped +global_id=${seen[0].global_id} id=${subscriber} topic=hard dropped=${dropped}\\n`));

    // Restarted with the same flags, before the subscriber received anything: the loss is still told.
    await subHost.daemon.stop();
    expect(await server.daemon.stop()).toBe(0);
    server = await startServer({ dataDir: serverData, port: server.port, args: flags });
    subHost = await startLocal(server.address, { dataDir: subData, socket: subHost.socket });
    const got = await mq(subHost.socket, ["recv", String(subscriber), "--follow", "--count", String(left), "--json"]);
    const messages = jsonLines(got.stdout);
    expect(messages.map((m) => m.seq)).toEqual(Array.from({ length: left }, (_, i) => dropped + 1 + i));
    expect(messages[0]!.lost).toBe(dropped);
    expect(messages.slice(1).filter((m) => m.lost !== undefined)).toEqual([]);
    // The topic goes on.
    expect((await mq(pubHost.socket, ["pub", String(publisher), "hard", "after"])).code).toBe(0);
    expect((await mq(subHost.socket, ["recv", String(subscriber), "--wait", "10"])).stdout).toBe("after\n");
  } finally {
    await teardown([subHost.daemon, pubHost.daemon, server.daemon], [serverData, subData, pubHost.dataDir]);
  }
});

test("--retention-limit hard: messages already pushed to the subscriber's local broker are delivered, not counted as dropped", async () => {
  await using cluster = await startCluster({ serverArgs: ["--retention", "1s", "--dedupe-window", "1s", "--max-segment-bytes", "1K", "--retention-limit", "hard"] });
  const subscriber = await cluster.create();
  await cluster.run(["sub", String(subscriber), "pushed"]);
  // Pushed at once to the subscriber's local broker (in its buffer, not acknowledged) while it is connected.
  expect((await cluster.run(["pub", String(subscriber), "pushed", "--lines"], { stdin: LINES })).code).toBe(0);
  await cluster.server.daemon.waitFor(/topics\/pushed\/.*deleted by retention/, 20_000);

  const stats = JSON.parse((await cluster.run(["stats", "--json"])).stdout).server;
  expect(stats.retention_dropped).toEqual([]);
  expect(cluster.server.daemon.log).not.toContain("had not acknowledged");
  expect(cluster.server.daemon.log).not.toContain(`before id`);
  const got = jsonLines((await cluster.run(["recv", String(subscriber), "-n", "100", "--json"])).stdout);
  expect(got.map((m) => m.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  expect(got.filter((m) => m.lost !== undefined)).toEqual([]);
});

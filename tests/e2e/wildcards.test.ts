/** Wildcard subscriptions (`*`, `>`) through the compiled binary: matching, order, unsub, restarts, bad patterns. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { MqClient } from "../../lib/client/client.ts";
import { createOn, jsonLines, mq, startCluster, startLocal, startServer, teardown, tmpDir, restartServer } from "./harness.ts";

type Cluster = Awaited<ReturnType<typeof startCluster>>;

/** Removes a topic's subscriber index files, as if a crash came before its subscriptions reached them. */
function dropSubscriberIndex(dataDir: string, topic: string): void {
  const dir = path.join(dataDir, "topics", topic);
  for (const f of fs.readdirSync(dir)) if (f.startsWith("subscribers")) fs.rmSync(path.join(dir, f));
}

/** Receives exactly `count` messages of `id` as JSON objects (bounded by the CLI's own timeout). */
async function recvAll(run: Cluster["run"], id: number, count: number): Promise<Array<Record<string, unknown>>> {
  const r = await run(["recv", String(id), "--follow", "--count", String(count), "--json"], { timeoutMs: 30_000 });
  expect(r.code).toBe(0);
  return jsonLines(r.stdout);
}

/** Nothing more pending for `id` (recv exits 3 when nothing came within the wait). */
async function expectNothingMore(run: Cluster["run"], id: number): Promise<void> {
  expect((await run(["recv", String(id), "--wait", "0.5"])).code).toBe(3);
}

describe("wildcards", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    await cluster[Symbol.asyncDispose]();
  });

  test("'orders.*' matches the topics that exist and those created later, one token only; per-topic order is kept", async () => {
    const pub = await cluster.create();
    const sub = await cluster.create();
    await cluster.run(["pub", String(pub), "w1.orders.eu", "old"]);
    const s = await cluster.run(["sub", String(sub), "w1.orders.*", "--json"]);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ topic: "w1.orders.*", pattern: true, matched: [{ topic: "w1.orders.eu", from: 2 }] });
    const text = await cluster.run(["sub", String(sub), "w1.orders.*"]);
    expect(text.stdout).toBe(`subscribed ${sub} to pattern w1.orders.*: matches w1.orders.eu from seq 2; topics created later are matched from their first message\n`);
    // A topic created after the subscribe (by pub) is matched from its first message.
    await cluster.run(["pub", String(pub), "w1.orders.us", "--lines"], { stdin: "u1\nu2\nu3\n" });
    await cluster.run(["pub", String(pub), "w1.orders.eu", "--lines"], { stdin: "e1\ne2\n" });
    // Not matched: two tokens under orders, and orders itself.
    await cluster.run(["pub", String(pub), "w1.orders.eu.vat", "no"]);
    await cluster.run(["pub", String(pub), "w1.orders", "no"]);
    const got = await recvAll(cluster.run, sub, 5);
    const of = (topic: string) => got.filter((m) => m.topic === topic).map((m) => [m.seq, m.data]);
    expect(of("w1.orders.us")).toEqual([[1, "u1"], [2, "u2"], [3, "u3"]]);
    expect(of("w1.orders.eu")).toEqual([[2, "e1"], [3, "e2"]]);
    await expectNothingMore(cluster.run, sub);
  });

  test("'orders.>' matches one or more trailing tokens, never the prefix alone", async () => {
    const pub = await cluster.create();
    const sub = await cluster.create();
    expect((await cluster.run(["sub", String(sub), "w2.orders.>"])).stdout).toContain("matches no topic yet");
    for (const t of ["w2.orders", "w2.orders.eu", "w2.orders.eu.vat", "w2.other.eu"]) await cluster.run(["pub", String(pub), t, t]);
    const got = await recvAll(cluster.run, sub, 2);
    expect(got.map((m) => m.topic).sort()).toEqual(["w2.orders.eu", "w2.orders.eu.vat"]);
    await expectNothingMore(cluster.run, sub);
    // `topics` lists them with their subscriber, `mq stats` still answers.
    const topics = jsonLines((await cluster.run(["topics", "--json"])).stdout);
    expect(topics.find((t) => t.topic === "w2.orders.eu.vat")).toMatchObject({ subscribers: 1, messages: 1 });
    expect(topics.find((t) => t.topic === "w2.orders")).toMatchObject({ subscribers: 0 });
    expect((await cluster.run(["stats"])).code).toBe(0);
  });

  test("a message matched by two filters of one id (and by its exact topic) is delivered once", async () => {
    const pub = await cluster.create();
    const sub = await cluster.create();
    expect((await cluster.run(["sub", String(sub), "w3.a.*", "w3.>", "w3.a.b"])).code).toBe(0);
    await cluster.run(["pub", String(pub), "w3.a.b", "--lines"], { stdin: "1\n2\n3\n" });
    await cluster.run(["pub", String(pub), "w3.a.c", "4"]);
    const got = await recvAll(cluster.run, sub, 4);
    expect(got.map((m) => [m.topic, m.data])).toEqual([["w3.a.b", "1"], ["w3.a.b", "2"], ["w3.a.b", "3"], ["w3.a.c", "4"]]);
    await expectNothingMore(cluster.run, sub);
  });

  test("unsub of a pattern ends only the topics no other filter of the id matches; unsub of an exact topic a pattern still matches keeps it", async () => {
    const pub = await cluster.create();
    const sub = await cluster.create();
    await cluster.run(["sub", String(sub), "w4.x.*", "w4.x.keep"]);
    await cluster.run(["pub", String(pub), "w4.x.keep", "k1"]);
    await cluster.run(["pub", String(pub), "w4.x.gone", "g1"]);
    expect((await recvAll(cluster.run, sub, 2)).length).toBe(2);
    // Two more reach the local broker's buffer, not received yet.
    const received = async () => JSON.parse((await cluster.run(["stats", "--json"])).stdout).local.received as number;
    const before = await received();
    await cluster.run(["pub", String(pub), "w4.x.keep", "k2"]);
    await cluster.run(["pub", String(pub), "w4.x.gone", "g2"]);
    for (let i = 0; i < 100 && (await received()) < before + 2; i++) await Bun.sleep(50);
    expect(await received()).toBeGreaterThanOrEqual(before + 2);

    const u = await cluster.run(["unsub", String(sub), "w4.x.*", "--json"]);
    expect(JSON.parse(u.stdout)).toEqual({ topic: "w4.x.*", unsubscribed: true, dropped: ["w4.x.gone"] });
    await cluster.run(["pub", String(pub), "w4.x.keep", "k3"]);
    await cluster.run(["pub", String(pub), "w4.x.gone", "g3"]);
    await cluster.run(["pub", String(pub), "w4.x.new", "n1"]);
    // The buffered message of the topic still subscribed stays; the ended topic's is dropped.
    expect((await recvAll(cluster.run, sub, 2)).map((m) => m.data)).toEqual(["k2", "k3"]);
    await expectNothingMore(cluster.run, sub);

    // The other way round: a pattern keeps the topic whose exact filter goes.
    await cluster.run(["sub", String(sub), "w4.x.*"]);
    const e = await cluster.run(["unsub", String(sub), "w4.x.keep"]);
    expect(e.stdout).toContain("a pattern of");
    await cluster.run(["pub", String(pub), "w4.x.keep", "k4"]);
    expect((await recvAll(cluster.run, sub, 1)).map((m) => m.data)).toEqual(["k4"]);
    expect((await cluster.run(["unsub", String(sub), "w4.nothing.*"])).stdout).toBe(`${sub} was not subscribed to w4.nothing.*\n`);
  });

  test("--from earliest with a pattern applies to the topics that exist; topics created later start at their first message", async () => {
    const pub = await cluster.create();
    const sub = await cluster.create();
    await cluster.run(["pub", String(pub), "w5.t.old", "--lines"], { stdin: "o1\no2\n" });
    const s = await cluster.run(["sub", String(sub), "w5.t.*", "--from", "earliest", "--json"]);
    expect(JSON.parse(s.stdout).matched).toEqual([{ topic: "w5.t.old", from: 1 }]);
    await cluster.run(["pub", String(pub), "w5.t.new", "n1"]);
    const got = await recvAll(cluster.run, sub, 3);
    expect(got.map((m) => [m.topic, m.seq])).toContainEqual(["w5.t.new", 1]);
    expect(got.filter((m) => m.topic === "w5.t.old").map((m) => m.data)).toEqual(["o1", "o2"]);
  });

  test("bad patterns are refused with INVALID_TOPIC naming the pattern and the rule; pub to a pattern is refused", async () => {
    const id = await cluster.create();
    const cases: Array<[string, RegExp]> = [
      ["orders.*x", /"orders\.\*x".*"\*x" mixes a wildcard/],
      [">.a", /">\.a".*">" must be the last token/],
      ["a..b", /"a\.\.b".*empty token/],
      ["a.b*", /"a\.b\*".*"b\*" mixes a wildcard/],
      ["a.>.>", /">" must be the last token/],
      ["a.*.", /empty token/],
      ["a.$.*", /contains "\$"/],
    ];
    for (const [pattern, message] of cases) {
      const r = await cluster.run(["sub", String(id), pattern]);
      expect(r.code).toBe(1); // INVALID_TOPIC is exit 1, as for a bad topic name (docs/cli.md)
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toContain("INVALID_TOPIC");
      const u = await cluster.run(["unsub", String(id), pattern]);
      expect(u.code).toBe(1);
      expect(u.stderr).toMatch(message);
    }
    const p = await cluster.run(["pub", String(id), "orders.*", "x"]);
    expect(p.code).toBe(1);
    expect(p.stderr).toContain("reserved for wildcard subscriptions");
  });

  test("a pattern counts as one toward --max-subscriptions-per-id", async () => {
    await using small = await startCluster({ serverArgs: ["--max-subscriptions-per-id", "2"] });
    const id = await small.create();
    expect((await small.run(["sub", String(id), "l.a", "l.*"])).code).toBe(0);
    const r = await small.run(["sub", String(id), "l.b.>"]);
    expect(r.stderr).toContain("--max-subscriptions-per-id");
    expect(r.code).not.toBe(0);
    // The same filters again add nothing.
    expect((await small.run(["sub", String(id), "l.*", "l.a"])).code).toBe(0);

    // A pattern does not get around the limit: each existing topic it matches counts.
    const pub = await small.create();
    for (const t of ["lm.a", "lm.b", "lm.c"]) await small.run(["pub", String(pub), t, "x"]);
    const wide = await small.create();
    const refused = await small.run(["sub", String(wide), "lm.*"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("LIMIT_EXCEEDED");
    expect(refused.stderr).toContain("--max-subscriptions-per-id");
    expect((await small.run(["sub", String(wide), ">"])).code).toBe(1);
    // A topic created later that would take the id over the limit: it is not subscribed (warned once, counted).
    const later = await small.create();
    expect((await small.run(["sub", String(later), "lm2.*"])).code).toBe(0);
    expect(JSON.parse((await small.run(["pub", String(pub), "lm2.a", "1", "--json"])).stdout).subscribers).toBe(1);
    expect(JSON.parse((await small.run(["pub", String(pub), "lm2.b", "2", "--json"])).stdout).subscribers).toBe(0);
    expect(JSON.parse((await small.run(["pub", String(pub), "lm2.c", "3", "--json"])).stdout).subscribers).toBe(0);
    await small.server.daemon.waitFor(new RegExp(`id \\d+: not subscribed to the new topic lm2\\.b its pattern matches`));
    expect(small.server.daemon.log.match(/not subscribed to the new topic lm2\./g)?.length).toBe(1);
    expect(JSON.parse((await small.run(["stats", "--json"])).stdout).server.pattern_skipped).toBe(2);
    expect((await recvAll(small.run, later, 1)).map((m) => m.topic)).toEqual(["lm2.a"]);
  });

  test("pub to a new topic a pattern subscriber got does not warn that it has no subscribers", async () => {
    const pub = await cluster.create();
    const sub = await cluster.create();
    await cluster.run(["sub", String(sub), "w7.*"]);
    const r = await cluster.run(["pub", String(pub), "w7.new", "x"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("1 subscriber (new topic)");
    expect(r.stderr).not.toContain("no subscribers");
    // Without any subscriber it still warns.
    expect((await cluster.run(["pub", String(pub), "w7none", "x"])).stderr).toContain("has no subscribers yet");
  });

  test("the sub help says TOPIC may be a pattern", async () => {
    const r = await cluster.run(["sub", "--help"]);
    expect(r.stdout + r.stderr).toContain("topic names or patterns");
  });
});

describe("wildcards across restarts", () => {
  for (const how of ["SIGTERM", "SIGKILL"] as const) {
    test(`server stopped with ${how}: the pattern is kept, topics created after the restart match, exact filters overlapping it are kept`, async () => {
      const data = tmpDir("mq-server-");
      let server = await startServer({ dataDir: data });
      const local = await startLocal(server.address);
      try {
        const pub = await createOn(local.socket);
        const sub = await createOn(local.socket);
        expect((await mq(local.socket, ["sub", String(sub), "r.*", "r.exact"])).code).toBe(0);
        await mq(local.socket, ["pub", String(pub), "r.before", "b1"]);
        await mq(local.socket, ["pub", String(pub), "r.exact", "e1"]);
        expect((await mq(local.socket, ["recv", String(sub), "--follow", "--count", "2"])).code).toBe(0);
        server = await restartServer(server, [local], { kill: how === "SIGKILL" });
        await mq(local.socket, ["pub", String(pub), "r.after", "--lines"], { stdin: "a1\na2\n" });
        await mq(local.socket, ["pub", String(pub), "r.before", "b2"]);
        const got = jsonLines((await mq(local.socket, ["recv", String(sub), "--follow", "--count", "3", "--json"], { timeoutMs: 30_000 })).stdout);
        expect(got.filter((m) => m.topic === "r.after").map((m) => m.data)).toEqual(["a1", "a2"]);
        expect(got.filter((m) => m.topic === "r.before").map((m) => m.data)).toEqual(["b2"]);
        // The exact filter was kept beside the pattern: removing the pattern keeps r.exact.
        const u = jsonLines((await mq(local.socket, ["unsub", String(sub), "r.*", "--json"])).stdout);
        expect(u[0]!.dropped).toEqual(["r.after", "r.before"]);
        await mq(local.socket, ["pub", String(pub), "r.exact", "e2"]);
        await mq(local.socket, ["pub", String(pub), "r.later", "x"]);
        expect((await mq(local.socket, ["recv", String(sub), "--follow", "--count", "1"])).stdout).toBe("e2\n");
        expect((await mq(local.socket, ["recv", String(sub), "--wait", "0.5"])).code).toBe(3);
      } finally {
        await teardown([local.daemon, server.daemon], [data, local.dataDir]);
      }
    });
  }

  test("a matching topic whose subscription never reached its index (created just before a crash) gets it at start, from its first message", async () => {
    const data = tmpDir("mq-server-");
    let server = await startServer({ dataDir: data });
    const local = await startLocal(server.address);
    try {
      const pub = await createOn(local.socket);
      const sub = await createOn(local.socket);
      await mq(local.socket, ["sub", String(sub), "cr.>"]);
      await mq(local.socket, ["pub", String(pub), "cr.new", "--lines"], { stdin: "n1\nn2\n" });
      // As if the crash came between the topic's creation and its index write.
      server = await restartServer(server, [local], { kill: true, between: () => dropSubscriberIndex(data, "cr.new") });
      await server.daemon.waitFor(/topic cr\.new: id \d+ subscribed from seq 1/);
      expect((await mq(local.socket, ["recv", String(sub), "--follow", "--count", "2"])).stdout).toBe("n1\nn2\n");
    } finally {
      await teardown([local.daemon, server.daemon], [data, local.dataDir]);
    }
  });

  test("a sub of a pattern racing an unsub of it: both answer, and the pattern does not come back after a restart", async () => {
    const data = tmpDir("mq-server-");
    let server = await startServer({ dataDir: data });
    const local = await startLocal(server.address);
    try {
      await using client = await MqClient.connect({ socket: local.socket });
      const pub = await client.create();
      for (let round = 0; round < 5; round++) {
        // A topic the pattern matches exists: the sub must not leave a subscription to it behind.
        await client.publish(pub, `race${round}.x`, "0");
        const id = await client.create();
        await Promise.all([client.subscribe(id, [`race${round}.*`]), client.unsubscribe(id, [`race${round}.*`])]);
      }
      server = await restartServer(server, [local]);
      for (let round = 0; round < 5; round++) {
        expect(JSON.parse((await mq(local.socket, ["pub", String(pub), `race${round}.x`, "1", "--json"])).stdout).subscribers).toBe(0);
      }
    } finally {
      await teardown([local.daemon, server.daemon], [data, local.dataDir]);
    }
  });

  test("a pattern sub (--from latest) cut short by a crash: the next start subscribes the older topic from the sub's time, not its full history", async () => {
    const data = tmpDir("mq-server-");
    let server = await startServer({ dataDir: data });
    const local = await startLocal(server.address);
    try {
      const pub = await createOn(local.socket);
      const sub = await createOn(local.socket);
      await mq(local.socket, ["pub", String(pub), "cs.old", "--lines"], { stdin: "o1\no2\n" });
      expect((await mq(local.socket, ["sub", String(sub), "cs.*"])).code).toBe(0);
      await mq(local.socket, ["pub", String(pub), "cs.old", "o3"]);
      // As if the crash came before the pattern's subscription reached the topic's index.
      server = await restartServer(server, [local], { kill: true, between: () => dropSubscriberIndex(data, "cs.old") });
      await server.daemon.waitFor(/topic cs\.old: id \d+ subscribed from seq 3/);
      expect((await mq(local.socket, ["recv", String(sub), "--follow", "--count", "1"], { timeoutMs: 30_000 })).stdout).toBe("o3\n");
      expect((await mq(local.socket, ["recv", String(sub), "--wait", "0.5"])).code).toBe(3);
    } finally {
      await teardown([local.daemon, server.daemon], [data, local.dataDir]);
    }
  });

  test("destroy removes the id's patterns: after a restart nothing matches for it", async () => {
    const data = tmpDir("mq-server-");
    let server = await startServer({ dataDir: data });
    const local = await startLocal(server.address);
    try {
      const pub = await createOn(local.socket);
      const sub = await createOn(local.socket);
      await mq(local.socket, ["sub", String(sub), "d.>"]);
      expect((await mq(local.socket, ["destroy", String(sub)])).code).toBe(0);
      server = await restartServer(server, [local]);
      const p = JSON.parse((await mq(local.socket, ["pub", String(pub), "d.x", "1", "--json"])).stdout);
      expect(p.subscribers).toBe(0);
    } finally {
      await teardown([local.daemon, server.daemon], [data, local.dataDir]);
    }
  });
});

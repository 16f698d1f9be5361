/**
 * Per-message TTL end to end (docs/semantics.md, "TTL"): an expired message is never
 * delivered, whether it expires on the server (before a push) or in the local broker's buffer
 * (before a recv), also across a server restart; it is counted in `expired`; the cursor
 * moves past it; a bad `--ttl` is refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/index.ts";
import { createOn, jsonLines, mq, startCluster, startLocal, startServer, teardown, tmpDir, restartServer } from "./harness.ts";

const SHORT_TTL_MS = 300;
const BUFFERED_TTL_MS = 2000;

/** Waits (bounded) until `ms` have passed since `since`: the expiry is a clock, and nothing but time can show it. */
async function waitPast(since: number, ms: number): Promise<void> {
  for (let i = 0; i < 100 && Date.now() < since + ms + 50; i++) await Bun.sleep(Math.min(50, since + ms + 50 - Date.now()));
  expect(Date.now()).toBeGreaterThan(since + ms);
}

/** `mq stats --json` through `socket`. */
async function stats(socket: string): Promise<{ local: Record<string, number>; server: Record<string, number> }> {
  const r = await mq(socket, ["stats", "--json"]);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

let cluster: Awaited<ReturnType<typeof startCluster>>;
beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

let topics = 0;

describe("TTL", () => {
  test("expired on the server before it is pushed: never delivered, the later message is, counted in the server's `expired`", async () => {
    const topic = `ttl.server${++topics}`;
    const id = String(await cluster.create());
    const before = (await stats(cluster.local.socket)).server.expired!;
    // No subscriber yet: both wait in the log.
    expect((await cluster.run(["pub", id, topic, "--ttl", `${SHORT_TTL_MS}ms`, "short"])).code).toBe(0);
    const published = Date.now(); // after the append: its expiry is before published + TTL
    expect((await cluster.run(["pub", id, topic, "--ttl", "1h", "long"])).code).toBe(0);
    expect((await cluster.run(["pub", id, topic, "plain"])).code).toBe(0);
    await waitPast(published, SHORT_TTL_MS);
    expect((await cluster.run(["sub", id, topic, "--from", "earliest"])).code).toBe(0);
    const got = jsonLines((await cluster.run(["recv", id, "--count", "2", "--follow", "--json"])).stdout);
    expect(got.map((m) => [m.seq, m.data])).toEqual([[2, "long"], [3, "plain"]]);
    // Skipped, not lost.
    expect(got.every((m) => m.lost === undefined)).toBe(true);
    expect((await cluster.run(["recv", id, "--wait", "0.3"])).code).toBe(3);
    expect((await stats(cluster.local.socket)).server.expired).toBe(before + 1);
  });

  test("expired in the local broker's buffer before recv: never delivered, acknowledged upstream (not sent again after a restart of the local broker), counted in the local `expired`", async () => {
    const server = await startServer();
    const data = tmpDir("mq-local-");
    let local = await startLocal(server.address, { dataDir: data });
    try {
      const id = String(await createOn(local.socket));
      expect((await mq(local.socket, ["sub", id, "buffered"])).code).toBe(0);
      // Long enough to reach the local broker's buffer before it expires, on a busy machine too.
      expect((await mq(local.socket, ["pub", id, "buffered", "--ttl", `${BUFFERED_TTL_MS}ms`, "a"])).code).toBe(0);
      expect((await mq(local.socket, ["pub", id, "buffered", "--ttl", `${BUFFERED_TTL_MS}ms`, "b"])).code).toBe(0);
      const published = Date.now();
      // Pushed into the local broker's buffer while still live.
      let s = await stats(local.socket);
      for (let i = 0; i < 100 && s.local.received! < 2; i++) {
        await Bun.sleep(20);
        s = await stats(local.socket);
      }
      expect(s.local.pending).toBe(2);
      await waitPast(published, BUFFERED_TTL_MS);
      expect((await mq(local.socket, ["pub", id, "buffered", "c"])).code).toBe(0);
      expect((await mq(local.socket, ["recv", id, "--wait", "10", "--count", "5"])).stdout).toBe("c\n");
      s = await stats(local.socket);
      expect({ expired: s.local.expired, pending: s.local.pending, serverExpired: s.server.expired }).toEqual({ expired: 2, pending: 0, serverExpired: 0 });
      // Acknowledged to the server: a restarted local broker is not sent them again.
      expect(await local.daemon.stop()).toBe(0);
      local = await startLocal(server.address, { dataDir: data, socket: local.socket });
      expect((await mq(local.socket, ["pub", id, "buffered", "d"])).code).toBe(0);
      expect((await mq(local.socket, ["recv", id, "--wait", "10", "--count", "5"])).stdout).toBe("d\n");
    } finally {
      await teardown([local.daemon, server.daemon], [data]);
    }
  });

  test.each([["SIGTERM"], ["SIGKILL"]])("the expiry is in the record: a message that expires while the server is down (%s) is never delivered after the restart", async (signal) => {
    const serverData = tmpDir("mq-server-");
    let server = await startServer({ dataDir: serverData });
    const local = await startLocal(server.address);
    try {
      const id = String(await createOn(local.socket));
      expect((await mq(local.socket, ["pub", id, "down", "--ttl", `${SHORT_TTL_MS}ms`, "short"])).code).toBe(0);
      const published = Date.now();
      expect((await mq(local.socket, ["pub", id, "down", "--ttl", "1d", "long"])).code).toBe(0);
      server = await restartServer(server, [local], { kill: signal === "SIGKILL", between: () => waitPast(published, SHORT_TTL_MS) });
      expect((await mq(local.socket, ["sub", id, "down", "--from", "earliest"])).code).toBe(0);
      const got = jsonLines((await mq(local.socket, ["recv", id, "--follow", "--count", "1", "--json"])).stdout);
      expect(got.map((m) => [m.seq, m.data])).toEqual([[2, "long"]]);
      expect((await mq(local.socket, ["recv", id, "--wait", "0.3"])).code).toBe(3);
      expect((await stats(local.socket)).server.expired).toBe(1);
    } finally {
      await teardown([local.daemon, server.daemon], [serverData, local.dataDir]);
    }
  });

  test("a subscription whose remaining messages all expired moves its cursor past them: after a restart the server does not skip them again", async () => {
    const serverData = tmpDir("mq-server-");
    let server = await startServer({ dataDir: serverData });
    const pubHost = await startLocal(server.address);
    const subData = tmpDir("mq-local-");
    let subHost = await startLocal(server.address, { dataDir: subData });
    try {
      const publisher = String(await createOn(pubHost.socket));
      const subscriber = String(await createOn(subHost.socket));
      expect((await mq(subHost.socket, ["sub", subscriber, "all.expired"])).code).toBe(0);
      expect(await subHost.daemon.stop()).toBe(0);
      expect((await mq(pubHost.socket, ["pub", publisher, "all.expired", "--lines", "--ttl", `${SHORT_TTL_MS}ms`], { stdin: "1\n2\n3\n4\n5\n" })).code).toBe(0);
      const published = Date.now();
      await waitPast(published, SHORT_TTL_MS);
      subHost = await startLocal(server.address, { dataDir: subData, socket: subHost.socket });
      let s = await stats(subHost.socket);
      for (let i = 0; i < 100 && s.server.expired! < 5; i++) {
        await Bun.sleep(20);
        s = await stats(subHost.socket);
      }
      expect({ expired: s.server.expired, received: s.local.received }).toEqual({ expired: 5, received: 0 });
      expect((await mq(subHost.socket, ["recv", subscriber, "--wait", "0.3"])).code).toBe(3);
      // The cursor went past them (written at the graceful stop): the restarted server reads them no more.
      server = await restartServer(server, [pubHost, subHost]);
      expect((await mq(pubHost.socket, ["pub", publisher, "all.expired", "6"])).code).toBe(0);
      expect((await mq(subHost.socket, ["recv", subscriber, "--wait", "10"])).stdout).toBe("6\n");
      expect((await stats(subHost.socket)).server.expired).toBe(0);
    } finally {
      await teardown([subHost.daemon, pubHost.daemon, server.daemon], [serverData, subData, pubHost.dataDir]);
    }
  });

  test("the library's ttlMs: expired before recv, never delivered", async () => {
    await using c = await MqClient.connect({ socket: cluster.local.socket });
    const topic = `ttl.lib${++topics}`;
    const id = await c.create();
    await Promise.all([c.publish(id, topic, "gone", { ttlMs: SHORT_TTL_MS }), c.publish(id, topic, "kept", { ttlMs: 3_600_000 }), c.publish(id, topic, "plain")]);
    const published = Date.now();
    await waitPast(published, SHORT_TTL_MS);
    await c.subscribe(id, [topic], { from: "earliest" });
    const got: string[] = [];
    for (let i = 0; i < 20 && got.length < 2; i++) {
      const r = await c.recv(id, { max: 10, waitMs: 1000 });
      for (const m of r.messages) got.push(m.text());
      await r.ack();
    }
    expect(got).toEqual(["kept", "plain"]);
    await expect(c.publish(id, topic, "x", { ttlMs: 0 })).rejects.toThrow(/ttlMs 0: it must be an integer number of ms >= 1/);
  });

  test.each([["0"], ["0s"], ["abc"], ["-5s"], ["10x"], [""]])("`--ttl %p` is refused: exit 2 naming the value", async (value) => {
    const id = String(await cluster.create());
    const r = await cluster.run(["pub", id, "ttl.bad", "--ttl", value, "m"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--ttl must be a duration`);
    expect(r.stderr).toContain(JSON.stringify(value));
  });
});

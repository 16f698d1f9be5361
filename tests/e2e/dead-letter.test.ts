/** nak, redelivery limits and dead letters through the compiled binary. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/client.ts";
import { createOn, jsonLines, mq, mqCommand, startLocal, startServer, teardown, tmpDir, memoryStore, type LocalHandle, type ServerHandle, restartServer } from "./harness.ts";
import { eventually } from "../security/kit.ts";

let server: ServerHandle;
let host: LocalHandle;
beforeAll(async () => {
  server = await startServer();
  host = await startLocal(server.address);
});
afterAll(async () => {
  await teardown([host?.daemon, server?.daemon].filter((d) => d !== undefined), [host?.dataDir, server?.dataDir].filter((d) => d !== undefined));
});

const serverStats = async (socket: string) => JSON.parse((await mq(socket, ["stats", "--json"])).stdout).server;
/** The server's `dead_lettered` reaches `want` (bounded): it counts a dead letter once its write is durable, and the dead-letter topic pushes it before its fsync. */
const deadLettered = (socket: string, want: number) => eventually(async () => (await serverStats(socket)).dead_lettered === want);

describe("nak and redelivery", () => {
  test("a nak'd message is delivered again; once acknowledged, never again", async () => {
    const id = await createOn(host.socket);
    expect((await mq(host.socket, ["sub", String(id), "retry", "--max-deliver", "5"])).code).toBe(0);
    await mq(host.socket, ["pub", String(id), "retry", "once"]);
    await using client = await MqClient.connect({ socket: host.socket });
    const first = await client.recv(id, { waitMs: 10_000 });
    expect(first.messages.map((m) => m.text())).toEqual(["once"]);
    await first.nak();
    const again = await client.recv(id, { waitMs: 10_000 });
    expect(again.messages.map((m) => [m.seq, m.text()])).toEqual([[first.messages[0]!.seq, "once"]]);
    await again.ack();
    expect((await client.recv(id, { waitMs: 500 })).messages).toEqual([]);
  });

  test("a nak on a plain (cumulative) subscription puts the batch back in front", async () => {
    const id = await createOn(host.socket);
    await mq(host.socket, ["sub", String(id), "plain.retry"]);
    await mq(host.socket, ["pub", String(id), "plain.retry", "--lines"], { stdin: "a\nb\n" });
    await using client = await MqClient.connect({ socket: host.socket });
    const first = await client.recv(id, { max: 2, waitMs: 10_000 });
    await first.nak();
    const again = await client.recv(id, { max: 2, waitMs: 10_000 });
    expect(again.messages.map((m) => m.text())).toEqual(["a", "b"]);
    await again.ack();
  });
});

describe("max-deliver and dead letters", () => {
  test("delivered --max-deliver times without an ack: moved to <topic>.dlq with its payload, counted, not delivered again", async () => {
    const id = await createOn(host.socket);
    const watcher = await createOn(host.socket);
    expect((await mq(host.socket, ["sub", String(id), "orders", "--max-deliver", "2"])).code).toBe(0);
    expect((await mq(host.socket, ["sub", String(watcher), "orders.dlq"])).code).toBe(0);
    const before = (await serverStats(host.socket)).dead_lettered as number;
    expect((await mq(host.socket, ["pub", String(id), "orders", "poison", "--header", "trace=abc"])).code).toBe(0);
    await using client = await MqClient.connect({ socket: host.socket });
    for (let i = 0; i < 2; i++) {
      const got = await client.recv(id, { waitMs: 10_000 });
      expect(got.messages.map((m) => m.text())).toEqual(["poison"]);
      await got.nak();
    }
    const dead = await mq(host.socket, ["recv", String(watcher), "--wait", "10", "--json"]);
    expect(dead.code).toBe(0);
    expect(JSON.parse(dead.stdout)).toMatchObject({
      topic: "orders.dlq",
      data: "poison",
      // The original headers stay; the dead-letter ones say where it came from and why.
      headers: { trace: "abc", "mq-dead-topic": "orders", "mq-dead-seq": "1", "mq-dead-reason": "max-deliver", "mq-dead-deliveries": "2" },
    });
    expect(await deadLettered(host.socket, before + 1)).toBe(true);
    expect((await client.recv(id, { waitMs: 500 })).messages).toEqual([]);
  });

  test("a recv whose connection closes before it acknowledges counts as a delivery (the local broker gives it back to the server)", async () => {
    const id = await createOn(host.socket);
    const watcher = await createOn(host.socket);
    await mq(host.socket, ["sub", String(id), "killed", "--max-deliver", "2", "--dead-letter", "killed.dead"]);
    await mq(host.socket, ["sub", String(watcher), "killed.dead"]);
    await mq(host.socket, ["pub", String(id), "killed", "fragile"]);
    for (let i = 0; i < 2; i++) {
      const client = await MqClient.connect({ socket: host.socket });
      const got = await client.recv(id, { waitMs: 10_000 });
      expect(got.messages.map((m) => m.text())).toEqual(["fragile"]);
      await client.close(); // never acknowledged
    }
    expect((await mq(host.socket, ["recv", String(watcher), "--wait", "10"])).stdout).toBe("fragile\n");
    expect((await mq(host.socket, ["recv", String(id), "--wait", "0.5"])).code).toBe(3);
  });

  test("an `mq recv` killed (SIGKILL) before it acknowledged: the delivery counts, and at --max-deliver 1 the message is dead-lettered", async () => {
    const id = await createOn(host.socket);
    const watcher = await createOn(host.socket);
    await mq(host.socket, ["sub", String(id), "cli.killed", "--max-deliver", "1"]);
    await mq(host.socket, ["sub", String(watcher), "cli.killed.dlq"]);
    // Bigger than a pipe's buffer, into a pipe nobody reads: the recv blocks in its write, before its ack.
    const big = "x".repeat(256 * 1024);
    expect((await mq(host.socket, ["pub", String(id), "cli.killed"], { stdin: big })).code).toBe(0);
    const delivered = async () => JSON.parse((await mq(host.socket, ["stats", "--json"])).stdout).local.delivered as number;
    const before = await delivered();
    // Each side prints its pid, then becomes the program: both are killed by pid below.
    const script = `sh -c 'echo "$$" >&2; exec "$0" "$@"' ${mqCommand().join(" ")} recv ${id} --wait 10 | sh -c 'echo "$$" >&2; exec sleep 30'`;
    const pipeline = Bun.spawn(["sh", "-c", script], { stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { ...process.env, MQ_SOCKET: host.socket } });
    const pids: number[] = [];
    try {
      const reader = pipeline.stderr.getReader();
      let text = "";
      for (let i = 0; i < 10 && text.trim().split("\n").length < 2; i++) text += new TextDecoder().decode((await reader.read()).value ?? new Uint8Array());
      pids.push(...text.trim().split("\n").map(Number));
      expect(pids.length).toBe(2);
      for (let i = 0; i < 100 && (await delivered()) === before; i++) await Bun.sleep(100);
      expect(await delivered()).toBe(before + 1);
    } finally {
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      await pipeline.exited;
    }
    const dead = await mq(host.socket, ["recv", String(watcher), "--wait", "10"]);
    expect(dead.stdout).toBe(`${big}\n`);
    expect((await mq(host.socket, ["recv", String(id), "--wait", "0.5"])).code).toBe(3);
  });

  test("bad --max-deliver and --dead-letter values are refused, naming the value", async () => {
    const id = await createOn(host.socket);
    for (const bad of ["0", "-1", "abc", "1.5"]) {
      const r = await mq(host.socket, ["sub", String(id), "t", `--max-deliver=${bad}`]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("--max-deliver");
      expect(r.stderr).toContain(JSON.stringify(bad));
    }
    const self = await mq(host.socket, ["sub", String(id), "loop", "--max-deliver", "3", "--dead-letter", "loop"]);
    expect(self.code).not.toBe(0);
    expect(self.stderr).toContain('cannot be "loop" itself');
    const invalid = await mq(host.socket, ["sub", String(id), "t", "--max-deliver", "3", "--dead-letter", "bad topic"]);
    expect(invalid.code).not.toBe(0);
    expect(invalid.stderr).toContain("invalid topic");
  });
});

describe("a member that leaves", () => {
  test("what its local broker only buffered (never handed to a client) goes to the other member uncounted: nothing dead-lettered at --max-deliver 1", async () => {
    const a = await createOn(host.socket);
    const b = await createOn(host.socket);
    const watcher = await createOn(host.socket);
    const stats = async () => JSON.parse((await mq(host.socket, ["stats", "--json"])).stdout) as { local: { received: number }; server: { dead_lettered: number } };
    expect((await mq(host.socket, ["sub", String(a), "md1", "--group", "workers", "--max-deliver", "1"])).code).toBe(0);
    expect((await mq(host.socket, ["sub", String(watcher), "md1.dlq"])).code).toBe(0);
    const before = await stats();
    const lines = Array.from({ length: 10 }, (_, i) => `m${i + 1}`);
    expect((await mq(host.socket, ["pub", String(a), "md1", "--lines"], { stdin: lines.join("\n") + "\n" })).code).toBe(0);
    // All ten in A's buffer (the only member yet), none handed to a client.
    for (let i = 0; i < 100 && (await stats()).local.received < before.local.received + 10; i++) await Bun.sleep(100);
    expect((await stats()).local.received).toBeGreaterThanOrEqual(before.local.received + 10);
    expect((await mq(host.socket, ["sub", String(b), "md1", "--group", "workers", "--max-deliver", "1"])).code).toBe(0);
    expect((await mq(host.socket, ["unsub", String(a), "md1"])).code).toBe(0);
    const got: string[] = [];
    for (let i = 0; i < 10 && got.length < 10; i++) {
      const r = await mq(host.socket, ["recv", String(b), "--count", "10", "--wait", "2", "--json"]);
      got.push(...jsonLines(r.stdout).map((m) => m.data as string));
    }
    expect(got.sort()).toEqual([...lines].sort());
    expect((await stats()).server.dead_lettered).toBe(before.server.dead_lettered);
    expect((await mq(host.socket, ["recv", String(watcher), "--wait", "0.5"])).code).toBe(3);
  });
});

describe("dead letters: limits and loops", () => {
  test("a message with the most headers allowed (64) still reaches the dead-letter topic: its headers are left out and counted", async () => {
    const id = await createOn(host.socket);
    const watcher = await createOn(host.socket);
    await mq(host.socket, ["sub", String(id), "full.headers", "--max-deliver", "1"]);
    await mq(host.socket, ["sub", String(watcher), "full.headers.dlq"]);
    const headerArgs = Array.from({ length: 64 }, (_, i) => ["--header", `k${i}=v`]).flat();
    expect((await mq(host.socket, ["pub", String(id), "full.headers", "heavy", ...headerArgs])).code).toBe(0);
    await using client = await MqClient.connect({ socket: host.socket });
    const got = await client.recv(id, { waitMs: 10_000 });
    expect(got.messages.map((m) => m.text())).toEqual(["heavy"]);
    await got.nak();
    const dead = await mq(host.socket, ["recv", String(watcher), "--wait", "10", "--json"]);
    expect(dead.code).toBe(0);
    expect(JSON.parse(dead.stdout)).toMatchObject({ data: "heavy", headers: { "mq-dead-topic": "full.headers", "mq-dead-headers-dropped": "64" } });
  });

  test("a dead letter is not dead-lettered again (A to B, B to A): dropped and counted", async () => {
    const x = await createOn(host.socket);
    const y = await createOn(host.socket);
    await mq(host.socket, ["sub", String(x), "loop.a", "--max-deliver", "1", "--dead-letter", "loop.b"]);
    await mq(host.socket, ["sub", String(y), "loop.b", "--max-deliver", "1", "--dead-letter", "loop.a"]);
    const before = (await serverStats(host.socket)).dead_letters_dropped as number;
    await mq(host.socket, ["pub", String(x), "loop.a", "bounce"]);
    await using client = await MqClient.connect({ socket: host.socket });
    const first = await client.recv(x, { waitMs: 10_000 });
    expect(first.messages.map((m) => m.text())).toEqual(["bounce"]);
    await first.nak();
    const second = await client.recv(y, { waitMs: 10_000 });
    expect(second.messages.map((m) => [m.text(), m.headers?.["mq-dead-topic"]])).toEqual([["bounce", "loop.a"]]);
    await second.nak();
    for (let i = 0; i < 100 && (await serverStats(host.socket)).dead_letters_dropped === before; i++) await Bun.sleep(50);
    expect((await serverStats(host.socket)).dead_letters_dropped).toBe(before + 1);
    expect((await client.recv(x, { waitMs: 500 })).messages).toEqual([]);
  });

  test("a message whose TTL ran out before its last nak is not dead-lettered: done, and counted in `expired`", async () => {
    const id = await createOn(host.socket);
    const watcher = await createOn(host.socket);
    await mq(host.socket, ["sub", String(id), "stale", "--max-deliver", "1"]);
    await mq(host.socket, ["sub", String(watcher), "stale.dlq"]);
    const before = await serverStats(host.socket);
    expect((await mq(host.socket, ["pub", String(id), "stale", "short-lived", "--ttl", "2s"])).code).toBe(0);
    await using client = await MqClient.connect({ socket: host.socket });
    const got = await client.recv(id, { waitMs: 10_000 });
    expect(got.messages.map((m) => m.text())).toEqual(["short-lived"]);
    // Only time can show an expiry: wait (bounded) until the clock is past it.
    const expiresAt = got.messages[0]!.expiresAt!;
    for (let i = 0; i < 100 && Date.now() <= expiresAt; i++) await Bun.sleep(50);
    expect(Date.now()).toBeGreaterThan(expiresAt);
    await got.nak();
    for (let i = 0; i < 100 && (await serverStats(host.socket)).expired === before.expired; i++) await Bun.sleep(50);
    const after = await serverStats(host.socket);
    expect([after.expired, after.dead_lettered]).toEqual([before.expired + 1, before.dead_lettered]);
    expect((await mq(host.socket, ["recv", String(watcher), "--wait", "0.5"])).code).toBe(3);
    expect((await client.recv(id, { waitMs: 300 })).messages).toEqual([]);
  });

  test("the dead letter of a message with a TTL keeps its expiry: it is not delivered after the original would have been", async () => {
    const id = await createOn(host.socket);
    const watcher = await createOn(host.socket);
    await mq(host.socket, ["sub", String(id), "perishable", "--max-deliver", "1"]);
    await mq(host.socket, ["sub", String(watcher), "perishable.dlq"]);
    expect((await mq(host.socket, ["pub", String(id), "perishable", "milk", "--ttl", "1h"])).code).toBe(0);
    await using client = await MqClient.connect({ socket: host.socket });
    const got = await client.recv(id, { waitMs: 10_000 });
    expect(got.messages[0]!.expiresAt).toBeNumber();
    await got.nak();
    const dead = await client.recv(watcher, { waitMs: 10_000 });
    expect(dead.messages.map((m) => [m.text(), m.headers?.["mq-dead-topic"], m.expiresAt])).toEqual([["milk", "perishable", got.messages[0]!.expiresAt]]);
    await dead.ack();
  });

  test("bad combinations are refused: --dead-letter without --max-deliver (exit 2), a default <topic>.dlq above the name limit (exit 1), --ttl too long (exit 2)", async () => {
    const id = await createOn(host.socket);
    const alone = await mq(host.socket, ["sub", String(id), "t", "--dead-letter", "t.dead"]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain("--dead-letter t.dead needs --max-deliver");
    const long = "n".repeat(198);
    const tooLong = await mq(host.socket, ["sub", String(id), long, "--max-deliver", "2"]);
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toContain("name one with --dead-letter");
    expect((await mq(host.socket, ["sub", String(id), long, "--max-deliver", "2", "--dead-letter", "short.dead"])).code).toBe(0);
    const ttl = await mq(host.socket, ["pub", String(id), "t", "x", "--ttl", "99999999999d"]);
    expect(ttl.code).toBe(2);
    expect(ttl.stderr).toContain('--ttl "99999999999d" is too long');
  });
});

describe("dead letters across a server restart", () => {
  // What a restart keeps is the file store's promise; the memory store keeps nothing.
  test.skipIf(memoryStore)("--max-deliver and --dead-letter of a subscription survive a restart (SIGTERM)", async () => {
    const data = tmpDir("mq-server-");
    let srv = await startServer({ dataDir: data });
    const local = await startLocal(srv.address);
    try {
      const id = await createOn(local.socket);
      const watcher = await createOn(local.socket);
      await mq(local.socket, ["sub", String(id), "kept", "--max-deliver", "1", "--dead-letter", "kept.dead"]);
      await mq(local.socket, ["sub", String(watcher), "kept.dead"]);
      srv = await restartServer(srv, [local]);
      await mq(local.socket, ["pub", String(id), "kept", "bad-one"]);
      await using client = await MqClient.connect({ socket: local.socket });
      const got = await client.recv(id, { waitMs: 10_000 });
      expect(got.messages.map((m) => m.text())).toEqual(["bad-one"]);
      await got.nak();
      expect((await mq(local.socket, ["recv", String(watcher), "--wait", "10"])).stdout).toBe("bad-one\n");
      expect(await deadLettered(local.socket, 1)).toBe(true);
    } finally {
      await teardown([local.daemon, srv.daemon], [data, local.dataDir]);
    }
  });
  test.skipIf(memoryStore)("dead letters above a floor another member pins are not delivered again after a clean restart (SIGTERM)", async () => {
    const data = tmpDir("mq-server-");
    let srv = await startServer({ dataDir: data });
    const local = await startLocal(srv.address);
    try {
      const holder = await createOn(local.socket);
      const naker = await createOn(local.socket);
      const watcher = await createOn(local.socket);
      await mq(local.socket, ["sub", String(holder), "pinned.dl", "--group", "w", "--max-deliver", "1"]);
      await mq(local.socket, ["sub", String(watcher), "pinned.dl.dlq"]);
      // The holder's window takes the first 256 and it never recvs them: the floor stays at 1.
      await mq(local.socket, ["pub", String(holder), "pinned.dl", "--lines"], { stdin: Array.from({ length: 300 }, (_, i) => `m${i + 1}\n`).join("") });
      await mq(local.socket, ["sub", String(naker), "pinned.dl", "--group", "w", "--max-deliver", "1"]);
      await using client = await MqClient.connect({ socket: local.socket });
      const got = await client.recv(naker, { max: 1000, waitMs: 10_000 });
      const dead = got.messages.map((m) => m.seq);
      expect(dead.length).toBeGreaterThan(0);
      await got.nak();
      const letters: number[] = [];
      for (let i = 0; i < 50 && letters.length < dead.length; i++) {
        const batch = await client.recv(watcher, { max: 1000, waitMs: 1000 });
        letters.push(...batch.messages.map((m) => Number(m.headers?.["mq-dead-seq"])));
        await batch.ack();
      }
      expect(letters.sort((a, b) => a - b)).toEqual(dead);
      await client.close();

      srv = await restartServer(srv, [local]);
      const after: number[] = [];
      for (const id of [holder, naker]) {
        const r = await mq(local.socket, ["recv", String(id), "--follow", "--count", "100000", "--wait", "2", "--json"], { timeoutMs: 60_000 });
        after.push(...jsonLines(r.stdout).map((m) => m.seq as number));
      }
      // What the holder held comes again (it never received it); the dead letters do not, to a member or to the dead-letter topic.
      expect(after.filter((seq) => dead.includes(seq))).toEqual([]);
      expect([...after, ...dead].sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
      expect((await mq(local.socket, ["recv", String(watcher), "--wait", "1"])).code).toBe(3);
    } finally {
      await teardown([local.daemon, srv.daemon], [data, local.dataDir]);
    }
  });
});

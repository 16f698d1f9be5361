/**
 * The local broker's memory is bounded by its byte budgets (`--buffer-bytes`,
 * `--buffer-bytes-per-id`), not by the number of subscriptions: the server stops pushing
 * while a budget is full and resumes as acks free room. Before the budgets, one id
 * subscribed to 1,000 topics with one 1 MiB message each, never received, grew the local
 * broker to 1.1 GB (bench/lazy-consumer.ts); here the same at 300 × 256 KiB.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, test } from "bun:test";
import { connect } from "../../lib/client/index.ts";
import { deliveryCost } from "../../lib/wire/messages.ts";
import { createOn, jsonLines, mq, startLocal, startServer, teardown, tmpDir, type RunResult } from "./harness.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 256 * KiB;

/** A payload of `size` bytes that starts with its topic's name. */
function payload(topic: string, size = SIZE): string {
  return `${topic}:`.padEnd(size, "x");
}

/**
 * Publishes `[topic, data]` pairs in order through the client library: hundreds of `mq pub`
 * processes would take most of the test's time. Everything under test (the daemons, recv,
 * stats) is the compiled binary.
 */
async function publishAll(socket: string, id: number, messages: Array<[string, string]>): Promise<void> {
  await using client = await connect({ socket });
  // A few at a time: the client's own outbound queue stays small.
  for (let i = 0; i < messages.length; i += 8) await Promise.all(messages.slice(i, i + 8).map(([t, data]) => client.publish(id, t, data)));
}

function ok(r: RunResult): RunResult {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
  return r;
}

/** Two daemons with the local broker's flags `localArgs`, and a CLI on it; torn down by PID. */
async function cluster(localArgs: string[]) {
  const server = await startServer({ args: ["--fsync", "never"] });
  const local = await startLocal(server.address, { args: localArgs });
  const run = (args: string[], opts?: Parameters<typeof mq>[2]) => mq(local.socket, args, { timeoutMs: 60_000, ...opts });
  return {
    run,
    create: () => createOn(local.socket),
    publish: (id: number, messages: Array<[string, string]>) => publishAll(local.socket, id, messages),
    async stats(): Promise<Record<string, number>> {
      return JSON.parse(ok(await run(["stats", "--json"])).stdout).local;
    },
    /** Polls the local broker's stats (a bounded number of times) until `done` holds; returns the last. */
    async statsWhen(done: (s: Record<string, number>) => boolean): Promise<Record<string, number>> {
      let s = await this.stats();
      for (let i = 0; i < 300 && !done(s); i++) {
        await Bun.sleep(50);
        s = await this.stats();
      }
      return s;
    },
    /**
     * Returns once what the server pushed so far has reached the local broker: a message to
     * another id comes after it on the same connection.
     */
    async sync(): Promise<void> {
      const probe = await createOn(local.socket);
      ok(await run(["sub", String(probe), "probe"]));
      ok(await run(["pub", String(probe), "probe", "sync"]));
      expect(ok(await run(["recv", String(probe), "--wait", "10"])).stdout).toBe("sync\n");
    },
    async [Symbol.asyncDispose]() {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    },
  };
}

describe("local broker buffer budgets", () => {
  test("a lazy consumer of 300 topics holds its budget and no more; then every message arrives once, in order per topic", async () => {
    await using c = await cluster(["--buffer-bytes-per-id", "4M"]);
    const lazy = await c.create();
    const topics = Array.from({ length: 300 }, (_, i) => `lazy.t${i}`);
    // In requests of 50: creating a topic costs several fsyncs, and one request must finish
    // within the local broker's request timeout even on a loaded machine.
    for (let i = 0; i < topics.length; i += 50) ok(await c.run(["sub", String(lazy), ...topics.slice(i, i + 50)]));
    await c.publish(lazy, topics.map((t) => [t, payload(t)]));
    // A second, small message in the last topics, for the order check. (Not in the first
    // ones: the local broker must learn that more will come from topics it has not heard of.)
    const twice = topics.slice(-20);
    await c.publish(lazy, twice.map((t) => [t, `${t}:second`]));

    const budget = 4 * MiB;
    await c.statsWhen((s) => s.buffered_bytes! >= budget);
    await c.sync();
    const held = await c.stats();
    // Without budgets this is all 300 messages (75 MiB): one credit window per subscription.
    expect(held.buffered_bytes).toBeGreaterThanOrEqual(budget);
    expect(held.buffered_bytes).toBeLessThanOrEqual(budget + deliveryCost(SIZE));
    expect(held.pending).toBe(Math.ceil(budget / deliveryCost(SIZE)));
    expect([held.buffer_bytes, held.buffer_bytes_per_id]).toEqual([64 * MiB, budget]);

    // `--count` without `--follow` goes on while the local broker says more will come,
    // also from topics of which nothing has reached it yet.
    const first = ok(await c.run(["recv", String(lazy), "--count", "200", "--json"]));
    const rest = ok(await c.run(["recv", String(lazy), "--follow", "--count", "120", "--json"]));
    const got = [...jsonLines(first.stdout), ...jsonLines(rest.stdout)];
    expect(jsonLines(first.stdout)).toHaveLength(200);
    const keys = got.map((m) => `${m.topic}/${m.seq}`);
    const expected = [...topics.map((t) => `${t}/1`), ...twice.map((t) => `${t}/2`)];
    expect(keys.toSorted()).toEqual(expected.toSorted());
    for (const t of twice) {
      const mine = got.filter((m) => m.topic === t);
      expect(mine.map((m) => [m.seq, m.data])).toEqual([
        [1, payload(t)],
        [2, `${t}:second`],
      ]);
    }
    expect((await c.run(["recv", String(lazy)])).code).toBe(3);
    const after = await c.stats();
    expect([after.pending, after.buffered_bytes]).toEqual([0, 0]);
  });

  test("an active id keeps receiving while a lazy one's budget is full, and the broker's budget holds across ids", async () => {
    const perId = 4 * MiB;
    const broker = 6 * MiB;
    await using c = await cluster(["--buffer-bytes", "6M", "--buffer-bytes-per-id", "4M"]);
    const fill = async (id: number, prefix: string) => {
      const topics = Array.from({ length: 30 }, (_, i) => `${prefix}.t${i}`);
      ok(await c.run(["sub", String(id), ...topics]));
      await c.publish(id, topics.map((t) => [t, payload(t)]));
    };
    const lazy = await c.create();
    await fill(lazy, "lazy1");
    await c.statsWhen((s) => s.buffered_bytes! >= perId);

    // 40 messages of 200 KB: more than the 2 MiB the broker's budget leaves, so they come as
    // the active id acknowledges, past the lazy id's full budget.
    const active = await c.create();
    ok(await c.run(["sub", String(active), "act"]));
    const lines = Array.from({ length: 40 }, (_, i) => `${i + 1}:`.padEnd(200_000, "y"));
    ok(await c.run(["pub", String(active), "act", "--lines"], { stdin: `${lines.join("\n")}\n` }));
    const r = ok(await c.run(["recv", String(active), "--follow", "--count", "40", "--json"]));
    expect(jsonLines(r.stdout).map((m) => m.data)).toEqual(lines);

    let s = await c.stats();
    expect(s.buffered_bytes_max_id).toBeGreaterThanOrEqual(perId);
    expect(s.buffered_bytes_max_id).toBeLessThanOrEqual(perId + deliveryCost(SIZE));

    // A second lazy id gets what the broker's budget has left, not its own 4 MiB.
    const lazy2 = await c.create();
    await fill(lazy2, "lazy2");
    s = await c.statsWhen((s) => s.buffered_bytes! >= broker);
    expect(s.buffered_bytes).toBeGreaterThanOrEqual(broker);
    expect(s.buffered_bytes).toBeLessThanOrEqual(broker + deliveryCost(SIZE));
    expect(s.buffered_bytes_max_id).toBeLessThanOrEqual(perId + deliveryCost(SIZE));
    expect(s.pending).toBeLessThan(Math.ceil(2 * perId / deliveryCost(SIZE)));
  });

  test("a message bigger than the per-id budget is still delivered, one at a time", async () => {
    await using c = await cluster(["--buffer-bytes-per-id", "512K"]);
    const id = await c.create();
    ok(await c.run(["sub", String(id), "big.a", "big.b"]));
    const big = (t: string) => payload(t, MiB); // the server's default --max-message-bytes
    ok(await c.run(["pub", String(id), "big.a", "--raw"], { stdin: big("big.a") }));
    ok(await c.run(["pub", String(id), "big.b", "--raw"], { stdin: big("big.b") }));
    await c.statsWhen((s) => s.pending! >= 1);
    await c.sync();
    const s = await c.stats();
    expect([s.pending, s.buffered_bytes]).toEqual([1, deliveryCost(MiB)]);
    const got = jsonLines(ok(await c.run(["recv", String(id), "--follow", "--count", "2", "--json"])).stdout);
    expect(got.map((m) => [m.topic, m.seq, m.data]).toSorted()).toEqual([
      ["big.a", 1, big("big.a")],
      ["big.b", 1, big("big.b")],
    ]);
  });

  test("a budget of 0 or with an unknown unit is bad usage (exit 2), for mq local and mq up", async () => {
    const dir = tmpDir("mq-budget-");
    try {
      const where = ["--data", dir, "--socket", path.join(dir, "s.sock")];
      const cases: Array<[string[], RegExp]> = [
        [["local", "--buffer-bytes", "0", ...where], /--buffer-bytes must be at least 1 byte, got "0"/],
        [["local", "--buffer-bytes-per-id", "1Q", ...where], /--buffer-bytes-per-id must be a size like 512, 64K, 100M or 10G, got "1Q"/],
        [["up", "--buffer-bytes-per-id", "0", "--listen", "127.0.0.1:0", ...where], /--buffer-bytes-per-id must be at least 1 byte/],
        [["up", "--buffer-bytes", "1Q", "--listen", "127.0.0.1:0", ...where], /--buffer-bytes must be a size/],
      ];
      for (const [args, message] of cases) {
        const r = await mq(null, args);
        expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 2, stdout: "" });
        expect(r.stderr).toMatch(message);
      }
      expect(fs.readdirSync(dir)).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

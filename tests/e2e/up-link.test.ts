/**
 * `mq up` joins its local broker to its server in memory (lib/wire/memory-link.ts) unless
 * `--link tcp`: everything the loopback TCP link promised holds in-process — no acknowledged
 * message lost to a SIGKILL, order, a lazy consumer's memory bounded by its budget with
 * delivery resuming afterwards, the server's errors with their codes, `mq stats` with the
 * server's part, the server seeing its local broker.
 */
import * as fs from "node:fs";
import { describe, expect, test } from "bun:test";
import { connect } from "../../lib/client/index.ts";
import { deliveryCost } from "../../lib/wire/messages.ts";
import { createOn, jsonLines, memoryStore, mq, startUp, teardown, type RunResult } from "./harness.ts";

function ok(r: RunResult): RunResult {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
  return r;
}

const KiB = 1024;
const MiB = 1024 * KiB;

describe("mq up, local broker and server linked in memory", () => {
  test.skipIf(memoryStore)("SIGKILL mid-stream: every publish acknowledged before the kill is delivered after the restart, in order", async () => {
    let up = await startUp();
    const { dataDir, port } = up;
    try {
      expect(up.daemon.log).toMatch(/local broker .* connected from in-process/);
      expect(up.daemon.log).toMatch(/connected to the server 127\.0\.0\.1:\d+ in this process \(in memory\)/);
      const id = await createOn(up.socket);
      ok(await mq(up.socket, ["sub", String(id), "crash"]));
      const acked: number[] = [];
      const client = await connect({ socket: up.socket });
      // Rounds of 50 publishes in flight; the kill lands in the middle of the eleventh.
      for (let round = 0; round <= 10; round++) {
        const sent = Array.from({ length: 50 }, (_, i) => {
          const n = round * 50 + i;
          return client.publish(id, "crash", `m${n}`).then(
            () => void acked.push(n),
            () => {},
          );
        });
        if (round < 10) await Promise.all(sent);
      }
      await up.daemon.kill9();
      // What was acknowledged before the process died (an answer still unread is left out: a subset is as strict).
      const ackedBeforeKill = acked.toSorted((a, b) => a - b);
      client.close();
      expect(ackedBeforeKill.length).toBeGreaterThanOrEqual(500);

      up = await startUp({ dataDir, port });
      const r = ok(await mq(up.socket, ["recv", String(id), "--follow", "--count", String(ackedBeforeKill.length), "--wait", "20", "--json"], { timeoutMs: 60_000 }));
      const got = jsonLines(r.stdout).map((m) => Number(String(m.data).slice(1)));
      // At least once: duplicates are possible after a crash; loss and reordering are not.
      const firsts = got.filter((n, i) => got.indexOf(n) === i);
      expect(firsts.slice(0, ackedBeforeKill.length)).toEqual(ackedBeforeKill);
    } finally {
      await teardown([up.daemon], [dataDir]);
    }
  });

  test("a lazy consumer holds its budget and no more; delivery resumes as it reads, every message once and in order", async () => {
    const budget = 8 * MiB;
    const size = 512 * KiB;
    // One credit window (1 MiB) per subscription: 20 topics could hold 20 MiB without the budget.
    const topics = Array.from({ length: 20 }, (_, i) => `lazy.t${i}`);
    const perTopic = 3;
    const up = await startUp({ args: ["--buffer-bytes-per-id", "8M", "--fsync", "never"] });
    try {
      const lazy = await createOn(up.socket);
      ok(await mq(up.socket, ["sub", String(lazy), ...topics]));
      {
        await using client = await connect({ socket: up.socket });
        for (let k = 0; k < perTopic; k++) {
          for (let i = 0; i < topics.length; i += 4) {
            await Promise.all(topics.slice(i, i + 4).map((t) => client.publish(lazy, t, `${t}/${k}:`.padEnd(size, "x"))));
          }
        }
      }
      const stats = async () => JSON.parse(ok(await mq(up.socket, ["stats", "--json"])).stdout) as { local: Record<string, number>; server: Record<string, number> };
      let s = await stats();
      for (let i = 0; i < 200 && s.local.buffered_bytes! < budget; i++) {
        await Bun.sleep(50);
        s = await stats();
      }
      // What the server pushed so far has arrived once a message to another id has come after it.
      const probe = await createOn(up.socket);
      ok(await mq(up.socket, ["sub", String(probe), "probe"]));
      ok(await mq(up.socket, ["pub", String(probe), "probe", "sync"]));
      expect(ok(await mq(up.socket, ["recv", String(probe), "--wait", "10"])).stdout).toBe("sync\n");
      s = await stats();
      expect(s.local.buffered_bytes).toBeGreaterThanOrEqual(budget);
      expect(s.local.buffered_bytes).toBeLessThanOrEqual(budget + deliveryCost(size));
      expect(s.server.published).toBe(topics.length * perTopic + 1);

      const total = topics.length * perTopic;
      const r = ok(await mq(up.socket, ["recv", String(lazy), "--follow", "--count", String(total), "--wait", "20", "--json"], { timeoutMs: 60_000 }));
      const got = jsonLines(r.stdout).map((m) => `${m.seq} ${String(m.data).split(":")[0]}`);
      expect(got).toHaveLength(total);
      for (const t of topics) expect(got.filter((g) => g.endsWith(` ${t}/0`) || g.endsWith(` ${t}/1`) || g.endsWith(` ${t}/2`))).toEqual([`1 ${t}/0`, `2 ${t}/1`, `3 ${t}/2`]);
      expect((await mq(up.socket, ["recv", String(lazy)])).code).toBe(3);
    } finally {
      await teardown([up.daemon], [up.dataDir]);
    }
  });

  test("what the hot frames carry goes through as it is: one push for several ids, headers, msg-id duplicates, batches, queue groups", async () => {
    const up = await startUp();
    try {
      const ids = [await createOn(up.socket), await createOn(up.socket), await createOn(up.socket)];
      for (const id of ids) ok(await mq(up.socket, ["sub", String(id), "orders"]));
      const [a] = ids as [number];
      ok(await mq(up.socket, ["pub", String(a), "orders", "--header", "trace=ab12", "--msg-id", "o-1", "first"]));
      expect(ok(await mq(up.socket, ["pub", String(a), "orders", "--msg-id", "o-1", "again"])).stdout).toContain("duplicate");
      ok(await mq(up.socket, ["pub", String(a), "orders", "--lines"], { stdin: "l1\nl2\nl3\n" }));
      for (const id of ids) {
        const got = jsonLines(ok(await mq(up.socket, ["recv", String(id), "--count", "10", "--json"])).stdout);
        expect(got.map((m) => [m.seq, m.data])).toEqual([
          [1, "first"],
          [2, "l1"],
          [3, "l2"],
          [4, "l3"],
        ]);
        expect(got[0]!.headers).toEqual({ trace: "ab12" });
      }
      const stats = JSON.parse(ok(await mq(up.socket, ["stats", "--json"])).stdout);
      expect(stats.server.fanout_shared).toBeGreaterThan(0); // pushed once for the three ids

      // A queue group: each message to one member, acknowledged per message (explicit acks).
      const [w1, w2] = [await createOn(up.socket), await createOn(up.socket)];
      for (const w of [w1, w2]) ok(await mq(up.socket, ["sub", String(w), "jobs", "--group", "workers"]));
      ok(await mq(up.socket, ["pub", String(a), "jobs", "--lines"], { stdin: "j1\nj2\nj3\nj4\n" }));
      const taken: string[] = [];
      for (let i = 0; i < 20 && taken.length < 4; i++) {
        for (const w of [w1, w2]) {
          const r = await mq(up.socket, ["recv", String(w), "--count", "4", "--json"]);
          if (r.code === 0) taken.push(...jsonLines(r.stdout).map((m) => String(m.data)));
        }
      }
      expect(taken.toSorted()).toEqual(["j1", "j2", "j3", "j4"]);
      for (const w of [w1, w2]) expect((await mq(up.socket, ["recv", String(w)])).code).toBe(3);
    } finally {
      await teardown([up.daemon], [up.dataDir]);
    }
  });

  test("--fsync never, many publish batches in flight from two clients and a recv loop: every message once, each client's in call order, seqs in call order", async () => {
    const up = await startUp({ args: ["--fsync", "never"] });
    const [p1, p2, sub] = await Promise.all([connect({ socket: up.socket }), connect({ socket: up.socket }), connect({ socket: up.socket })]);
    try {
      const [a, b, s] = [await p1.create(), await p2.create(), await sub.create()];
      await sub.subscribe(s, ["many"]);
      const n = 20_000;
      // The library keeps up to 16 batches of each client in flight.
      const pubs = [p1, p2].map((c, k) => Promise.all(Array.from({ length: n }, (_, i) => c.publish(k === 0 ? a : b, "many", `${k}:${i}`).then((r) => r.seq))));
      const got: string[] = [];
      for (let round = 0; round < 1000 && got.length < 2 * n; round++) {
        const r = await sub.recv(s, { max: 1000, waitMs: 5000 });
        for (const m of r.messages) got.push(new TextDecoder().decode(m.data));
        if (r.messages.length > 0) await r.ack();
      }
      for (const seqs of await Promise.all(pubs)) expect(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!)).toBe(true);
      expect(got).toHaveLength(2 * n);
      for (const k of [0, 1]) expect(got.filter((m) => m.startsWith(`${k}:`))).toEqual(Array.from({ length: n }, (_, i) => `${k}:${i}`));
    } finally {
      for (const c of [p1, p2, sub]) c.close();
      await teardown([up.daemon], [up.dataDir]);
    }
  });

  test("the server's refusal comes back through the link with its code; mq stats shows both parts; SIGTERM stops cleanly", async () => {
    const up = await startUp({ args: ["--max-topics", "3"] });
    try {
      const id = await createOn(up.socket);
      const refused = await mq(up.socket, ["sub", String(id), "a", "b", "c", "d", "e"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/LIMIT_EXCEEDED/);
      expect(refused.stderr).toMatch(/--max-topics|3 topics|limit/i);
      const stats = JSON.parse(ok(await mq(up.socket, ["stats", "--json"])).stdout);
      expect(stats.local.connected).toBe(true);
      expect([stats.server.sessions, stats.server.connections, stats.server.accepted]).toEqual([1, 1, 1]);
      expect(await up.daemon.stop()).toBe(0);
      // The local broker stops first, then the server.
      expect(up.daemon.log.indexOf("[local]", up.daemon.log.indexOf("received: stopping"))).toBeLessThan(up.daemon.log.indexOf("[server] stopped"));
    } finally {
      await teardown([up.daemon], [up.dataDir]);
    }
  });

  test("--link tcp keeps the loopback TCP link; --link with another value is bad usage (exit 2) naming it", async () => {
    const up = await startUp({ args: ["--link", "tcp"] });
    try {
      expect(up.daemon.log).toMatch(/local broker .* connected from 127\.0\.0\.1:\d+/);
      expect(up.daemon.log).not.toContain("in this process");
      const id = await createOn(up.socket);
      ok(await mq(up.socket, ["sub", String(id), "t"]));
      ok(await mq(up.socket, ["pub", String(id), "t", "over tcp"]));
      expect(ok(await mq(up.socket, ["recv", String(id)])).stdout).toBe("over tcp\n");
    } finally {
      await teardown([up.daemon], [up.dataDir]);
    }
    const dir = fs.mkdtempSync("/tmp/mq-up-link-");
    try {
      const bad = await mq(null, ["up", "--link", "udp", "--data", dir, "--listen", "127.0.0.1:0"]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('--link must be memory');
      expect(bad.stderr).toContain('got "udp"');
      expect(fs.readdirSync(dir)).toEqual([]); // refused before anything was written
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

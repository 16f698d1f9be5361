/**
 * Fault tests 3–5 of the durability issue and the bounded-memory promise: a torn tail on
 * disk, the server away for 10 s, a disk that is full, and a consumer that never reads.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { mq, startLocal, startServer, tmpDir, jsonLines, createOn, teardown } from "../e2e/harness.ts";
import { FILE_HEADER, RECORD_HEADER } from "../../lib/store/topic-log.ts";
import { MIN_WINDOW_MESSAGES } from "../../lib/server/window.ts";

/** A small seeded PRNG (mulberry32) so a failing cut can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

test("a torn tail (truncated at a random byte, garbage appended) is cut at start; every intact record is served, the rest is reported lost and no seq is reused", async () => {
  for (const seed of [1, 2, 3]) {
    const random = prng(seed);
    const dataDir = tmpDir("mq-torn-");
    let server = await startServer({ dataDir });
    let local = await startLocal(server.address);
    try {
      const id = await createOn(local.socket);
      const payloads = Array.from({ length: 30 }, (_, i) => `record-${i + 1}-${"x".repeat(Math.floor(random() * 200))}`);
      // With ids of a known length (line N has msg-id "t:N", a 3-byte field header before it), the record sizes are known.
      expect((await mq(local.socket, ["pub", String(id), "torn", "--lines", "--msg-id", "t"], { stdin: payloads.join("\n") })).code).toBe(0);
      await local.daemon.stop();
      expect(await server.daemon.stop()).toBe(0);

      const dir = path.join(dataDir, "topics", "torn");
      const segment = path.join(dir, fs.readdirSync(dir).filter((n) => n.endsWith(".log")).sort().at(-1)!);
      const size = fs.statSync(segment).size;
      const cut = 1 + Math.floor(random() * (size - 1));
      fs.truncateSync(segment, cut);
      const garbage = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 100) }, () => Math.floor(random() * 256)));
      fs.appendFileSync(segment, garbage);
      // The records that end at or before the cut are intact.
      let end = FILE_HEADER;
      let intact = 0;
      for (const [i, p] of payloads.entries()) {
        end += RECORD_HEADER + 3 + `t:${i + 1}`.length + Buffer.byteLength(p);
        if (end > cut) break;
        intact++;
      }

      server = await startServer({ dataDir, port: server.port });
      expect(server.daemon.log).toMatch(/cut \d+ bytes of a torn or damaged end/);
      const lost = payloads.length - intact;
      if (lost > 0) expect(server.daemon.log).toMatch(new RegExp(`ERROR.*lost ${lost} messages?, seqs? ${intact + 1}\\b`));
      local = await startLocal(server.address, { dataDir: local.dataDir, socket: local.socket });
      const topics = jsonLines((await mq(local.socket, ["topics", "--json"])).stdout);
      expect({ seed, cut, row: topics.find((t) => t.topic === "torn") }).toEqual({ seed, cut, row: { topic: "torn", subscribers: 0, messages: intact, ...(lost > 0 ? { lost } : {}) } });
      const reader = await createOn(local.socket);
      await mq(local.socket, ["sub", String(reader), "torn", "--from", "earliest"]);
      if (intact > 0) {
        const r = await mq(local.socket, ["recv", String(reader), "--follow", "--count", String(intact), "--json"]);
        expect(jsonLines(r.stdout).map((m) => m.data)).toEqual(payloads.slice(0, intact));
      }
      expect((await mq(local.socket, ["recv", String(reader), "--wait", "0.3"])).code).toBe(3);
      // The log goes on after the last seq ever acknowledged: none is handed out twice.
      const p = await mq(local.socket, ["pub", String(id), "torn", "after", "--json"]);
      expect(JSON.parse(p.stdout).seq).toBe(payloads.length + 1);
    } finally {
      await teardown([local.daemon, server.daemon], [dataDir, local.dataDir]);
    }
  }
});

test("server unreachable for 10 s: publishes fail with exit 4 in bounded time, recv serves the buffer, then all works without restarting the local broker", async () => {
  const dataDir = tmpDir("mq-outage-");
  let server = await startServer({ dataDir });
  const local = await startLocal(server.address);
  try {
    const id = await createOn(local.socket);
    await mq(local.socket, ["sub", String(id), "outage"]);
    await mq(local.socket, ["pub", String(id), "outage", "--lines"], { stdin: "before-1\nbefore-2\n" });
    // Wait until both are buffered at the local broker.
    for (let i = 0; i < 50 && JSON.parse((await mq(local.socket, ["stats", "--json"])).stdout).local.received < 2; i++) await Bun.sleep(100);

    const down = Date.now();
    expect(await server.daemon.stop()).toBe(0);
    await local.daemon.waitFor(/lost the server/);
    expect((await mq(local.socket, ["recv", String(id)])).stdout).toBe("before-1\n");
    // A fixed number of publishes during the outage. SPEC says exit 4 within 5 s: a publish
    // that hangs is killed at the (loose, loaded-machine) bound and then fails the exit-code check.
    const failures: Array<{ code: number; stderr: string }> = [];
    for (let i = 0; i < 6; i++) {
      const r = await mq(local.socket, ["pub", String(id), "outage", "during"], { timeoutMs: 15_000 });
      failures.push({ code: r.code, stderr: r.stderr });
      await Bun.sleep(500);
    }
    expect(failures.map((f) => f.code)).toEqual([4, 4, 4, 4, 4, 4]);
    for (const f of failures) expect(f.stderr).toStartWith("mq: UNAVAILABLE: ");
    expect((await mq(local.socket, ["recv", String(id)])).stdout).toBe("before-2\n");
    // The outage lasts 10 s in all (the scenario, not an assertion).
    await Bun.sleep(Math.max(0, 10_000 - (Date.now() - down)));

    server = await startServer({ dataDir, port: server.port });
    await local.daemon.waitFor(/connected to the server .* after \d+ attempts/);
    const p = await mq(local.socket, ["pub", String(id), "outage", "after", "--json"]);
    expect(p.code).toBe(0);
    expect(JSON.parse(p.stdout)).toMatchObject({ seq: 3, subscribers: 1 });
    expect((await mq(local.socket, ["recv", String(id), "--wait", "10"])).stdout).toBe("after\n");
  } finally {
    await teardown([local.daemon, server.daemon], [dataDir, local.dataDir]);
  }
}, 90_000);

test("a full disk (ENOSPC from /dev/full) fails the publish with STORAGE_ERROR; the server keeps serving everything else", async () => {
  const dataDir = tmpDir("mq-full-");
  let server = await startServer({ dataDir });
  let local = await startLocal(server.address);
  try {
    const id = await createOn(local.socket);
    await mq(local.socket, ["pub", String(id), "healthy", "--lines"], { stdin: "h1\nh2\n" });
    await mq(local.socket, ["sub", String(id), "full"]);
    await local.daemon.stop();
    await server.daemon.stop();
    // The topic's segment becomes /dev/full: every write to it fails with ENOSPC, a real
    // disk-full error from the kernel, without needing a small filesystem.
    const dir = path.join(dataDir, "topics", "full");
    const segment = path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith(".log"))!);
    fs.rmSync(segment);
    fs.symlinkSync("/dev/full", segment);
    server = await startServer({ dataDir, port: server.port });
    local = await startLocal(server.address, { dataDir: local.dataDir, socket: local.socket });

    const r = await mq(local.socket, ["pub", String(id), "full", "lost"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^mq: STORAGE_ERROR: .*full.*(ENOSPC|no space)/i);
    expect((await mq(local.socket, ["recv", String(id), "--wait", "0.3"])).code).toBe(3);
    // Reads and other topics still work.
    const reader = await createOn(local.socket);
    await mq(local.socket, ["sub", String(reader), "healthy", "--from", "earliest"]);
    expect((await mq(local.socket, ["recv", String(reader), "--follow", "--count", "2"])).stdout).toBe("h1\nh2\n");
    expect(JSON.parse((await mq(local.socket, ["pub", String(id), "healthy", "h3", "--json"])).stdout).seq).toBe(3);
    const topics = jsonLines((await mq(local.socket, ["topics", "--json"])).stdout);
    expect(topics.find((t) => t.topic === "full")).toEqual({ topic: "full", subscribers: 1, messages: 0 });
  } finally {
    await teardown([local.daemon, server.daemon], [dataDir, local.dataDir]);
  }
});

test("100,000 messages to a subscriber that never receives: server and local broker memory stay bounded", async () => {
  const server = await startServer({ args: ["--fsync", "never"] });
  const local = await startLocal(server.address);
  try {
    const publisher = await createOn(local.socket);
    const idle = await createOn(local.socket);
    await mq(local.socket, ["sub", String(idle), "flood"]);
    const payload = "m".repeat(100);
    const input = `${Array.from({ length: 100_000 }, () => payload).join("\n")}\n`;
    const r = await mq(local.socket, ["pub", String(publisher), "flood", "--lines"], { stdin: input, timeoutMs: 100_000 });
    expect(r.code).toBe(0);
    const stats = JSON.parse((await mq(local.socket, ["stats", "--json"])).stdout);
    const rss = { server: rssBytes(server.daemon.pid), local: rssBytes(local.daemon.pid) };
    console.log(`bounded memory: 100000 x 100 B published, ${stats.local.pending} buffered at the local broker; RSS server ${(rss.server / 2 ** 20).toFixed(1)} MiB, local ${(rss.local / 2 ** 20).toFixed(1)} MiB`);
    // The local broker holds at most the subscription's window; the rest waits in the log.
    expect(stats.local.pending).toBeLessThanOrEqual(MIN_WINDOW_MESSAGES);
    expect(rss.server).toBeLessThan(200 * 2 ** 20);
    expect(rss.local).toBeLessThan(200 * 2 ** 20);
    const topics = jsonLines((await mq(local.socket, ["topics", "--json"])).stdout);
    expect(topics.find((t) => t.topic === "flood")).toEqual({ topic: "flood", subscribers: 1, messages: 100_000 });
  } finally {
    await teardown([local.daemon, server.daemon], [server.dataDir, local.dataDir]);
  }
}, 120_000);

/**
 * Delayed delivery through the compiled binary: `mq pub --delay` / `--at` (docs/semantics.md,
 * "Delayed delivery"). Never before the due time (the append time `recv --json` shows is
 * compared with the `due` the publish answered), in order of due time, pending across a
 * server restart and a SIGKILL; with their headers and TTL (counted from the due time).
 */
import { describe, expect, test } from "bun:test";
import { MqClient } from "../../lib/client/index.ts";
import { eventually, helloPeer } from "../security/kit.ts";
import { createOn, jsonLines, mq, startCluster, startLocal, startServer, teardown, tmpDir, restartServer } from "./harness.ts";
import { checkMsgId } from "../../lib/cli/commands.ts";
import { UsageError } from "../../lib/cli/output.ts";

/** `mq pub ID TOPIC MESSAGE …flags --json` → its JSON answer (fails the test on a non-zero exit). */
async function pub(socket: string, id: number, topic: string, message: string, flags: string[]): Promise<Record<string, unknown>> {
  const r = await mq(socket, ["pub", String(id), topic, message, ...flags, "--json"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

/** Receives `count` messages (waiting up to 30 s) as {data, time in ms, seq, headers}. */
async function recvAll(socket: string, id: number, count: number): Promise<Array<{ data: string; time: number; seq: number; headers: unknown }>> {
  const r = await mq(socket, ["recv", String(id), "--follow", "--count", String(count), "--wait", "30", "--json"], { timeoutMs: 40_000 });
  expect(r.code).toBe(0);
  return jsonLines(r.stdout).map((m) => ({ data: m.data as string, time: Date.parse(m.time as string), seq: m.seq as number, headers: m.headers }));
}

/** Nothing more arrives within a short wait. */
async function expectNothingMore(socket: string, id: number): Promise<void> {
  const r = await mq(socket, ["recv", String(id), "--wait", "1", "--json"]);
  expect(jsonLines(r.stdout)).toEqual([]);
}

async function serverStats(socket: string): Promise<Record<string, number>> {
  const r = await mq(socket, ["stats", "--json"]);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout).server;
}

describe("mq pub --delay / --at", () => {
  test("delayed messages published out of order arrive in order of due time, none before its due time; the reply has scheduled and due, no seq", async () => {
    await using c = await startCluster();
    const id = await c.create();
    expect((await c.run(["sub", String(id), "jobs"])).code).toBe(0);
    const c3 = await pub(c.local.socket, id, "jobs", "third", ["--delay", "3s"]);
    const c1 = await pub(c.local.socket, id, "jobs", "first", ["--delay", "1s"]);
    const c2 = await pub(c.local.socket, id, "jobs", "second", ["--delay", "2s"]);
    expect(c1).toMatchObject({ topic: "jobs", scheduled: true, subscribers: 1 });
    expect(c1.seq).toBeUndefined();
    // The order the due times say (a slow machine may stretch the gaps between the publishes).
    const expected = [
      ["first", c1],
      ["second", c2],
      ["third", c3],
    ].sort((x, y) => ((x[1] as { due: number }).due - (y[1] as { due: number }).due)) as Array<[string, { due: number }]>;
    const got = await recvAll(c.local.socket, id, 3);
    expect(got.map((m) => m.data)).toEqual(expected.map(([data]) => data));
    expect(got.map((m) => m.seq)).toEqual([1, 2, 3]);
    for (let i = 0; i < 3; i++) expect(got[i]!.time).toBeGreaterThanOrEqual(expected[i]![1].due);
    await expectNothingMore(c.local.socket, id);
    // The text output says when.
    const text = await c.run(["pub", String(id), "jobs", "later", "--delay", "1h"]);
    expect(text.stdout).toMatch(/^jobs: scheduled for \d{4}-\d\d-\d\dT[\d:.]+Z\n$/);
  });

  test("--at in the past is delivered at once; --at in the future is not before that time", async () => {
    await using c = await startCluster();
    const id = await c.create();
    await c.run(["sub", String(id), "at"]);
    const future = Date.now() + 5000;
    const f = await pub(c.local.socket, id, "at", "future", ["--at", new Date(future).toISOString()]);
    expect(f.due).toBe(future);
    const before = Date.now();
    const past = await pub(c.local.socket, id, "at", "past", ["--at", "2020-01-01T00:00:00Z"]);
    // Due now by the server's clock, not in 2020.
    expect(past.due as number).toBeGreaterThan(Date.parse("2026-01-01T00:00:00Z"));
    expect(past.due as number).toBeGreaterThanOrEqual(before - 60_000);
    const got = await recvAll(c.local.socket, id, 2);
    expect(got.map((m) => m.data)).toEqual(["past", "future"]);
    expect(got[0]!.time).toBeLessThan(future);
    expect(got[1]!.time).toBeGreaterThanOrEqual(future);
    // Milliseconds since the epoch work too.
    const ms = await pub(c.local.socket, id, "at", "ms", ["--at", "1000"]);
    expect(ms.scheduled).toBe(true);
    expect((await recvAll(c.local.socket, id, 1)).map((m) => m.data)).toEqual(["ms"]);
  });

  test("bad values and conflicting flags exit 2 with a message naming the value; nothing is published", async () => {
    await using c = await startCluster();
    const id = await c.create();
    const cases: Array<[string[], RegExp]> = [
      [["--delay", "soon"], /--delay must be a duration like 30s.*"soon"/],
      [["--delay", "-5s"], /--delay must be a duration.*"-5s"/],
      [["--delay", "400d"], /--delay must be at most 366d, got "400d"/],
      [["--at", "tomorrow"], /--at must be an ISO-8601 time with a zone.*"tomorrow"/],
      [["--at", "2026-11-30T18:00:00"], /--at must be an ISO-8601 time with a zone.*"2026-11-30T18:00:00"/],
      [["--at", "-5"], /--at must be .*"-5"/],
      [["--at", "2999-01-01T00:00:00Z"], /--at must be at most 366d ahead, got "2999-01-01T00:00:00Z"/],
      [["--delay", "1s", "--at", "1000"], /--delay and --at cannot be used together/],
      [["--delay", "1s", "--ttl", "soon"], /--ttl must be a duration like 30s.*"soon"/],
      [["--delay", "1s", "--header", "noeq"], /--header "noeq" has no "=": give it as KEY=VALUE/],
    ];
    for (const [flags, message] of cases) {
      const r = await c.run(["pub", String(id), "bad", "x", ...flags]);
      expect({ flags, code: r.code }).toEqual({ flags, code: 2 });
      expect(r.stderr).toMatch(message);
    }
    expect((await serverStats(c.local.socket)).scheduled).toBe(0);
    const topics = await c.run(["topics", "--json"]);
    expect(topics.stdout).not.toContain('"bad"');
  });

  test("stats count the pending and the delivered delayed messages; a msg-id pending already is not scheduled twice", async () => {
    await using c = await startCluster();
    const id = await c.create();
    await c.run(["sub", String(id), "s"]);
    await pub(c.local.socket, id, "s", "soon", ["--delay", "500ms"]);
    const first = await pub(c.local.socket, id, "s", "later", ["--delay", "1h", "--msg-id", "k1"]);
    const again = await pub(c.local.socket, id, "s", "later", ["--delay", "2h", "--msg-id", "k1"]);
    expect(again.duplicate).toBe(true);
    // When the pending one is due, not an hour after it as this request asked (it said so).
    expect(again.due).toBe(first.due);
    expect((await recvAll(c.local.socket, id, 1)).map((m) => m.data)).toEqual(["soon"]);
    // A due message counts as pending until its append is done, after its fsync: it is pushed before (bounded wait).
    expect(await eventually(async () => (await serverStats(c.local.socket)).scheduled === 1)).toBe(true);
    const stats = await serverStats(c.local.socket);
    expect(stats.scheduled).toBe(1);
    expect(stats.scheduled_delivered).toBe(1);
  });

  test("a delayed message the dedupe window drops when due is not counted as delivered", async () => {
    await using c = await startCluster();
    const id = await c.create();
    await c.run(["sub", String(id), "d"]);
    await pub(c.local.socket, id, "d", "first", ["--msg-id", "k2"]);
    await pub(c.local.socket, id, "d", "again", ["--delay", "300ms", "--msg-id", "k2"]);
    await pub(c.local.socket, id, "d", "marker", ["--delay", "600ms"]);
    // The marker is due after the duplicate: once it arrived, the duplicate's turn has passed.
    expect((await recvAll(c.local.socket, id, 2)).map((m) => m.data)).toEqual(["first", "marker"]);
    expect(await eventually(async () => (await serverStats(c.local.socket)).scheduled === 0)).toBe(true);
    const stats = await serverStats(c.local.socket);
    expect(stats.scheduled).toBe(0);
    expect(stats.scheduled_delivered).toBe(1);
  });
});

describe("limits on delayed messages", () => {
  test("--max-scheduled and --max-scheduled-bytes refuse one more with LIMIT_EXCEEDED naming the flag; scheduled_bytes counts, also after a restart; a due message makes room", async () => {
    const data = tmpDir("mq-server-");
    const flags = ["--max-scheduled", "3", "--max-scheduled-bytes", "1K"];
    let server = await startServer({ dataDir: data, args: flags });
    const local = await startLocal(server.address);
    try {
      const id = await createOn(local.socket);
      const big = "b".repeat(600);
      await pub(local.socket, id, "cap", big, ["--delay", "1h"]);
      const over = await mq(local.socket, ["pub", String(id), "cap", big, "--delay", "1h"]);
      expect(over.code).not.toBe(0);
      expect(over.stderr).toContain("LIMIT_EXCEEDED");
      expect(over.stderr).toContain("600 bytes are pending and --max-scheduled-bytes is 1024");
      await pub(local.socket, id, "cap", "s", ["--delay", "1h"]);
      let stats = await serverStats(local.socket);
      expect({ scheduled: stats.scheduled, bytes: stats.scheduled_bytes }).toEqual({ scheduled: 2, bytes: 601 });

      // Restarted: what is pending still counts against the limits.
      server = await restartServer(server, [local], { args: flags });
      stats = await serverStats(local.socket);
      expect({ scheduled: stats.scheduled, bytes: stats.scheduled_bytes }).toEqual({ scheduled: 2, bytes: 601 });
      await pub(local.socket, id, "cap", "soon", ["--delay", "300ms"]);
      const count = await mq(local.socket, ["pub", String(id), "cap", "t", "--delay", "1h"]);
      expect(count.code).not.toBe(0);
      expect(count.stderr).toContain("3 are pending and --max-scheduled is 3");
      // Once the short one is appended, there is room again.
      expect(await eventually(async () => (await serverStats(local.socket)).scheduled === 2)).toBe(true);
      await pub(local.socket, id, "cap", "t", ["--delay", "1h"]);
      expect((await serverStats(local.socket)).scheduled_bytes).toBe(602);
    } finally {
      await teardown([local.daemon, server.daemon], [data, local.dataDir]);
    }
  });

  test("bad --max-scheduled and --max-scheduled-bytes values are bad usage (exit 2), on mq server and mq up", async () => {
    for (const cmd of ["server", "up"]) {
      for (const [flag, value, message] of [
        ["--max-scheduled", "-1", '--max-scheduled must be an integer >= 0, got "-1"'],
        ["--max-scheduled", "many", '--max-scheduled must be an integer >= 0, got "many"'],
        ["--max-scheduled-bytes", "lots", '--max-scheduled-bytes must be a size like 512, 64K, 100M or 10G, got "lots"'],
      ]) {
        const r = await mq(null, [cmd, flag!, value!]);
        expect({ cmd, flag, code: r.code }).toEqual({ cmd, flag, code: 2 });
        expect(r.stderr).toContain(message!);
      }
    }
  });
});

describe("delayed messages across restarts", () => {
  for (const how of ["SIGTERM", "SIGKILL"] as const) {
    test(`pending across a server ${how}: delivered after the restart, once, in order, not before their time`, async () => {
      const data = tmpDir("mq-server-");
      let server = await startServer({ dataDir: data });
      const local = await startLocal(server.address);
      try {
        const id = await createOn(local.socket);
        await mq(local.socket, ["sub", String(id), "r"]);
        const b = await pub(local.socket, id, "r", "b", ["--delay", "3s", "--ttl", "1h"]);
        const a = await pub(local.socket, id, "r", "a", ["--delay", "2s", "--header", "trace=ab12", "--header", "ключ=значение"]);
        // Acknowledged means durable: the server goes away at once.
        server = await restartServer(server, [local], { kill: how === "SIGKILL" });
        const got = await recvAll(local.socket, id, 2);
        expect(got.map((m) => m.data)).toEqual(["a", "b"]);
        // Headers and TTL were in the schedule: kept across the restart.
        expect(got.map((m) => m.headers)).toEqual([{ trace: "ab12", "ключ": "значение" }, undefined]);
        expect(got[0]!.time).toBeGreaterThanOrEqual(a.due as number);
        expect(got[1]!.time).toBeGreaterThanOrEqual(b.due as number);
        await expectNothingMore(local.socket, id);
        // Delivered ones are gone from the schedule: a further restart delivers nothing again.
        server = await restartServer(server, [local]);
        expect((await serverStats(local.socket)).scheduled).toBe(0);
        await expectNothingMore(local.socket, id);
      } finally {
        await teardown([local.daemon, server.daemon], [data, local.dataDir]);
      }
    });
  }
});

describe("delayed messages with headers and a TTL", () => {
  test("CLI and library: headers arrive with the delayed message; the TTL counts from the due time, not from the publish", async () => {
    await using c = await startCluster();
    const id = await c.create();
    expect((await c.run(["sub", String(id), "hd"])).code).toBe(0);
    const withHeaders = await pub(c.local.socket, id, "hd", "with", ["--delay", "1s", "--header", "k=v", "--header", "trace=a=b", "--ttl", "30s"]);
    expect(withHeaders).toMatchObject({ scheduled: true });
    // Counted from the publish, this TTL would end a second before the due time: never delivered.
    const ttlFromDue = await pub(c.local.socket, id, "hd", "ttl from due", ["--delay", "4s", "--ttl", "3s"]);
    await using lib = await MqClient.connect({ socket: c.local.socket });
    const fromLib = await lib.publish(id, "hd", "lib", { delayMs: 2000, headers: { src: "library" }, ttlMs: 60_000 });
    expect(fromLib).toMatchObject({ topic: "hd", scheduled: true });
    const got = await recvAll(c.local.socket, id, 3);
    expect(got.map((m) => [m.data, m.headers])).toEqual([
      ["with", { k: "v", trace: "a=b" }],
      ["lib", { src: "library" }],
      ["ttl from due", undefined],
    ]);
    expect(got[2]!.time).toBeGreaterThanOrEqual(ttlFromDue.due as number);
    await expectNothingMore(c.local.socket, id);
  });

  test("with the dedupe window off (--dedupe-window 0), the other append path, headers arrive too", async () => {
    await using c = await startCluster({ serverArgs: ["--dedupe-window", "0"] });
    const id = await c.create();
    expect((await c.run(["sub", String(id), "nodedupe"])).code).toBe(0);
    await pub(c.local.socket, id, "nodedupe", "x", ["--delay", "500ms", "--header", "k=v", "--ttl", "1m"]);
    await pub(c.local.socket, id, "nodedupe", "y", ["--delay", "500ms"]);
    const got = await recvAll(c.local.socket, id, 2);
    expect(got.map((m) => [m.data, m.headers])).toEqual([
      ["x", { k: "v" }],
      ["y", undefined],
    ]);
  });

  test("a delayed message whose TTL runs out after its due time, unreceived, is never delivered and is counted `expired`", async () => {
    await using c = await startCluster();
    const id = await c.create();
    const before = await serverStats(c.local.socket);
    // No subscriber: appended when due, it waits in the log until it expires.
    await pub(c.local.socket, id, "exp", "short", ["--delay", "500ms", "--ttl", "300ms"]);
    expect(await eventually(async () => (await serverStats(c.local.socket)).scheduled_delivered === before.scheduled_delivered! + 1)).toBe(true);
    const appended = Date.now(); // at or after its append: it expires by appended + 300 ms
    for (let i = 0; i < 100 && Date.now() <= appended + 350; i++) await Bun.sleep(50);
    expect((await c.run(["sub", String(id), "exp", "--from", "earliest"])).code).toBe(0);
    await pub(c.local.socket, id, "exp", "plain", []);
    const got = await recvAll(c.local.socket, id, 1);
    expect(got.map((m) => [m.seq, m.data])).toEqual([[2, "plain"]]);
    await expectNothingMore(c.local.socket, id);
    expect((await serverStats(c.local.socket)).expired).toBe(before.expired! + 1);
  });
});

describe("delayed publishes on the wire", () => {
  test("the local broker refuses bad delay fields with BAD_REQUEST naming them, the server refuses both at once or too far ahead; the connection goes on", async () => {
    await using c = await startCluster();
    const id = await c.create();
    const peer = await helloPeer({ unix: c.local.socket }, "local");
    try {
      const data = new TextEncoder().encode("x");
      let rid = 10;
      const ask = (fields: Record<string, unknown>) => peer.request({ op: "pub", rid: ++rid, id, topic: "w", data, ...fields });
      expect(await ask({ delayMs: -1 })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: 'pub: field "delayMs" must be a non-negative integer' });
      expect(await ask({ at: "soon" })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: 'pub: field "at" must be a non-negative integer' });
      expect(await ask({ delayMs: 1000, at: 1000 })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: 'pub: give "delayMs" or "at", not both' });
      expect(await ask({ delayMs: 400 * 86_400_000 })).toMatchObject({ op: "error", code: "BAD_REQUEST", message: expect.stringContaining("delayMs 34560000000 is more than 366 days ahead") });
      const ok = await ask({ delayMs: 60_000 });
      expect(ok).toMatchObject({ op: "ok", topic: "w", scheduled: true });
      expect(ok.seq).toBeUndefined();
      const batch = await peer.request({ op: "pubs", rid: ++rid, id, topic: "w", payloads: [data, data], at: 1000 });
      expect(batch).toMatchObject({ op: "ok", topic: "w", scheduled: true });
      // The two due at once are appended; the one due in a minute waits.
      expect(await eventually(async () => (await serverStats(c.local.socket)).scheduled_delivered === 2)).toBe(true);
      expect((await serverStats(c.local.socket)).scheduled).toBe(1);
    } finally {
      peer.end();
    }
  });

  test("a delayed `pubs` with a headers list and a ttl: each payload arrives with its own headers", async () => {
    await using c = await startCluster();
    const id = await c.create();
    expect((await c.run(["sub", String(id), "wh"])).code).toBe(0);
    const peer = await helloPeer({ unix: c.local.socket }, "local");
    try {
      const payloads = ["p1", "p2", "p3"].map((t) => new TextEncoder().encode(t));
      const bad = await peer.request({ op: "pubs", rid: 1, id, topic: "wh", payloads, headers: [{ k: "v" }], delayMs: 100 });
      expect(bad).toMatchObject({ op: "error", code: "BAD_REQUEST" });
      const ok = await peer.request({ op: "pubs", rid: 2, id, topic: "wh", payloads, headers: [{ k: "1" }, {}, { k: "3", x: "y" }], ttl: 60_000, delayMs: 100 });
      expect(ok).toMatchObject({ op: "ok", topic: "wh", scheduled: true });
    } finally {
      peer.end();
    }
    const got = await recvAll(c.local.socket, id, 3);
    expect(got.map((m) => [m.data, m.headers])).toEqual([
      ["p1", { k: "1" }],
      ["p2", undefined],
      ["p3", { k: "3", x: "y" }],
    ]);
  });

  test("message ids starting with NUL (the reserved delivery keys of delayed messages) are refused with BAD_REQUEST on both hops, and by the CLI", async () => {
    await using c = await startCluster();
    const id = await c.create();
    const data = new TextEncoder().encode("x");
    const reserved = "\0mq.scheduled:1";
    const frames = (rid: number, owner: number) => [
      { op: "pub", rid, id: owner, topic: "r", data, msgId: reserved },
      { op: "pubs", rid: rid + 1, id: owner, topic: "r", payloads: [data], msgIds: [reserved] },
      { op: "pubs", rid: rid + 2, id: owner, topic: "r", payloads: [data], idPrefix: "\0mq.scheduled:", idFrom: 1 },
    ];
    const local = await helloPeer({ unix: c.local.socket }, "local");
    const server = await helloPeer({ hostname: "127.0.0.1", port: c.server.port }, "server");
    try {
      for (const frame of frames(10, id)) expect(await local.request(frame)).toMatchObject({ op: "error", code: "BAD_REQUEST", message: expect.stringContaining("not starting with NUL") });
      const own = (await server.request({ op: "create", rid: 2 })).id as number;
      for (const frame of frames(20, own)) expect(await server.request(frame)).toMatchObject({ op: "error", code: "BAD_REQUEST", message: expect.stringContaining("not starting with NUL") });
      // The connections go on.
      expect(await local.request({ op: "pub", rid: 30, id, topic: "r", data, msgId: "fine" })).toMatchObject({ op: "ok", seq: 1 });
    } finally {
      local.end();
      server.end();
    }
    expect(() => checkMsgId(reserved, false)).toThrow(UsageError);
    expect(() => checkMsgId(reserved, false)).toThrow(/--msg-id must not start with a NUL character/);
  });
});

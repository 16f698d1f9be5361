/** The CLI contract (SPEC §2) against real daemons: output formats and exit codes. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { mq, startCluster, tmpDir } from "./harness.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;
beforeAll(async () => {
  cluster = await startCluster({ serverArgs: ["--max-message-bytes", "1000", "--default-topics", "general,news.daily"] });
});
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

describe("mq create", () => {
  test("prints a bare id, and {id} with --json", async () => {
    const a = await cluster.run(["create"]);
    expect(a).toMatchObject({ code: 0, stderr: "" });
    expect(a.stdout).toMatch(/^\d+\n$/);
    const b = await cluster.run(["create", "--json"]);
    expect(b.code).toBe(0);
    const id = JSON.parse(b.stdout).id;
    expect(id).toBe(Number(a.stdout) + 1);
  });
});

describe("mq pub", () => {
  test("reports seq, subscribers and created, with a warning when nobody listens", async () => {
    const id = await cluster.create();
    const first = await cluster.run(["pub", String(id), "pub.fresh", "hello", "--json"]);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual({ topic: "pub.fresh", seq: 1, subscribers: 0, created: true });
    expect(first.stderr).toContain("no subscribers");
    const second = await cluster.run(["pub", String(id), "pub.fresh", "again", "--json"]);
    expect(JSON.parse(second.stdout)).toEqual({ topic: "pub.fresh", seq: 2, subscribers: 0, created: false });
  });

  test("reads standard input as one message without its trailing newline, --raw keeps it", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "pub.stdin"]);
    expect((await cluster.run(["pub", String(id), "pub.stdin"], { stdin: '{"a":1}\n' })).code).toBe(0);
    expect((await cluster.run(["pub", String(id), "pub.stdin", "--raw"], { stdin: "x\n" })).code).toBe(0);
    const r = await cluster.run(["recv", String(id), "--count", "2", "--json"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n").map((l) => JSON.parse(l).data)).toEqual(['{"a":1}', "x\n"]);
  });

  test("--lines publishes one message per line, no empty message for the final newline", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "pub.lines"]);
    const r = await cluster.run(["pub", String(id), "pub.lines", "--lines", "--json"], { stdin: "one\ntwo\n\nfour\n" });
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n").map((l) => JSON.parse(l).seq)).toEqual([1, 2, 3, 4]);
    const got = await cluster.run(["recv", String(id), "--count", "10"]);
    expect(got.stdout).toBe("one\ntwo\n\nfour\n");
  });

  test("a message above --max-message-bytes is MESSAGE_TOO_LARGE (exit 1) and nothing is stored", async () => {
    const id = await cluster.create();
    const r = await cluster.run(["pub", String(id), "pub.big", "x".repeat(1001)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^mq: MESSAGE_TOO_LARGE: .*1001/);
    // Far above the frame limit too: still MESSAGE_TOO_LARGE, not a protocol error.
    const huge = await cluster.run(["pub", String(id), "pub.big"], { stdin: "y".repeat(200_000) });
    expect(huge.code).toBe(1);
    expect(huge.stderr).toMatch(/^mq: MESSAGE_TOO_LARGE: .*200000/);
    const ok = await cluster.run(["pub", String(id), "pub.big", "x".repeat(1000), "--json"]);
    expect(JSON.parse(ok.stdout).seq).toBe(1);
  });

  test("invalid topic names are INVALID_TOPIC (exit 1)", async () => {
    const id = await cluster.create();
    for (const topic of ["", "a/b", "../etc", "a..b", "*", "a.>", "sp ace", "x".repeat(201)]) {
      const r = await cluster.run(["pub", String(id), topic, "m"]);
      expect({ topic, code: r.code }).toEqual({ topic, code: 1 });
      expect(r.stderr).toStartWith("mq: INVALID_TOPIC: ");
    }
  });

  test("an unknown id is UNKNOWN_ID (exit 1)", async () => {
    const r = await cluster.run(["pub", "999999", "t", "m"]);
    expect(r).toMatchObject({ code: 1, stdout: "" });
    expect(r.stderr).toBe("mq: UNKNOWN_ID: no client with id 999999\n");
  });
});

describe("mq sub / unsub", () => {
  test("sub to a new topic creates it, so a later publish counts the subscriber", async () => {
    const id = await cluster.create();
    const s = await cluster.run(["sub", String(id), "sub.new", "--json"]);
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout)).toEqual({ topic: "sub.new", from: 1, created: true });
    const p = await cluster.run(["pub", String(id), "sub.new", "m", "--json"]);
    expect(JSON.parse(p.stdout)).toMatchObject({ subscribers: 1, created: false });
    expect(p.stderr).toBe("");
  });

  test("sub --from SEQ past the topic's next seq warns how far it waits (exit 0, stdout as always); at the next seq it does not", async () => {
    const id = await cluster.create();
    for (const m of ["a", "b"]) expect((await cluster.run(["pub", String(id), "sub.ahead", m])).code).toBe(0);
    const far = await cluster.run(["sub", String(id), "sub.ahead", "--from", "100", "--json"]);
    expect(far.code).toBe(0);
    expect(JSON.parse(far.stdout)).toEqual({ topic: "sub.ahead", from: 100, created: false });
    expect(far.stderr).toBe(`mq: warning: topic "sub.ahead": its next message gets seq 3, so ${id} receives nothing from it until seq 100 is published (97 messages from now)\n`);
    const other = await cluster.create();
    const next = await cluster.run(["sub", String(other), "sub.ahead", "--from", "3"]);
    expect(next).toMatchObject({ code: 0, stdout: `subscribed ${other} to sub.ahead from seq 3\n`, stderr: "" });
    const fresh = await cluster.run(["sub", String(other), "sub.ahead.new", "--from", "2"]);
    expect(fresh.stderr).toBe(`mq: warning: topic "sub.ahead.new": its next message gets seq 1, so ${other} receives nothing from it until seq 2 is published (1 message from now)\n`);
  });

  test("sub PATTERN --from SEQ warns for each matched topic it is past; the output keeps its fields", async () => {
    const id = await cluster.create();
    for (const m of ["a", "b"]) expect((await cluster.run(["pub", String(id), "pat.ahead.one", m])).code).toBe(0);
    for (let i = 0; i < 60; i++) expect((await cluster.run(["pub", String(id), "pat.ahead.two", `m${i}`])).code).toBe(0);
    const sub = await cluster.run(["sub", String(id), "pat.ahead.*", "--from", "50", "--json"]);
    expect(sub.code).toBe(0);
    expect(JSON.parse(sub.stdout)).toEqual({ topic: "pat.ahead.*", created: false, pattern: true, matched: [{ topic: "pat.ahead.one", from: 50 }, { topic: "pat.ahead.two", from: 50 }] });
    // pat.ahead.two holds seqs 1..60: from 50 is within it, no warning.
    expect(sub.stderr).toBe(`mq: warning: topic "pat.ahead.one": its next message gets seq 3, so ${id} receives nothing from it until seq 50 is published (47 messages from now)\n`);
  });

  test("subscribing twice is not an error and does not duplicate delivery", async () => {
    const id = await cluster.create();
    expect((await cluster.run(["sub", String(id), "sub.twice"])).code).toBe(0);
    expect((await cluster.run(["sub", String(id), "sub.twice"])).code).toBe(0);
    await cluster.run(["pub", String(id), "sub.twice", "once"]);
    expect((await cluster.run(["recv", String(id), "--count", "5"])).stdout).toBe("once\n");
  });

  test("--from earliest, a seq (inclusive) and latest (the default)", async () => {
    const pub = await cluster.create();
    await cluster.run(["pub", String(pub), "sub.from", "--lines"], { stdin: "1\n2\n3\n" });
    const [early, mid, late] = [await cluster.create(), await cluster.create(), await cluster.create()];
    await cluster.run(["sub", String(early), "sub.from", "--from", "earliest"]);
    await cluster.run(["sub", String(mid), "sub.from", "--from", "2"]);
    await cluster.run(["sub", String(late), "sub.from"]);
    await cluster.run(["pub", String(pub), "sub.from", "4"]);
    expect((await cluster.run(["recv", String(early), "--count", "10"])).stdout).toBe("1\n2\n3\n4\n");
    expect((await cluster.run(["recv", String(mid), "--count", "10"])).stdout).toBe("2\n3\n4\n");
    expect((await cluster.run(["recv", String(late), "--count", "10"])).stdout).toBe("4\n");
  });

  test("sub to several topics at once, unsub stops delivery", async () => {
    const id = await cluster.create();
    expect((await cluster.run(["sub", String(id), "multi.a", "multi.b"])).code).toBe(0);
    await cluster.run(["pub", String(id), "multi.a", "a1"]);
    await cluster.run(["pub", String(id), "multi.b", "b1"]);
    const u = await cluster.run(["unsub", String(id), "multi.a", "--json"]);
    expect(u.code).toBe(0);
    expect(JSON.parse(u.stdout)).toEqual({ topic: "multi.a", unsubscribed: true, dropped: ["multi.a"] });
    await cluster.run(["pub", String(id), "multi.a", "a2"]);
    await cluster.run(["pub", String(id), "multi.b", "b2"]);
    expect((await cluster.run(["recv", String(id), "--count", "10"])).stdout).toBe("b1\nb2\n");
  });

  test("bad --from is bad usage (exit 2)", async () => {
    const r = await cluster.run(["sub", "1", "t", "--from", "yesterday"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--from");
  });
});

describe("mq recv", () => {
  test("exit 3 when nothing is pending, at once and after --wait", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "recv.empty"]);
    expect(await cluster.run(["recv", String(id)])).toEqual({ code: 3, stdout: "", stderr: "" });
    expect((await cluster.run(["recv", String(id), "--wait", "0.3"])).code).toBe(3);
  });

  test("--wait returns as soon as a message arrives", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "recv.wait"]);
    const waiting = cluster.run(["recv", String(id), "--wait", "30"]);
    await cluster.run(["pub", String(id), "recv.wait", "late"]);
    expect(await waiting).toEqual({ code: 0, stdout: "late\n", stderr: "" });
  });

  test("--json prints topic, seq, time and data; data_base64 for bytes that are not UTF-8", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "recv.json"]);
    await cluster.run(["pub", String(id), "recv.json", "text"]);
    await cluster.run(["pub", String(id), "recv.json", "--raw"], { stdin: new Uint8Array([0xff, 0xfe, 0x00]) });
    const r = await cluster.run(["recv", String(id), "--count", "2", "--json"]);
    const [a, b] = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(a).toEqual({ topic: "recv.json", seq: 1, time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), data: "text" });
    expect(b).toEqual({ topic: "recv.json", seq: 2, time: expect.any(String), data_base64: Buffer.from([0xff, 0xfe, 0]).toString("base64") });
  });

  test("--json keeps a payload's leading U+FEFF in data (the bytes exactly, not taken for a byte order mark)", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "recv.bom"]);
    await cluster.run(["pub", String(id), "recv.bom", "--raw"], { stdin: new Uint8Array([0xef, 0xbb, 0xbf, 0x68, 0x69]) });
    const r = await cluster.run(["recv", String(id), "--json"]);
    expect(JSON.parse(r.stdout.trim()).data).toBe("\uFEFFhi");
  });

  test("--raw writes the payload bytes exactly", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "recv.raw"]);
    await cluster.run(["pub", String(id), "recv.raw", "--raw"], { stdin: "a\r\nb" });
    const r = await cluster.run(["recv", String(id), "--raw"]);
    expect(r.stdout).toBe("a\r\nb");
  });

  test("--follow --count N waits for all N", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "recv.follow"]);
    const following = cluster.run(["recv", String(id), "--follow", "--count", "3"]);
    for (const m of ["f1", "f2", "f3", "f4"]) await cluster.run(["pub", String(id), "recv.follow", m]);
    expect(await following).toEqual({ code: 0, stdout: "f1\nf2\nf3\n", stderr: "" });
    expect((await cluster.run(["recv", String(id)])).stdout).toBe("f4\n");
  });

  test("works in a shell pipeline with jq", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "orders"]);
    await cluster.run(["pub", String(id), "orders"], { stdin: '{"total": 12}\n' });
    const [bin] = (await import("./harness.ts")).mqCommand();
    const proc = Bun.spawn(["sh", "-c", `"${bin}" recv ${id} | jq .total`], { env: { ...process.env, MQ_SOCKET: cluster.local.socket }, stdout: "pipe" });
    expect(await new Response(proc.stdout).text()).toBe("12\n");
    expect(await proc.exited).toBe(0);
  });

  test("recv of an unknown id is UNKNOWN_ID (exit 1), not 3", async () => {
    const r = await cluster.run(["recv", "424242"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toStartWith("mq: UNKNOWN_ID:");
  });
});

describe("mq destroy", () => {
  test("removes the id everywhere; later use is UNKNOWN_ID and the id is not reused", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "destroy.t"]);
    await cluster.run(["pub", String(id), "destroy.t", "pending"]);
    const d = await cluster.run(["destroy", String(id), "--json"]);
    expect(d.code).toBe(0);
    expect(JSON.parse(d.stdout)).toEqual({ id, destroyed: true });
    for (const args of [["recv", String(id)], ["pub", String(id), "destroy.t", "m"], ["sub", String(id), "x"], ["destroy", String(id)]]) {
      const r = await cluster.run(args);
      expect({ args, code: r.code }).toEqual({ args, code: 1 });
      expect(r.stderr).toBe(`mq: UNKNOWN_ID: no client with id ${id}\n`);
    }
    expect(await cluster.create()).toBeGreaterThan(id);
    const t = await cluster.run(["topics", "--json"]);
    const row = t.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((x) => x.topic === "destroy.t");
    expect(row.subscribers).toBe(0);
  });
});

describe("mq topics and stats", () => {
  test("topics lists default topics and counts, one JSON object per line", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "topics.count"]);
    await cluster.run(["pub", String(id), "topics.count", "--lines"], { stdin: "a\nb\n" });
    const r = await cluster.run(["topics", "--json"]);
    expect(r.code).toBe(0);
    const rows = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(rows).toContainEqual({ topic: "general", subscribers: 0, messages: 0 });
    expect(rows).toContainEqual({ topic: "news.daily", subscribers: 0, messages: 0 });
    expect(rows).toContainEqual({ topic: "topics.count", subscribers: 1, messages: 2 });
    const human = await cluster.run(["topics"]);
    expect(human.stdout).toMatch(/^TOPIC\s+SUBSCRIBERS\s+MESSAGES\n/);
  });

  test("stats --json prints one object with local and server counters", async () => {
    const r = await cluster.run(["stats", "--json"]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.local.connected).toBe(true);
    expect(s.server.published).toBeGreaterThan(0);
  });
});

describe("usage and reachability", () => {
  const nowhere = path.join(tmpDir(), "none.sock");

  test("missing or malformed arguments exit 2 before any connection, even with no broker", async () => {
    for (const args of [
      ["pub"], ["pub", "1"], ["sub", "1"], ["recv"], ["recv", "abc"], ["recv", "1", "--count", "0"], ["recv", "1", "--wait", "soon"], ["destroy", "-5"], ["nosuchcommand"],
      // Typos and stray words are not silently ignored.
      ["sub", "1", "t", "--form", "earliest"], ["recv", "1", "--folow"], ["create", "extra"], ["pub", "1", "t", "two", "words"], ["recv", "1", "-x"], ["recv", "1", "--count"],
    ]) {
      const r = await mq(nowhere, args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("mq: usage:");
      expect(r.stderr).not.toContain("\x1b["); // no terminal colours in a pipe
    }
  });

  test("no local broker is UNAVAILABLE (exit 4) at once", async () => {
    for (const args of [["create"], ["recv", "1"], ["topics"]]) {
      const r = await mq(nowhere, args);
      expect({ args, code: r.code }).toEqual({ args, code: 4 });
      expect(r.stderr).toStartWith(`mq: UNAVAILABLE: no local broker at ${nowhere}`);
    }
  });

  test("a socket path that is a file, a directory, a socket nobody listens on or too long is named as such; an empty MQ_SOCKET is unset (it was the path \"\")", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-nosock-"));
    try {
      const file = path.join(dir, "file");
      fs.writeFileSync(file, "");
      expect((await mq(file, ["topics"])).stderr).toStartWith(`mq: UNAVAILABLE: ${file} is a regular file, not the socket of a local broker: give its socket (--socket, MQ_SOCKET)`);
      expect((await mq(dir, ["topics"])).stderr).toStartWith(`mq: UNAVAILABLE: ${dir} is a directory, not the socket of a local broker`);
      // A socket left behind by a listener killed with SIGKILL.
      const stale = path.join(dir, "stale.sock");
      const listener = Bun.spawn([process.execPath, "-e", `Bun.listen({ unix: ${JSON.stringify(stale)}, socket: { data() {} } }); setInterval(() => {}, 1000);`]);
      try {
        for (let i = 0; i < 200 && !fs.existsSync(stale); i++) await Bun.sleep(25);
      } finally {
        listener.kill("SIGKILL");
        await listener.exited;
      }
      expect(fs.statSync(stale).isSocket()).toBe(true);
      const r = await mq(stale, ["topics"]);
      expect(r.code).toBe(4);
      expect(r.stderr).toStartWith(`mq: UNAVAILABLE: no local broker listening at ${stale}, the socket of one that stopped?`);
      const empty = await mq(null, ["topics"], { env: { MQ_SOCKET: "", XDG_RUNTIME_DIR: dir } });
      expect(empty.code).toBe(4);
      expect(empty.stderr).toStartWith(`mq: UNAVAILABLE: no local broker at ${dir}/`);
      // Longer than a Unix socket path may be: said so (it read as "no local broker", start one).
      const long = path.join(dir, "d".repeat(120), "local.sock");
      const tooLong = await mq(long, ["topics"]);
      expect(tooLong.code).toBe(4);
      expect(tooLong.stderr).toStartWith(`mq: UNAVAILABLE: the socket path ${long} is ${Buffer.byteLength(long)} bytes, and a Unix socket path may hold 107: no local broker can listen there; give a shorter one (--socket, MQ_SOCKET)`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("--help exits 0 and shows the commands", async () => {
    const r = await mq(nowhere, ["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).toContain("recv");
  });
});

describe("mq up", () => {
  test("runs a server and a local broker in one process; the seed flow works; SIGTERM exits 0", async () => {
    const { Daemon, mqCommand } = await import("./harness.ts");
    const dir = tmpDir("mq-up-");
    const socket = path.join(dir, "run", "local.sock");
    const proc = Bun.spawn([...mqCommand(), "up", "--data", dir, "--listen", "127.0.0.1:0", "--socket", socket], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    await using up = new Daemon("up", proc);
    await up.waitFor(/connected to the server/);
    const id = (await mq(socket, ["create"])).stdout.trim();
    expect((await mq(socket, ["sub", id, "orders"])).code).toBe(0);
    expect((await mq(socket, ["pub", id, "orders"], { stdin: '{"total": 12}\n' })).code).toBe(0);
    expect(JSON.parse((await mq(socket, ["recv", id])).stdout)).toEqual({ total: 12 });
    expect((await mq(socket, ["destroy", id])).code).toBe(0);
    expect(await up.stop()).toBe(0);
    const fs = await import("node:fs");
    expect(fs.existsSync(path.join(dir, "server", "clients"))).toBe(true);
    expect(fs.existsSync(path.join(dir, "local", "identity"))).toBe(true);
    expect((fs.statSync(path.dirname(socket)).mode & 0o777).toString(8)).toBe("700");
  });
});

describe("mq pub --lines under a small --max-message-bytes", () => {
  test("batches stay inside the frame limit: 300 lines of 900 bytes all go through", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "small.limit"]);
    const input = `${Array.from({ length: 300 }, (_, i) => String(i).padEnd(900, "x")).join("\n")}\n`;
    const r = await cluster.run(["pub", String(id), "small.limit", "--lines", "--json"], { stdin: input });
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n").map((l) => JSON.parse(l).seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
  });

  test("a line above the limit stops the run there: the lines before it are stored and printed, none after it is sent", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "small.refused"]);
    const input = ["one", "x".repeat(1001), ...Array.from({ length: 6 }, (_, i) => `l${i + 3}`)].join("\n");
    const r = await cluster.run(["pub", String(id), "small.refused", "--lines", "--json"], { stdin: input });
    expect(r.code).toBe(1);
    expect(r.stdout.trim().split("\n").map((l) => JSON.parse(l).seq)).toEqual([1]);
    expect(r.stderr).toContain("line 2 was not sent, nor any line after it: line 1 is stored");
    expect(r.stderr).toContain("1001 bytes");
    // What was printed is what was stored: "one", and nothing of the lines after the refused one.
    const got = await cluster.run(["recv", String(id), "--count", "10"]);
    expect(got.stdout).toBe("one\n");
  });
});

describe("mq recv --count without --follow", () => {
  test("returns every pending message up to N, also beyond what the local broker holds at once", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "count.many"]);
    await cluster.run(["pub", String(id), "count.many", "--lines"], { stdin: `${Array.from({ length: 600 }, (_, i) => i + 1).join("\n")}\n` });
    const r = await cluster.run(["recv", String(id), "--count", "1000", "--json"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n").map((l) => JSON.parse(l).seq)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
    expect((await cluster.run(["recv", String(id), "--count", "5"])).code).toBe(3);
  });
});

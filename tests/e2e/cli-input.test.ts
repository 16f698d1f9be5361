/**
 * What the CLI takes in, from a shell as users give it: arguments that are not UTF-8,
 * standard input that is a /proc file, a directory, closed or endless, and a closed standard
 * output for recv. Each case lost or changed messages before: now it is stored exactly, or
 * refused with nothing stored or acknowledged.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { jsonLines, mqCommand, startCluster } from "./harness.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;
beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

const quote = (args: string[]) => args.map((a) => `'${a}'`).join(" ");
const mqLine = (args: string[]) => quote([...mqCommand(), ...args]);

/** `sh -c script` with MQ_SOCKET set, bounded; what it printed and its status. */
async function shell(script: string, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(["sh", "-c", script], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, MQ_SOCKET: cluster.local.socket } });
  const killer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(killer);
  return { code, stdout, stderr };
}

/** A new id subscribed to `topic`. */
async function subscribed(topic: string): Promise<number> {
  const id = await cluster.create();
  expect((await cluster.run(["sub", String(id), topic])).code).toBe(0);
  return id;
}

async function received(id: number): Promise<unknown[]> {
  const r = await cluster.run(["recv", String(id), "-n", "100", "--json"]);
  return jsonLines(r.stdout).map((m) => m.data ?? { base64: m.data_base64 });
}

const linux = fs.existsSync("/proc/self/cmdline");

/** `mq pub ID TOPIC --lines` fed `input` on a pipe left open; once `stored` messages are in, `signal`. */
async function interruptedPub(id: number, topic: string, input: string, stored: number, signal: "SIGINT" | "SIGTERM") {
  const proc = Bun.spawn([...mqCommand(), "pub", String(id), topic, "--lines"], { stdin: "pipe", stdout: "pipe", stderr: "pipe", env: { ...process.env, MQ_SOCKET: cluster.local.socket } });
  const killer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  try {
    proc.stdin.write(input);
    await proc.stdin.flush();
    // Stored (the input stays open): then the signal.
    for (let i = 0; i < 100; i++) {
      const topics = jsonLines((await cluster.run(["topics", "--json"])).stdout);
      if (topics.find((t) => t.topic === topic)?.messages === stored) break;
      await Bun.sleep(50);
    }
    proc.kill(signal);
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { stdout, stderr, code };
  } finally {
    clearTimeout(killer);
    proc.kill("SIGKILL");
  }
}


/** The peak resident size (VmHWM) of the mq process whose command line has `match`, read from /proc until `proc` (its shell) exits. */
async function peakResidentKb(proc: { exitCode: number | null }, match: string): Promise<number> {
  let peakKb = 0;
  while (proc.exitCode === null) {
    const pids = Bun.spawnSync(["pgrep", "-f", match]).stdout.toString().trim().split("\n").filter(Boolean);
    for (const pid of pids) {
      try {
        const hwm = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
        // Not the shell whose command line names it too.
        if (hwm && !fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("sh")) peakKb = Math.max(peakKb, Number(hwm[1]));
      } catch {
        // Gone between pgrep and the read.
      }
    }
    await Bun.sleep(100);
  }
  return peakKb;
}

describe("arguments that are not UTF-8", () => {
  test.skipIf(!linux)("are refused (exit 2, nothing stored) where they were stored as U+FFFD, and two msg-ids that differ only there collided (Linux: /proc)", async () => {
    const id = await subscribed("argv.bytes");
    const bad = await shell(`${mqLine(["pub", String(id), "argv.bytes"])} "$(printf 'a\\377')"`);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("argument 4 (");
    expect(bad.stderr).toContain("is not valid UTF-8");
    // Two ids differing only in bytes that are not UTF-8: the second was dropped as a duplicate of the first.
    for (const byte of ["\\377", "\\376"]) {
      const r = await shell(`${mqLine(["pub", String(id), "argv.bytes", "one", "--msg-id"])} "$(printf 'k${byte}')"`);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("is not valid UTF-8");
    }
    expect((await shell(`${mqLine(["pub", String(id), "argv.bytes"])} "$(printf 'caf\\303\\251')"`)).code).toBe(0);
    expect(await received(id)).toEqual(["café"]);
  });
});

describe("mq pub's standard input", () => {
  test.skipIf(!fs.existsSync("/proc/sys/kernel/ostype"))("a /proc file (its size says 0) is published with its bytes, not as an empty message", async () => {
    expect(fs.statSync("/proc/sys/kernel/ostype").size).toBe(0);
    const id = await subscribed("stdin.proc");
    const r = await shell(`${mqLine(["pub", String(id), "stdin.proc"])} < /proc/sys/kernel/ostype`);
    expect(r.code).toBe(0);
    expect(await received(id)).toEqual([fs.readFileSync("/proc/sys/kernel/ostype", "utf8").replace(/\n$/, "")]);
  });

  test("a directory is a usage error naming it; a closed standard input (<&-) is refused, where it published an empty message; < /dev/null still publishes one", async () => {
    const id = await subscribed("stdin.odd");
    const dir = await shell(`${mqLine(["pub", String(id), "stdin.odd"])} < /`);
    expect(dir.code).toBe(2);
    expect(dir.stderr).toContain("cannot read the message from standard input: it is a directory");
    if (linux) {
      const closed = await shell(`${mqLine(["pub", String(id), "stdin.odd"])} <&-`);
      expect(closed.code).toBe(2);
      expect(closed.stderr).toContain("standard input is closed (<&-)");
    }
    expect(await received(id)).toEqual([]);
    // The user's choice: an empty message.
    expect((await shell(`${mqLine(["pub", String(id), "stdin.odd"])} < /dev/null`)).code).toBe(0);
    expect(await received(id)).toEqual([""]);
  });

  test("a stream that never ends is refused once past the message limit, not read into memory; with --lines a line that never ends too", async () => {
    const id = await subscribed("stdin.endless");
    // Without the bound both ran until the killer (they read 544 MB and on).
    const one = await shell(`yes | ${mqLine(["pub", String(id), "stdin.endless"])}`);
    expect(one.code).toBe(1);
    expect(one.stderr).toContain("MESSAGE_TOO_LARGE: the message on standard input is above the server's limit of");
    const lines = await shell(`{ printf 'a\\nb\\n'; cat /dev/zero; } | ${mqLine(["pub", String(id), "stdin.endless", "--lines"])}`);
    expect(lines.code).toBe(1);
    expect(lines.stderr).toContain("line 3 was not sent, nor any line after it: lines 1-2 are stored");
    expect(await received(id)).toEqual(["a", "b"]);
  }, 120_000);

  test("--lines keeps a final \\r that no newline follows (it is data, not half of a CRLF)", async () => {
    const id = await subscribed("stdin.cr");
    expect((await shell(`printf 'a\\r\\nb\\r' | ${mqLine(["pub", String(id), "stdin.cr", "--lines"])}`)).code).toBe(0);
    expect(await received(id)).toEqual(["a", "b\r"]);
  });
});

describe("mq recv's standard output", () => {
  test.skipIf(!linux)("closed (>&-) is refused and the message stays pending, where it was acknowledged into nothing; > /dev/null still drains (Linux: /proc)", async () => {
    const id = await subscribed("stdout.closed");
    expect((await cluster.run(["pub", String(id), "stdout.closed", "kept"])).code).toBe(0);
    const closed = await shell(`${mqLine(["recv", String(id)])} >&-`);
    expect(closed.code).toBe(2);
    expect(closed.stderr).toContain("standard output is closed (>&-)");
    expect(await received(id)).toEqual(["kept"]);
    expect((await cluster.run(["pub", String(id), "stdout.closed", "dropped"])).code).toBe(0);
    expect((await shell(`${mqLine(["recv", String(id)])} > /dev/null`)).code).toBe(0);
    expect(await received(id)).toEqual([]);
  });
});

describe("mq pub --lines stopped, and its report lost", () => {
  test("Ctrl-C (SIGINT) stops the reading: what was stored is reported and named, exit 130 (it died with its report unprinted)", async () => {
    const id = await subscribed("lines.sigint");
    const { stdout, stderr, code } = await interruptedPub(id, "lines.sigint", "a\nb\nc\n", 3, "SIGINT");
    expect(code).toBe(130);
    expect(stdout).toBe(["seq 1", "seq 2", "seq 3"].map((s) => `lines.sigint: ${s}, 1 subscriber\n`).join(""));
    expect(stderr).toBe("mq: warning: interrupted: lines 1-3 are stored; the input after line 3 was not published\n");
    expect(await received(id)).toEqual(["a", "b", "c"]);
  });

  test.skipIf(!fs.existsSync("/dev/full"))("a report that cannot be written (/dev/full) says the message was stored, so it is not published again (needs /dev/full)", async () => {
    const id = await subscribed("report.full");
    const r = await shell(`${mqLine(["pub", String(id), "report.full", "kept"])} > /dev/full`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("ENOSPC");
    expect(r.stderr).toContain("the message was stored (seq 1): only the report is lost, do not publish it again");
    expect(await received(id)).toEqual(["kept"]);
  });
});

describe("mq pub --lines: signals, a report that fails, memory", () => {
  test("SIGTERM exits 143 (128 + 15), as a shell reports it; the lines read are stored and named", async () => {
    const id = await subscribed("lines.sigterm");
    // A partial line after the last newline is no line: it is not published.
    const { stderr, code } = await interruptedPub(id, "lines.sigterm", "a\nb\npart", 2, "SIGTERM");
    expect(code).toBe(143);
    expect(stderr).toBe("mq: warning: interrupted: lines 1-2 are stored; the input after line 2 was not published\n");
    expect(await received(id)).toEqual(["a", "b"]);
  });

  test.skipIf(!fs.existsSync("/dev/full"))("a report that cannot be written (/dev/full) does not stop the publishing: every line is stored, and the error says so (it stopped after 2,150 of 20,000, saying 'do not publish again')", async () => {
    const id = await subscribed("lines.full");
    const r = await shell(`seq 1 20000 | ${mqLine(["pub", String(id), "lines.full", "--lines"])} > /dev/full`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("ENOSPC");
    expect(r.stderr).toContain("lines 1-20000 are stored (the last one seq 20000): only their report is lost, do not publish them again");
    const topics = jsonLines((await cluster.run(["topics", "--json"])).stdout);
    expect(topics.find((t) => t.topic === "lines.full")?.messages).toBe(20000);
  }, 60_000);

  test("memory stays bounded while it reads: 200 MB of input, under 150 MB resident (it kept every chunk it read: 420 MB for 300 MB)", async () => {
    const id = await cluster.create();
    const line = "x".repeat(999);
    const proc = Bun.spawn(["sh", "-c", `yes '${line}' | head -c 200000000 | ${mqLine(["pub", String(id), "lines.memory", "--lines"])} > /dev/null`], { stdout: "ignore", stderr: "pipe", env: { ...process.env, MQ_SOCKET: cluster.local.socket } });
    const killer = setTimeout(() => proc.kill("SIGKILL"), 110_000);
    const peakKb = await peakResidentKb(proc, `pub ${id} lines.memory`);
    clearTimeout(killer);
    expect(await proc.exited).toBe(0);
    expect(peakKb).toBeGreaterThan(0);
    expect(peakKb).toBeLessThan(150 * 1024);
  }, 120_000);
});

describe("mq recv: memory", () => {
  test.skipIf(!linux)("stays bounded over 150 MB received (--follow --count): under 180 MB resident (it kept every batch until it exited: 281 MB)", async () => {
    const id = await subscribed("recv.memory");
    const line = "y".repeat(999);
    const pub = await shell(`yes '${line}' | head -n 150000 | ${mqLine(["pub", String(await cluster.create()), "recv.memory", "--lines"])} > /dev/null`, 110_000);
    expect(pub.code).toBe(0);
    const proc = Bun.spawn(["sh", "-c", `${mqLine(["recv", String(id), "--follow", "--count", "150000"])} | wc -l`], { stdout: "pipe", stderr: "pipe", env: { ...process.env, MQ_SOCKET: cluster.local.socket } });
    const killer = setTimeout(() => proc.kill("SIGKILL"), 110_000);
    const peakKb = await peakResidentKb(proc, `recv ${id} --follow`);
    clearTimeout(killer);
    expect(await proc.exited).toBe(0);
    expect((await new Response(proc.stdout).text()).trim()).toBe("150000");
    expect(peakKb).toBeGreaterThan(0);
    expect(peakKb).toBeLessThan(180 * 1024);
  }, 240_000);
});

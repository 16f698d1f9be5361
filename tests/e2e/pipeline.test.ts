/**
 * `mq recv` as the writing end of a shell pipeline (issue 7): every message whole and exactly
 * once into a slow reader, nothing acknowledged that the pipe did not take, a quiet exit
 * (141) soon after the reader goes away, and `--follow --wait S` as an idle timeout.
 *
 * The payloads are big on purpose. One recv batch (up to 1,000 messages) is then far more than a
 * pipe holds (64 KiB), so every batch needs several write(2) calls whatever the reader's
 * speed: that partial write is what corrupted the output (Bun.write re-sent the whole batch).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { mqCommand, startCluster } from "./harness.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;
beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

/** How long a test waits for a process that should exit by itself before it fails. */
const EXIT_BOUND_MS = 5000;

/** Message `i` (1-based) of a topic: fixed width, its number first, so a splice shows. */
function payload(i: number, width: number): string {
  const head = `M-${String(i).padStart(5, "0")}-`;
  return head + "x".repeat(width - head.length);
}

/** A new id subscribed to `topic`, with `count` messages of `width` bytes published to it. */
async function idWithBacklog(topic: string, count: number, width: number): Promise<number> {
  const id = await cluster.create();
  expect((await cluster.run(["sub", String(id), topic])).code).toBe(0);
  const lines = Array.from({ length: count }, (_, i) => `${payload(i + 1, width)}\n`).join("");
  const pub = await cluster.run(["pub", String(id), topic, "--lines"], { stdin: lines, timeoutMs: 60_000 });
  expect(pub.code).toBe(0);
  return id;
}

function shellQuote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/** The first index where `got` differs from `want`, described; null when they are equal. */
function firstDifference(got: string[], want: string[]): string | null {
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    if (got[i] !== want[i]) return `at ${i} of ${got.length} (want ${want.length}): got ${JSON.stringify(got[i]?.slice(0, 24))}, want ${JSON.stringify(want[i]?.slice(0, 24))}`;
  }
  return null;
}

/** The exit code of `proc`, or "still running" (and it is killed) if it has not exited within `ms`. */
async function exitWithin(proc: Subprocess, ms: number): Promise<number | "still running"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"still running">((resolve) => {
    timer = setTimeout(() => resolve("still running"), ms);
  });
  const result = await Promise.race([proc.exited, late]);
  clearTimeout(timer);
  if (result === "still running") {
    proc.kill("SIGKILL");
    await proc.exited;
  }
  return result;
}

/** Kills `proc` if it still runs after `ms`, so that no wait on it outlasts the bound; returns the cancel. */
function killAfter(proc: Subprocess, ms: number): () => void {
  const timer = setTimeout(() => proc.kill("SIGKILL"), ms);
  return () => clearTimeout(timer);
}

/** `mq recv ID ARGS` as a subprocess with its stdout a pipe to us, stderr collected. */
function spawnRecv(id: number, args: string[]) {
  const proc = Bun.spawn([...mqCommand(), "recv", String(id), ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, MQ_SOCKET: cluster.local.socket },
  });
  return { proc, stderr: new Response(proc.stderr).text() };
}

describe("mq recv into a slow pipe", () => {
  const COUNT = 600;
  const EXTRA = 100;
  const WIDTH = 1000;
  const want = Array.from({ length: COUNT }, (_, i) => payload(i + 1, WIDTH));

  /**
   * `mq recv ID --count 600 ARGS | (sleep 0.3; cat)`, the pipeline of the report: the pause
   * lets the pipe fill up so that recv meets EAGAIN and must wait. recv's exit status comes
   * on stderr.
   */
  async function throughSlowReader(id: number, args: string[]) {
    const recv = [...mqCommand(), "recv", String(id), "--count", String(COUNT), ...args].map(shellQuote).join(" ");
    const proc = Bun.spawn(["sh", "-c", `{ ${recv}; echo "recv exit $?" >&2; } | { sleep 0.3; cat; }`], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, MQ_SOCKET: cluster.local.socket },
    });
    const cancel = killAfter(proc, 60_000);
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).bytes(), new Response(proc.stderr).text(), proc.exited]);
    cancel();
    expect(code).toBe(0);
    return { stdout, stderr };
  }

  /** What is left pending afterwards: exactly the messages after the last one written. */
  async function expectRestPending(id: number) {
    const rest = await cluster.run(["recv", String(id), "--count", "1000"], { timeoutMs: 60_000 });
    expect(rest.code).toBe(0);
    const restWant = Array.from({ length: EXTRA }, (_, i) => payload(COUNT + i + 1, WIDTH));
    expect(firstDifference(rest.stdout.split("\n").slice(0, -1), restWant)).toBeNull();
  }

  test("text: every line whole, exactly once, in order; the rest stays pending", async () => {
    const id = await idWithBacklog("pipe.text", COUNT + EXTRA, WIDTH);
    const r = await throughSlowReader(id, []);
    expect(r.stderr).toBe("recv exit 0\n");
    const text = new TextDecoder().decode(r.stdout);
    expect(text.length).toBe(COUNT * (WIDTH + 1));
    expect(firstDifference(text.split("\n").slice(0, -1), want)).toBeNull();
    await expectRestPending(id);
  });

  test("--json: every line parses, each message exactly once, in order; the rest stays pending", async () => {
    const id = await idWithBacklog("pipe.json", COUNT + EXTRA, WIDTH);
    const r = await throughSlowReader(id, ["--json"]);
    expect(r.stderr).toBe("recv exit 0\n");
    const lines = new TextDecoder().decode(r.stdout).split("\n");
    expect(lines.pop()).toBe("");
    expect(lines.length).toBe(COUNT);
    const parsed = lines.map((l) => {
      try {
        return JSON.parse(l) as { topic: string; seq: number; data: string };
      } catch {
        return { topic: "", seq: -1, data: `unparsable: ${l.slice(0, 24)}` };
      }
    });
    expect(firstDifference(parsed.map((m) => `${m.topic} ${m.seq} ${m.data}`), want.map((w, i) => `pipe.json ${i + 1} ${w}`))).toBeNull();
    await expectRestPending(id);
  });

  test("--raw: the payload bytes exactly, once each, in order; the rest stays pending", async () => {
    const id = await idWithBacklog("pipe.raw", COUNT + EXTRA, WIDTH);
    const r = await throughSlowReader(id, ["--raw"]);
    expect(r.stderr).toBe("recv exit 0\n");
    expect(r.stdout.length).toBe(COUNT * WIDTH);
    const text = new TextDecoder().decode(r.stdout);
    const got = Array.from({ length: COUNT }, (_, i) => text.slice(i * WIDTH, (i + 1) * WIDTH));
    expect(firstDifference(got, want)).toBeNull();
    await expectRestPending(id);
  });
});

describe("mq recv when its reader goes away", () => {
  test("--follow with no new message exits 141, quietly, soon after the reader closes the pipe", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "gone.idle"]);
    await cluster.run(["pub", String(id), "gone.idle", "first"]);
    const { proc, stderr } = spawnRecv(id, ["--follow"]);
    try {
      const reader = proc.stdout.getReader();
      let got = "";
      const decoder = new TextDecoder();
      const cancel = killAfter(proc, 15_000); // the stream ends if it has to be killed
      while (!got.includes("\n")) {
        const chunk = await reader.read();
        if (chunk.done) break;
        got += decoder.decode(chunk.value, { stream: true });
      }
      cancel();
      expect(got).toBe("first\n");
      await reader.cancel(); // closes our end of the pipe, as `head -1` exiting does
      expect(await exitWithin(proc, EXIT_BOUND_MS)).toBe(141);
      expect(await stderr).toBe("");
    } finally {
      proc.kill("SIGKILL");
    }
    // The message it wrote was acknowledged; nothing else was pending.
    expect(await cluster.run(["recv", String(id)])).toEqual({ code: 3, stdout: "", stderr: "" });
  });

  /**
   * `mq recv ID --follow > FIFO`, SIGTERM once it has filled the FIFO (whose read end this test
   * holds: Bun reads a spawned process's stdout pipe by itself); the FIFO is read to its end at
   * once, or only after recv exited. Returns recv's exit code and stderr, and what it wrote.
   */
  async function followThenTerm(id: number, read: "at once" | "after exit") {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-fifo-"));
    const fifo = path.join(dir, "out");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const readEnd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const recv = [...mqCommand(), "recv", String(id), "--follow"].map(shellQuote).join(" ");
    const proc = Bun.spawn(["sh", "-c", `exec ${recv} > ${shellQuote(fifo)}`], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
      env: { ...process.env, MQ_SOCKET: cluster.local.socket },
    });
    const stderr = new Response(proc.stderr).text();
    try {
      await Bun.sleep(1500); // not a check: time for recv to fill the pipe (less only makes the test weaker)
      proc.kill("SIGTERM");
      if (read === "after exit") {
        const code = await exitWithin(proc, 10_000);
        return { code, stderr: await stderr, written: await readToEnd(readEnd) };
      }
      const [written, code] = await Promise.all([readToEnd(readEnd), exitWithin(proc, 10_000)]);
      return { code, stderr: await stderr, written };
    } finally {
      proc.kill("SIGKILL");
      fs.closeSync(readEnd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Reads the FIFO to its end (the writer gone), as fast as it comes. */
  async function readToEnd(readEnd: number): Promise<string> {
    const chunk = Buffer.alloc(1 << 16);
    let written = "";
    const until = performance.now() + 20_000; // a bound on the loop, not a check
    while (performance.now() < until) {
      let got: number;
      try {
        got = fs.readSync(readEnd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
        await Bun.sleep(5);
        continue;
      }
      if (got === 0) break; // the writer is gone
      written += chunk.toString("latin1", 0, got);
    }
    return written;
  }

  /**
   * What the next recv gets: exactly the messages after the first `k`, in order, to `total`. It
   * waits for the first (what went back may take a moment to be pending again).
   */
  async function expectPendingFrom(id: number, k: number, total: number, width: number) {
    const rest = await cluster.run(["recv", String(id), "--count", "1000", "--wait", "5"], { timeoutMs: 60_000 });
    // The batch under way may have held them all (how many the local broker had buffered when the follow began).
    if (k === total) return expect({ code: rest.code, stdout: rest.stdout }).toEqual({ code: 3, stdout: "" });
    expect(rest.code).toBe(0);
    const again = rest.stdout.split("\n").slice(0, -1);
    expect(firstDifference(again, Array.from({ length: total - k }, (_, i) => payload(k + i + 1, width)))).toBeNull();
  }

  test("--follow stops on SIGTERM while its reader takes nothing; what it did not write whole comes again, nothing else", async () => {
    // 300 messages of 1,000 bytes are ~5 pipes full: recv fills the pipe and then waits on it. A
    // write(2) of more than the pipe has room for would block it there, deaf to SIGTERM.
    const TOTAL = 300;
    const WIDTH = 1000;
    const id = await idWithBacklog("stuck.follow", TOTAL, WIDTH);
    // The reader takes nothing until recv has exited: recv cuts its write, as a killed `cat` leaves it.
    const r = await followThenTerm(id, "after exit");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    // What reached the pipe: whole lines 1..k in order, then perhaps a cut one.
    const whole = r.written.split("\n").slice(0, -1);
    expect(whole.length).toBeGreaterThan(0);
    expect(whole.length).toBeLessThan(100); // the pipe held only part of the first batch: recv was waiting on it
    expect(firstDifference(whole, Array.from({ length: whole.length }, (_, i) => payload(i + 1, WIDTH)))).toBeNull();
    // The k lines written whole were acknowledged: the cut one and those after come again, nothing before.
    await expectPendingFrom(id, whole.length, TOTAL, WIDTH);
  });

  test("--follow on SIGTERM mid-batch lets the reader take the rest: that batch, written whole, does not come again", async () => {
    // The reader is stuck when the signal comes (recv waits on a full pipe, mid-batch), then reads
    // everything: the batch goes out whole, and so must be acknowledged (it came twice: seq 1625 after 1724).
    const TOTAL = 300;
    const WIDTH = 1000;
    const id = await idWithBacklog("term.midbatch", TOTAL, WIDTH);
    const r = await followThenTerm(id, "at once");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.written.endsWith("\n")).toBe(true); // the batch was finished, not cut
    const whole = r.written.split("\n").slice(0, -1);
    expect(whole.length).toBeGreaterThanOrEqual(100); // at least the first batch, under way at the signal
    expect(firstDifference(whole, Array.from({ length: whole.length }, (_, i) => payload(i + 1, WIDTH)))).toBeNull();
    await expectPendingFrom(id, whole.length, TOTAL, WIDTH);
  });

  test("a message it could not write whole is not acknowledged: it is pending for the next recv", async () => {
    // Each message is bigger than a pipe holds, so none can be written whole into a reader
    // that takes a few bytes and exits: none may be acknowledged.
    const WIDTH = 200_000;
    const id = await idWithBacklog("gone.partial", 3, WIDTH);
    const recv = [...mqCommand(), "recv", String(id), "--count", "3"].map(shellQuote).join(" ");
    const proc = Bun.spawn(["sh", "-c", `{ ${recv}; echo "recv exit $?" >&2; } | head -c 8`], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, MQ_SOCKET: cluster.local.socket },
    });
    const cancel = killAfter(proc, 15_000);
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    cancel();
    expect(code).toBe(0);
    expect(stdout).toBe("M-00001-");
    expect(stderr).toBe("recv exit 141\n");
    const next = await cluster.run(["recv", String(id), "--count", "10"]);
    expect(next.code).toBe(0);
    expect(firstDifference(next.stdout.split("\n").slice(0, -1), [1, 2, 3].map((i) => payload(i, WIDTH)))).toBeNull();
  });
});

describe("mq recv --follow --wait", () => {
  test("exits 3 after S seconds without a message", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "idle.none"]);
    const r = await cluster.run(["recv", String(id), "--follow", "--wait", "1"], { timeoutMs: EXIT_BOUND_MS });
    expect(r).toEqual({ code: 3, stdout: "", stderr: "" });
  });

  test("writes what is pending, acknowledges it, then exits 3 once S seconds pass without another", async () => {
    const id = await cluster.create();
    await cluster.run(["sub", String(id), "idle.some"]);
    await cluster.run(["pub", String(id), "idle.some", "one"]);
    const r = await cluster.run(["recv", String(id), "--follow", "--wait", "1"], { timeoutMs: EXIT_BOUND_MS });
    expect(r).toEqual({ code: 3, stdout: "one\n", stderr: "" });
    expect((await cluster.run(["recv", String(id)])).code).toBe(3);
  });
});

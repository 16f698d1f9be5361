/**
 * `mq recv` as the writing end of a shell pipeline (issue 7): every message whole and exactly
 * once into a slow reader.
 *
 * The payloads are big on purpose. One recv batch (up to 256 messages) is then far more than a
 * pipe holds (64 KiB), so every batch needs several write(2) calls whatever the reader's
 * speed: that partial write is what corrupted the output (Bun.write re-sent the whole batch).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { mqCommand, startCluster } from "./harness.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;
beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

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

/** Kills `proc` if it still runs after `ms`, so that no wait on it outlasts the bound; returns the cancel. */
function killAfter(proc: Subprocess, ms: number): () => void {
  const timer = setTimeout(() => proc.kill("SIGKILL"), ms);
  return () => clearTimeout(timer);
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

/**
 * `mq bench` through the binary: it publishes and receives every message and reports the
 * ack and end-to-end latency percentiles p50/p90/p99/p99.9/max, in text and `--json`.
 */
import { expect, test } from "bun:test";
import { formatPercentiles, percentiles } from "../../lib/cli/bench.ts";
import { mqCommand, startCluster } from "./harness.ts";

const KEYS = ["p50", "p90", "p99", "p99_9", "max"];

function expectOrdered(p: Record<string, number>): void {
  expect(Object.keys(p)).toEqual(KEYS);
  for (const k of KEYS) expect(p[k]).toBeGreaterThan(0);
  for (let i = 1; i < KEYS.length; i++) expect(p[KEYS[i]!]!).toBeGreaterThanOrEqual(p[KEYS[i - 1]!]!);
}

test("percentiles: nearest rank over 1..1000, and zeros for no values", () => {
  const values = Float64Array.from({ length: 1000 }, (_, i) => 1000 - i); // unsorted on purpose
  expect(percentiles(values)).toEqual({ p50: 500, p90: 900, p99: 990, p99_9: 999, max: 1000 });
  expect(percentiles([])).toEqual({ p50: 0, p90: 0, p99: 0, p99_9: 0, max: 0 });
  expect(percentiles([7])).toEqual({ p50: 7, p90: 7, p99: 7, p99_9: 7, max: 7 });
  expect(formatPercentiles({ p50: 1, p90: 2, p99: 3, p99_9: 4, max: 5 })).toBe("p50 1 ms, p90 2 ms, p99 3 ms, p99.9 4 ms, max 5 ms");
});

test("mq bench --json and text: every message through, p50/p90/p99/p99.9/max in order; --window 1", async () => {
  await using cluster = await startCluster();
  const json = await cluster.run(["bench", "--count", "300", "--window", "1", "--topic", "bench.json", "--json"], { timeoutMs: 60_000 });
  expect(json.code).toBe(0);
  const r = JSON.parse(json.stdout);
  expect(r).toMatchObject({ messages: 300, size: 128, pubs: 1, subs: 1 });
  expectOrdered(r.pub_ack_ms);
  expectOrdered(r.latency_ms);

  const text = await cluster.run(["bench", "--count", "300", "--window", "4", "--topic", "bench.text"], { timeoutMs: 60_000 });
  expect(text.code).toBe(0);
  const pct = String.raw`p50 [\d.]+ ms, p90 [\d.]+ ms, p99 [\d.]+ ms, p99\.9 [\d.]+ ms, max [\d.]+ ms`;
  expect(text.stdout).toMatch(new RegExp(`^publish: +\\d+ msgs/s, ack latency ${pct}$`, "m"));
  expect(text.stdout).toMatch(new RegExp(`^latency: +${pct} \\(publish to recv\\)$`, "m"));
});

test("mq bench with a bad --window exits 2 naming the value", async () => {
  await using cluster = await startCluster();
  const r = await cluster.run(["bench", "--window", "0"]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain("window");
  expect(r.stderr).toContain("0");
});

test("the progress bar is for a terminal: into a pipe stderr stays empty", async () => {
  await using cluster = await startCluster();
  // A pipe (what `2>&1 | head` or `2> file` give): no frames run together, no stray newline.
  const piped = await cluster.run(["bench", "--count", "200", "--topic", "bench.pipe", "--json"], { timeoutMs: 60_000 });
  expect(piped.code).toBe(0);
  expect(piped.stderr).toBe("");
});

test.skipIf(!Bun.which("script"))("the progress bar is drawn on a terminal, at the start at least (needs util-linux script)", async () => {
  await using cluster = await startCluster();
  const command = [...mqCommand(), "bench", "--count", "200", "--topic", "bench.tty", "--json"].map((a) => `'${a}'`).join(" ");
  const proc = Bun.spawn(["script", "-qec", command, "/dev/null"], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, MQ_SOCKET: cluster.local.socket } });
  const killer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  try {
    const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    expect(code).toBe(0);
    // The pty holds stdout and stderr: the bar, then the result.
    expect(out).toMatch(/\r\[[#.]{30}\] published \d+\/200 received \d+\/200/);
    expect(out).toContain('"messages":200');
  } finally {
    clearTimeout(killer);
    proc.kill("SIGKILL");
  }
});

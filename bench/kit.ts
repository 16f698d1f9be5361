/** Pieces the benchmark scripts share: the binary they run and a wait for a daemon's log line. */
import * as path from "node:path";
import type { Subprocess } from "bun";

/** The compiled mq the benchmarks run ($MQ_BIN, or dist/mq). */
export const mqBin = process.env.MQ_BIN ?? path.resolve(import.meta.dir, "../dist/mq");

/** Reads `proc`'s stderr until a line matches `re`; throws with the log when it exits first. */
export async function waitForLog(proc: Subprocess<"ignore", "pipe" | "ignore", "pipe">, re: RegExp): Promise<RegExpMatchArray> {
  let log = "";
  const decoder = new TextDecoder();
  for await (const chunk of proc.stderr) {
    log += decoder.decode(chunk, { stream: true });
    const m = log.match(re);
    if (m) return m;
  }
  throw new Error(`exited before ${re}:\n${log}`);
}

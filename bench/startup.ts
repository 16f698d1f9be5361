/**
 * Start-up of the mq executable beside a compiled hello world and redis-cli (docs/benchmarks.md).
 *
 *   bun bench/startup.ts [--rounds N] [MQ_BINARY...]     (default: dist/mq)
 *
 * Builds a one-line hello world with the same flags as mq (scripts/build.ts), starts `mq up` from
 * the first binary on a temporary data directory, socket and free port, subscribes one id, then
 * runs each command once per round, round after round (so that a busy neighbour slows all of them
 * alike), and prints the median and the minimum wall time of each: process start to exit, as
 * `hyperfine -N` counts it. The one-shot publish goes through that running local broker and
 * waits for the server's fsync (--fsync always, the default).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BUILD_FLAGS } from "../scripts/build.ts";

const root = path.resolve(import.meta.dir, "..");
const args = process.argv.slice(2);
let rounds = 30;
const binaries: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--rounds") rounds = Number(args[++i]);
  else binaries.push(path.resolve(args[i]!));
}
if (binaries.length === 0) binaries.push(path.join(root, "dist", "mq"));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-startup-"));
const hello = path.join(dir, "hello");
fs.writeFileSync(path.join(dir, "hello.ts"), 'console.log("hello");\n');
const built = Bun.spawnSync([process.execPath, "build", ...BUILD_FLAGS, path.join(dir, "hello.ts"), "--outfile", hello], { stdout: "ignore", stderr: "inherit" });
if (built.exitCode !== 0) throw new Error("cannot build the hello world");

const socket = path.join(dir, "local.sock");
const up = Bun.spawn([binaries[0]!, "up", "--data", path.join(dir, "data"), "--listen", "127.0.0.1:0", "--socket", socket], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
try {
  let log = "";
  const decoder = new TextDecoder();
  for await (const chunk of up.stderr) {
    log += decoder.decode(chunk, { stream: true });
    if (log.includes("mq is up")) break;
  }
  if (!log.includes("mq is up")) throw new Error(`mq up did not start:\n${log}`);
  const once = (cmd: string[]) => {
    const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
    if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: exit ${p.exitCode}: ${p.stderr.toString()}`);
    return p.stdout.toString().trim();
  };
  const id = once([binaries[0]!, "create", "--socket", socket]);
  once([binaries[0]!, "sub", id, "startup", "--socket", socket]);

  const commands: Array<{ label: string; cmd: string[] }> = [{ label: "hello world (compiled the same way)", cmd: [hello] }];
  const redis = Bun.which("redis-cli");
  if (redis) commands.push({ label: "redis-cli --version", cmd: [redis, "--version"] });
  for (const bin of binaries) {
    const name = path.relative(process.cwd(), bin) || bin;
    commands.push({ label: `${name} --version`, cmd: [bin, "--version"] });
    commands.push({ label: `${name} help`, cmd: [bin, "help"] });
    commands.push({ label: `${name} pub ID startup hello`, cmd: [bin, "pub", id, "startup", "hello", "--socket", socket] });
  }
  for (const c of commands) once(c.cmd); // warm the page cache

  const times = commands.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (const [i, c] of commands.entries()) {
      const t0 = performance.now();
      const p = Bun.spawnSync(c.cmd, { stdout: "ignore", stderr: "ignore" });
      times[i]!.push(performance.now() - t0);
      if (p.exitCode !== 0) throw new Error(`${c.cmd.join(" ")}: exit ${p.exitCode}`);
    }
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const base = median(times[0]!);
  console.log(`${rounds} rounds, ${os.cpus().length} cores, load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}, bun ${Bun.version}`);
  console.log(`| command | median ms | min ms | × hello |`);
  console.log(`|---|---|---|---|`);
  for (const [i, c] of commands.entries()) {
    const m = median(times[i]!);
    console.log(`| \`${c.label}\` | ${m.toFixed(1)} | ${Math.min(...times[i]!).toFixed(1)} | ${(m / base).toFixed(1)} |`);
  }
} finally {
  up.kill("SIGTERM");
  await up.exited;
  fs.rmSync(dir, { recursive: true, force: true });
}

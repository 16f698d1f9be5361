/**
 * The daemons execute themselves again, once, with MIMALLOC_PURGE_DELAY=-1 (lib/cli/allocator.ts):
 * the same process id, the same arguments, the variable in the environment; a value the user
 * set is kept. Read from /proc/PID/environ and /proc/PID/cmdline, so Linux only.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Daemon, mq, mqCommand, teardown, tmpDir } from "./harness.ts";

const root = path.resolve(import.meta.dir, "../..");
const daemons: Daemon[] = [];
const dirs: string[] = [];
afterAll(() => teardown(daemons, dirs));

/** The environment of the test run without the variable, plus `extra`. */
function envWithout(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (k !== "MIMALLOC_PURGE_DELAY" && v !== undefined) env[k] = v;
  return { ...env, ...extra };
}

function start(command: string[], env: Record<string, string>): Daemon {
  const d = new Daemon(command[1] ?? "mq", Bun.spawn(command, { stdin: "ignore", stdout: "ignore", stderr: "pipe", env }));
  daemons.push(d);
  return d;
}

/** NAME=VALUE of `name` in the environment of process `pid`, as the kernel holds it. */
function environOf(pid: number, name: string): string | undefined {
  return fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").find((e) => e.startsWith(`${name}=`));
}

function cmdlineOf(pid: number): string[] {
  return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
}

describe.skipIf(process.platform !== "linux")("daemons run with mimalloc's purge off (reads /proc: Linux only)", () => {
  test("mq up without the variable executes itself again with MIMALLOC_PURGE_DELAY=-1: same pid, same arguments, and it serves", async () => {
    const dir = tmpDir("mq-alloc-");
    dirs.push(dir);
    const socket = path.join(dir, "mq.sock");
    const args = ["up", "--listen", "127.0.0.1:0", "--data", dir, "--socket", socket];
    const up = start([...mqCommand(), ...args], envWithout());
    await up.waitFor(/connected to the server/);
    expect(environOf(up.proc.pid, "MIMALLOC_PURGE_DELAY")).toBe("MIMALLOC_PURGE_DELAY=-1");
    expect(cmdlineOf(up.proc.pid).slice(-args.length)).toEqual(args);
    const created = await mq(socket, ["create"]);
    expect(created.code).toBe(0);
    expect(await up.stop()).toBe(0); // SIGTERM still reaches it
  });

  test("the environment and arguments go through byte for byte, also what is not UTF-8", async () => {
    const dir = tmpDir("mq-alloc-");
    dirs.push(dir);
    const cmd = [...mqCommand(), "server", "--listen", "127.0.0.1:0", "--data", dir].map((w) => `'${w}'`).join(" ");
    // Latin-1 "café" in a variable and an empty one, set by the shell (Bun.spawn takes only strings).
    const server = start(["sh", "-c", `MQ_TEST_LATIN1=$(printf 'caf\\351') MQ_TEST_EMPTY= exec ${cmd}`], envWithout());
    await server.waitFor(/listening on/);
    const environ = fs.readFileSync(`/proc/${server.proc.pid}/environ`);
    expect(environ.includes(Buffer.from("\0MQ_TEST_LATIN1=caf\xe9\0", "latin1"))).toBe(true);
    expect(environ.includes(Buffer.from("\0MQ_TEST_EMPTY=\0"))).toBe(true);
    expect(environOf(server.proc.pid, "MIMALLOC_PURGE_DELAY")).toBe("MIMALLOC_PURGE_DELAY=-1");
  });

  test("under Bun's sampling profiler (--cpu-prof) it does not execute itself again, says why at debug level, and serves", async () => {
    const dir = tmpDir("mq-alloc-");
    dirs.push(dir);
    const script = path.join(root, "cmd", "mq.ts");
    const args = ["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "data"), "--log-level", "debug"];
    const server = start([process.execPath, "--cpu-prof", `--cpu-prof-dir=${path.join(dir, "prof")}`, script, ...args], envWithout());
    await server.waitFor(/listening on/);
    expect(environOf(server.proc.pid, "MIMALLOC_PURGE_DELAY")).toBeUndefined();
    expect(server.log).toContain("running with mimalloc's default purge: under Bun's sampling profiler (--cpu-prof)");
    expect(await server.stop()).toBe(0);
  });

  test("a value the user set is kept (no second start)", async () => {
    const dir = tmpDir("mq-alloc-");
    dirs.push(dir);
    const server = start([...mqCommand(), "server", "--listen", "127.0.0.1:0", "--data", dir], envWithout({ MIMALLOC_PURGE_DELAY: "10" }));
    await server.waitFor(/listening on/);
    expect(environOf(server.proc.pid, "MIMALLOC_PURGE_DELAY")).toBe("MIMALLOC_PURGE_DELAY=10");
  });

  test("run from source (bun cmd/mq.ts), the script is started again too", async () => {
    const dir = tmpDir("mq-alloc-");
    dirs.push(dir);
    const script = path.join(root, "cmd", "mq.ts");
    const server = start([process.execPath, script, "server", "--listen", "127.0.0.1:0", "--data", dir], envWithout());
    await server.waitFor(/listening on/);
    expect(environOf(server.proc.pid, "MIMALLOC_PURGE_DELAY")).toBe("MIMALLOC_PURGE_DELAY=-1");
    expect(cmdlineOf(server.proc.pid).slice(1)).toEqual([script, "server", "--listen", "127.0.0.1:0", "--data", dir]);
  });
});

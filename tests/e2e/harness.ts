/**
 * End-to-end harness: real `mq server` and `mq local` processes on real sockets, driven
 * through the real CLI. Uses the compiled binary (`dist/mq`, or $MQ_BIN) so the shipped
 * artefact is what is tested; falls back to `bun cmd/mq.ts` when it is not built.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Subprocess } from "bun";

const root = path.resolve(import.meta.dir, "../..");

export function mqCommand(): string[] {
  if (process.env.MQ_BIN) return [process.env.MQ_BIN];
  const bin = path.join(root, "dist", "mq");
  if (fs.existsSync(bin)) return [bin];
  return [process.execPath, path.join(root, "cmd", "mq.ts")];
}

/**
 * MQ_TEST_STORE=memory: every server the harness starts runs `--store memory` (package.json
 * runs the e2e files that need no restart once more that way). A test that needs what a
 * restart keeps skips itself with `test.skipIf(memoryStore)`.
 */
export const memoryStore = testStore() === "memory";

function testStore(): "file" | "memory" {
  const store = process.env.MQ_TEST_STORE || "file";
  if (store !== "file" && store !== "memory") throw new Error(`MQ_TEST_STORE must be file or memory, got ${JSON.stringify(store)}`);
  return store;
}

export function tmpDir(prefix = "mq-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Daemons not known to have exited (a test that failed before its teardown leaves some). */
const running = new Set<Subprocess>();

/** Kills (SIGKILL, by PID) the daemons still running; tests/preload.ts calls it once every test has run. */
export function killDaemonsLeft(): number {
  let killed = 0;
  for (const proc of running) {
    if (proc.exitCode !== null || proc.signalCode !== null) continue;
    proc.kill("SIGKILL");
    killed++;
  }
  return killed;
}

/** A daemon started from the CLI; its stderr is collected so tests can wait for log lines. */
export class Daemon {
  log = "";
  private readonly waiters: Array<{ re: RegExp; since: number; resolve: (m: RegExpMatchArray) => void }> = [];
  readonly exited: Promise<number>;

  constructor(
    readonly name: string,
    readonly proc: Subprocess<"ignore", "ignore", "pipe">,
  ) {
    this.exited = proc.exited;
    running.add(proc);
    void this.exited.finally(() => running.delete(proc));
    void this.pump();
  }

  private async pump(): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of this.proc.stderr) {
      this.log += decoder.decode(chunk, { stream: true });
      for (let i = this.waiters.length - 1; i >= 0; i--) {
        const m = this.log.slice(this.waiters[i]!.since).match(this.waiters[i]!.re);
        if (m) this.waiters.splice(i, 1)[0]!.resolve(m);
      }
    }
  }

  /**
   * Resolves when stderr from offset `since` on (`log.length` taken earlier: only what was logged
   * after that) matches `re`, already or later; fails after `ms` or if the daemon exits.
   */
  async waitFor(re: RegExp, ms = 15_000, since = 0): Promise<RegExpMatchArray> {
    const now = this.log.slice(since).match(re);
    if (now) return now;
    const { promise, resolve } = Promise.withResolvers<RegExpMatchArray>();
    this.waiters.push({ re, since, resolve });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name}: no ${re} in ${ms} ms; log:\n${this.log}`)), ms);
    });
    const exit = this.exited.then((code) => {
      throw new Error(`${this.name} exited with ${code} before ${re}; log:\n${this.log}`);
    });
    try {
      return await Promise.race([promise, timeout, exit]);
    } finally {
      clearTimeout(timer);
    }
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** SIGTERM and wait for the exit code. */
  async stop(): Promise<number> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGTERM");
    return this.exited;
  }

  async kill9(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
    await this.exited;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const stopped = this.stop();
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 8000);
    await stopped;
    clearTimeout(timer);
  }
}

/** `prefix`: a command that runs mq (e.g. `sh -c 'ulimit -n 256 && exec "$@"' sh`); its pid must end up mq's (exec). */
function spawnDaemon(name: string, args: string[], env: Record<string, string> = {}, prefix: string[] = []): Daemon {
  const proc = Bun.spawn([...prefix, ...mqCommand(), ...args], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  return new Daemon(name, proc);
}

export interface ServerHandle {
  daemon: Daemon;
  port: number;
  dataDir: string;
  address: string;
}

/**
 * Starts `mq server` on 127.0.0.1 (port 0 = any free one) and waits until it listens;
 * `prefix` runs it under another command (see spawnDaemon). With MQ_TEST_STORE=memory it
 * runs `--store memory` (a `--store` in `args` comes later, and wins).
 */
export async function startServer(options: { dataDir?: string; port?: number; args?: string[]; env?: Record<string, string>; prefix?: string[] } = {}): Promise<ServerHandle> {
  const dataDir = options.dataDir ?? tmpDir("mq-server-");
  const store = memoryStore ? ["--store", "memory"] : [];
  const daemon = spawnDaemon("server", ["server", "--listen", `127.0.0.1:${options.port ?? 0}`, "--data", dataDir, ...store, ...(options.args ?? [])], options.env, options.prefix);
  const m = await daemon.waitFor(/listening on 127\.0\.0\.1:(\d+)/);
  const port = Number(m[1]);
  return { daemon, port, dataDir, address: `127.0.0.1:${port}` };
}

/**
 * Stops `server` (SIGTERM, expecting exit 0; `kill: true`: SIGKILL), runs `between` while it is
 * down, starts it again on its port and data directory with `args`, and waits until each of
 * `locals` has connected to it again (a line logged after this restart, not an earlier one's;
 * up to `reconnectMs` each, 15 s by default: a far link's local broker may take longer).
 */
export async function restartServer(
  server: ServerHandle,
  locals: Array<{ daemon: Daemon }>,
  options: { kill?: boolean; args?: string[]; between?: () => unknown; reconnectMs?: number } = {},
): Promise<ServerHandle> {
  const marks = locals.map((l) => l.daemon.log.length);
  if (options.kill) await server.daemon.kill9();
  else {
    const code = await server.daemon.stop();
    if (code !== 0) throw new Error(`server exited with ${code} on SIGTERM (expected 0); log:\n${server.daemon.log}`);
  }
  await options.between?.();
  const again = await startServer({ dataDir: server.dataDir, port: server.port, args: options.args });
  for (const [i, local] of locals.entries()) await local.daemon.waitFor(/connected to the server.*after/, options.reconnectMs ?? 15_000, marks[i]);
  return again;
}

export interface LocalHandle {
  daemon: Daemon;
  socket: string;
  dataDir: string;
}

/** Starts `mq local` against `server` and waits until it is connected (unless `connected: false`). */
export async function startLocal(
  server: string,
  options: { dataDir?: string; socket?: string; args?: string[]; connected?: boolean; env?: Record<string, string> } = {},
): Promise<LocalHandle> {
  const dataDir = options.dataDir ?? tmpDir("mq-local-");
  const socket = options.socket ?? path.join(dataDir, "local.sock");
  const daemon = spawnDaemon("local", ["local", "--server", server, "--data", dataDir, "--socket", socket, ...(options.args ?? [])], options.env);
  await daemon.waitFor(options.connected === false ? /listening on/ : /connected to the server/);
  return { daemon, socket, dataDir };
}

export interface UpHandle {
  daemon: Daemon;
  socket: string;
  /** Holds server/, local/ and the token. */
  dataDir: string;
  /** The server's TCP port. */
  port: number;
}

/** Starts `mq up` (server and local broker in one process) and waits until its local broker is connected. */
export async function startUp(options: { dataDir?: string; port?: number; args?: string[]; env?: Record<string, string> } = {}): Promise<UpHandle> {
  const dataDir = options.dataDir ?? tmpDir("mq-up-");
  const socket = path.join(dataDir, "local.sock");
  const store = memoryStore ? ["--store", "memory"] : [];
  const daemon = spawnDaemon("up", ["up", "--listen", `127.0.0.1:${options.port ?? 0}`, "--data", dataDir, "--socket", socket, ...store, ...(options.args ?? [])], options.env);
  const port = Number((await daemon.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  await daemon.waitFor(/connected to the server/);
  return { daemon, socket, dataDir, port };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one CLI command to completion (bounded by `timeoutMs`), with MQ_SOCKET set to `socket`. */
export async function mq(socket: string | null, args: string[], options: { stdin?: string | Uint8Array; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<RunResult> {
  const env: Record<string, string | undefined> = { ...process.env, ...options.env };
  if (socket) env.MQ_SOCKET = socket;
  else delete env.MQ_SOCKET;
  const proc = Bun.spawn([...mqCommand(), ...args], {
    stdin: options.stdin === undefined ? "ignore" : new Blob([options.stdin]),
    stdout: "pipe",
    stderr: "pipe",
    env,
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeoutMs ?? 20_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** A server and one local broker, torn down (by PID) when disposed. */
export async function startCluster(options: { serverArgs?: string[] } = {}) {
  const server = await startServer(options.serverArgs ? { args: options.serverArgs } : {});
  const local = await startLocal(server.address);
  const run = (args: string[], opts?: Parameters<typeof mq>[2]) => mq(local.socket, args, opts);
  return {
    server,
    local,
    run,
    /** `mq create` → the new id. */
    async create(): Promise<number> {
      const r = await run(["create"]);
      if (r.code !== 0) throw new Error(`mq create failed: ${r.code} ${r.stderr}`);
      return Number(r.stdout.trim());
    },
    async [Symbol.asyncDispose]() {
      await local.daemon[Symbol.asyncDispose]();
      await server.daemon[Symbol.asyncDispose]();
      fs.rmSync(local.dataDir, { recursive: true, force: true });
      fs.rmSync(server.dataDir, { recursive: true, force: true });
    },
  };
}

/** Parses NDJSON output (`--json`) into objects. */
export function jsonLines(stdout: string): Array<Record<string, unknown>> {
  return stdout.trim() === "" ? [] : stdout.trim().split("\n").map((l) => JSON.parse(l));
}

/** `mq create` through the local broker at `socket` → the new local id. */
export async function createOn(socket: string): Promise<number> {
  const r = await mq(socket, ["create"]);
  if (r.code !== 0) throw new Error(`mq create failed with ${r.code}: ${r.stderr}`);
  return Number(r.stdout);
}

/** Stops daemons in the order given (by PID, SIGKILL after 8 s) and removes directories. */
export async function teardown(daemons: Daemon[], dirs: string[] = []): Promise<void> {
  for (const d of daemons) await d[Symbol.asyncDispose]();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
}

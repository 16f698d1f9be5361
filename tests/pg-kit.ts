/**
 * A throwaway PostgreSQL for tests: Debian's `postgresql` package (installed by .ci/run),
 * `initdb` in a temp directory, started on a free port on 127.0.0.1 with its socket in that
 * directory, stopped (then SIGKILLed by PID) on dispose. As root it runs as the `postgres`
 * user (PostgreSQL refuses root). Outside CI a missing PostgreSQL is a reason to skip; under
 * CI it is a failure. See ../shared/notes/postgres.md.
 */
import { afterAll, beforeAll } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

const ci = Boolean(process.env.CI);

/** The directory of initdb/pg_ctl/postgres (the newest installed major version), or null. */
export function postgresBin(): string | null {
  const base = "/usr/lib/postgresql";
  if (!fs.existsSync(base)) return null;
  const versions = fs.readdirSync(base).filter((v) => fs.existsSync(path.join(base, v, "bin", "initdb"))).sort((a, b) => Number(b) - Number(a));
  return versions.length ? path.join(base, versions[0]!, "bin") : null;
}

/** "" when the PostgreSQL tests run; otherwise why they are skipped, for the test's name. */
export const noPostgres = postgresBin() || ci ? "" : " (skipped: no PostgreSQL; apt-get install postgresql)";

export interface PostgresHandle {
  /** postgres://mq@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  dir: string;
  /** A fresh database on this cluster (`CREATE DATABASE`), its URL: one per test keeps tests apart. */
  database(name?: string): Promise<string>;
  /** Stops the cluster at once (`-m immediate`: like a crash), keeping its files. */
  kill(): Promise<void>;
  /** Starts it again on the same port after `kill`. */
  start(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

const asRoot = process.getuid?.() === 0;

async function run(argv: string[], what: string): Promise<void> {
  const cmd = asRoot ? ["runuser", "-u", "postgres", "--", ...argv] : argv;
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${what} failed (exit ${code}): ${err || out}`);
}

let databases = 0;

/** initdb + start; fsync stays on (the durability tests rely on it). */
export async function startPostgres(): Promise<PostgresHandle> {
  const bin = postgresBin();
  if (!bin) throw new Error("PostgreSQL is not installed: apt-get install postgresql (see ../shared/notes/postgres.md)");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-pg-"));
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, "data");
  fs.mkdirSync(data);
  if (asRoot) fs.chownSync(data, uidOf("postgres"), gidOf("postgres"));
  if (asRoot) fs.chownSync(dir, uidOf("postgres"), gidOf("postgres"));
  await run([path.join(bin, "initdb"), "-D", data, "-U", "mq", "--auth=trust", "-E", "UTF8", "--no-instructions"], "initdb");
  const port = await freePort();
  const logFile = path.join(dir, "postgres.log");
  const start = () =>
    run([path.join(bin, "pg_ctl"), "-D", data, "-l", logFile, "-w", "-t", "60", "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`, "start"], "pg_ctl start");
  await start();
  const url = `postgres://mq@127.0.0.1:${port}/postgres`;
  const stop = (mode: string) => run([path.join(bin, "pg_ctl"), "-D", data, "-m", mode, "-w", "-t", "30", "stop"], "pg_ctl stop");
  const postmasterPid = (): number | null => {
    try {
      return Number(fs.readFileSync(path.join(data, "postmaster.pid"), "utf8").split("\n")[0]);
    } catch {
      return null;
    }
  };
  return {
    url,
    port,
    dir,
    async database(name) {
      const db = name ?? `mq_test_${process.pid}_${++databases}`;
      const { SQL } = await import("bun");
      const sql = new SQL(url, { max: 1 });
      try {
        await sql.unsafe(`create database "${db}"`);
      } finally {
        await sql.close();
      }
      return `postgres://mq@127.0.0.1:${port}/${db}`;
    },
    kill: () => stop("immediate"),
    start,
    async [Symbol.asyncDispose]() {
      const pid = postmasterPid();
      await stop("immediate").catch(() => {});
      if (pid) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function uidOf(user: string): number {
  const line = fs.readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`no user ${user} (the postgresql package makes it)`);
  return Number(line.split(":")[2]);
}

function gidOf(user: string): number {
  const line = fs.readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith(`${user}:`));
  return Number(line!.split(":")[3]);
}

/**
 * One PostgreSQL for the tests of a file or a describe block: started before them (unless
 * `noPostgres`), removed after them; `current()` is it.
 */
export function postgresForTests(): { current(): PostgresHandle } {
  let pg: PostgresHandle | null = null;
  beforeAll(async () => {
    if (!noPostgres) pg = await startPostgres();
  }, 60_000);
  afterAll(async () => {
    await pg?.[Symbol.asyncDispose]();
  });
  return {
    current() {
      if (!pg) throw new Error("PostgreSQL was not started (see noPostgres)");
      return pg;
    },
  };
}

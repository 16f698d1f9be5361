/**
 * Daemon logs through the compiled binary (docs/logging.md): one line per event, ISO-8601
 * timestamps off a terminal, a 24-hour clock at one, colour only when stderr is a terminal
 * (or FORCE_COLOR), `--log-json`, `--log-level` / MQ_LOG_LEVEL, and start failures as one
 * clear line without a stack trace.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Daemon, mq, mqCommand, startLocal, startServer, teardown, tmpDir, type ServerHandle } from "./harness.ts";

/** Variables that change the log; the tests set them explicitly, so the caller's own are set aside. */
const LOG_ENV = ["NO_COLOR", "FORCE_COLOR", "MQ_LOG_LEVEL", "MQ_LOG_JSON", "TMUX"] as const;
const saved = new Map<string, string | undefined>();
const dir = tmpDir("mq-logs-");
let server: ServerHandle;

beforeAll(async () => {
  for (const k of LOG_ENV) {
    saved.set(k, process.env[k]);
    delete process.env[k];
  }
  server = await startServer();
});

afterAll(async () => {
  await teardown([server.daemon], [server.dataDir, dir]);
  for (const [k, v] of saved) if (v !== undefined) process.env[k] = v;
});

const ESC = "\x1b";
const ISO_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (ERROR|WARN |INFO |DEBUG|TRACE) \[\w+\] \S/;
const STACK_LINE = /^\s+at /m;

function lines(log: string): string[] {
  return log.split("\n").slice(0, -1); // every line ends with a newline
}

/** Runs a daemon with a pseudo-terminal on stdin/stdout and `shell` for stderr (e.g. `2>FILE`); returns what the terminal showed. */
async function underTerminal(args: string[], env: Record<string, string>, stderr: string, until: (screen: string) => boolean): Promise<{ code: number; screen: string }> {
  let screen = "";
  const decoder = new TextDecoder();
  const quoted = [...mqCommand(), ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const proc = Bun.spawn(["sh", "-c", `exec ${quoted} ${stderr}`], {
    env: { ...process.env, ...env },
    terminal: { cols: 200, rows: 50, data: (_t, d) => void (screen += decoder.decode(d, { stream: true })) },
  });
  try {
    // Wait for the condition (bounded), not for a time.
    const deadline = Date.now() + 15_000;
    while (!until(screen) && proc.exitCode === null && Date.now() < deadline) await Bun.sleep(20);
    expect(until(screen)).toBe(true);
  } finally {
    if (proc.exitCode === null) proc.kill("SIGTERM"); // `exec`: the pid is mq's own
  }
  const code = await proc.exited;
  proc.terminal?.close();
  return { code, screen };
}

describe("start failures", () => {
  test("mq server on a port in use exits non-zero with one line naming the address, 'in use' and --listen, no stack trace", async () => {
    const r = await mq(null, ["server", "--listen", server.address, "--data", path.join(dir, "busy")], { timeoutMs: 10_000 });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe("");
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toContain(`Cannot listen on ${server.address}: address already in use`);
    expect(r.stderr).toContain("--listen");
    expect(r.stderr).not.toMatch(STACK_LINE);
    expect(r.stderr).toMatch(ISO_LINE);
  });

  test("mq up on a port in use says the same, in one line", async () => {
    const r = await mq(null, ["up", "--listen", server.address, "--data", path.join(dir, "up-busy"), "--socket", path.join(dir, "up-busy.sock")], { timeoutMs: 10_000 });
    expect(r.code).not.toBe(0);
    // `mq up` may first say (at INFO) that it made its token file; the failure is one line.
    expect(lines(r.stderr).filter((l) => !/ INFO /.test(l))).toHaveLength(1);
    expect(r.stderr).toContain(`${server.address}: address already in use`);
    expect(r.stderr).not.toMatch(STACK_LINE);
  });

  test("mq local whose socket path runs through a file, or whose data directory is a file, says which path and flag, in one line", async () => {
    const file = path.join(dir, "a-file");
    fs.writeFileSync(file, "");
    const socket = await mq(null, ["local", "--server", server.address, "--data", path.join(dir, "l1"), "--socket", path.join(file, "local.sock")], { timeoutMs: 10_000 });
    expect(socket.code).not.toBe(0);
    expect(lines(socket.stderr)).toHaveLength(1);
    expect(socket.stderr).toContain(`Cannot listen on the socket ${path.join(file, "local.sock")}: a part of the path is not a directory (ENOTDIR); choose another --socket`);
    expect(socket.stderr).not.toMatch(STACK_LINE);

    const data = await mq(null, ["local", "--server", server.address, "--data", file, "--socket", path.join(dir, "l2.sock")], { timeoutMs: 10_000 });
    expect(data.code).not.toBe(0);
    expect(lines(data.stderr)).toHaveLength(1);
    expect(data.stderr).toContain(`Cannot create the data directory ${file}: a file (not a directory) is in the way (EEXIST); choose another --data`);
    expect(data.stderr).not.toMatch(STACK_LINE);
  });

  test("with --log-json the start failure is one JSON line with its code", async () => {
    const r = await mq(null, ["server", "--log-json", "--listen", server.address, "--data", path.join(dir, "busy-json")], { timeoutMs: 10_000 });
    expect(r.code).not.toBe(0);
    expect(lines(r.stderr)).toHaveLength(1);
    const rec = JSON.parse(r.stderr);
    expect(rec).toMatchObject({ level: "error", tag: "server", code: "EADDRINUSE" });
    expect(rec.msg).toContain(`${server.address}: address already in use`);
    expect(rec.stack).toBeUndefined();
  });
});

describe("text lines off a terminal", () => {
  test("every line of a server and a local broker starts with an ISO-8601 time, a level and a tag; no blank lines, even after a WARN", async () => {
    const local = await startLocal("127.0.0.1:1", { connected: false });
    try {
      await local.daemon.waitFor(/WARN .*cannot reach the server/);
      expect(await local.daemon.stop()).toBe(0);
      for (const log of [server.daemon.log, local.daemon.log]) {
        expect(log).not.toContain("\n\n");
        for (const line of lines(log)) expect(line).toMatch(ISO_LINE);
      }
    } finally {
      await teardown([local.daemon], [local.dataDir]);
    }
  });

  test("the local broker names the server and the cause once: 'cannot reach the server ADDR: connection refused'", async () => {
    const local = await startLocal("127.0.0.1:1", { connected: false });
    try {
      const [line] = await local.daemon.waitFor(/.*cannot reach the server.*/);
      expect(line).toContain("cannot reach the server 127.0.0.1:1: connection refused (ECONNREFUSED); retrying");
      expect(line).not.toContain("unreachable");
    } finally {
      await teardown([local.daemon], [local.dataDir]);
    }
  });

  test("the server names a connecting local broker by identity and address, once", async () => {
    const local = await startLocal(server.address);
    try {
      const identity = fs.readFileSync(path.join(local.dataDir, "identity"), "utf8").trim();
      const [line] = await server.daemon.waitFor(new RegExp(`.*local broker ${identity} connected.*`));
      expect(line).toMatch(new RegExp(`INFO  \\[server\\] local broker ${identity} connected from 127\\.0\\.0\\.1:\\d+$`));
    } finally {
      await teardown([local.daemon], [local.dataDir]);
    }
  });
});

describe("colour", () => {
  test("TERM and TMUX set, stdout a terminal, stderr a file: no escape sequence in the file", async () => {
    const file = path.join(dir, "tmux.log");
    const { code } = await underTerminal(
      ["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "tmux")],
      { TERM: "xterm-256color", TMUX: "/tmp/tmux-0/default,1,0" },
      `2>'${file}'`,
      () => fs.existsSync(file) && fs.readFileSync(file, "utf8").includes("listening on"),
    );
    expect(code).toBe(0);
    const log = fs.readFileSync(file, "utf8");
    expect(log).not.toContain(ESC);
    for (const line of lines(log)) expect(line).toMatch(ISO_LINE);
  });

  test("FORCE_COLOR=1 colours a log on a pipe", async () => {
    const srv = await startServer({ env: { FORCE_COLOR: "1" } });
    try {
      expect(srv.daemon.log).toContain(`${ESC}[`);
    } finally {
      await teardown([srv.daemon], [srv.dataDir]);
    }
  });

  test("at a terminal: coloured, a 24-hour clock at the start of the line; NO_COLOR turns the colour off", async () => {
    const listening = (screen: string) => screen.includes("listening on");
    const coloured = await underTerminal(["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "tty1")], { TERM: "xterm-256color" }, "", listening);
    expect(coloured.code).toBe(0);
    expect(coloured.screen).toContain(`${ESC}[`);
    const plain = await underTerminal(["server", "--listen", "127.0.0.1:0", "--data", path.join(dir, "tty2")], { TERM: "xterm-256color", NO_COLOR: "1" }, "", listening);
    expect(plain.code).toBe(0);
    expect(plain.screen).not.toContain(ESC);
    const first = plain.screen.split(/\r?\n/)[0]!;
    expect(first).toMatch(/^([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3} INFO  \[server\] listening on 127\.0\.0\.1:\d+ /);
  });
});

describe("--log-json", () => {
  test("every stderr line of a server and a local broker is one JSON object with time, level, tag and msg (MQ_LOG_JSON=1 too)", async () => {
    const srv = await startServer({ args: ["--log-json"] });
    const local = await startLocal(srv.address, { env: { MQ_LOG_JSON: "1" } });
    try {
      expect((await mq(local.socket, ["create"])).code).toBe(0);
      expect(await local.daemon.stop()).toBe(0);
      expect(await srv.daemon.stop()).toBe(0);
      for (const log of [srv.daemon.log, local.daemon.log]) {
        const records = lines(log).map((l) => JSON.parse(l));
        expect(records.length).toBeGreaterThanOrEqual(3);
        for (const rec of records) {
          expect(Object.keys(rec).slice(0, 4)).toEqual(["time", "level", "tag", "msg"]);
          expect(new Date(rec.time).toISOString()).toBe(rec.time);
          expect(["error", "warn", "info", "debug", "trace"]).toContain(rec.level);
          expect(typeof rec.msg).toBe("string");
        }
      }
      expect(lines(srv.daemon.log).map((l) => JSON.parse(l).msg)).toContainEqual(expect.stringMatching(/^listening on 127\.0\.0\.1:\d+ /));
      expect(lines(local.daemon.log).map((l) => JSON.parse(l).tag)).toContain("local");
    } finally {
      await teardown([local.daemon, srv.daemon], [local.dataDir, srv.dataDir]);
    }
  });
});

describe("log levels", () => {
  test("MQ_LOG_LEVEL=debug adds DEBUG lines (a connection accepted); the default level has none", async () => {
    const quiet = server;
    const loud = await startServer({ env: { MQ_LOG_LEVEL: "debug" } });
    const a = await startLocal(loud.address, { env: { MQ_LOG_LEVEL: "debug" } });
    const b = await startLocal(quiet.address);
    try {
      await loud.daemon.waitFor(/DEBUG \[server\] local broker at 127\.0\.0\.1:\d+: connection accepted/);
      // The local broker's clients too: each connection and its close, with the reason.
      expect((await mq(a.socket, ["create"])).code).toBe(0);
      await a.daemon.waitFor(/DEBUG \[local\] client 1: connected[^]*DEBUG \[local\] client 1: closed \(peer closed\)/);
      expect(quiet.daemon.log).toContain("connected from");
      expect(quiet.daemon.log).not.toContain("DEBUG");
    } finally {
      await teardown([a.daemon, b.daemon, loud.daemon], [a.dataDir, b.dataDir, loud.dataDir]);
    }
  });

  test("--log-level warn leaves out INFO lines; numbers work as in consola (MQ_LOG_LEVEL=1)", async () => {
    for (const [i, how] of [{ args: ["--log-level", "warn"], env: {} }, { args: [], env: { MQ_LOG_LEVEL: "1" } }].entries()) {
      const data = path.join(dir, `warn${i}`);
      // startLocal waits for "listening on", an INFO line: spawn it here and wait for the WARN.
      const args = ["local", "--server", "127.0.0.1:1", "--data", data, "--socket", path.join(data, "local.sock"), ...how.args];
      const proc = Bun.spawn([...mqCommand(), ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { ...process.env, ...how.env } });
      await using local = new Daemon("local", proc);
      await local.waitFor(/WARN  \[local\] cannot reach the server/);
      expect(await local.stop()).toBe(0);
      expect(local.log).not.toContain("INFO");
      expect(lines(local.log)).toHaveLength(1);
    }
  });

  test("a bad --log-level or MQ_LOG_LEVEL is a usage error (exit 2) naming the value", async () => {
    const flag = await mq(null, ["server", "--log-level", "loud", "--data", path.join(dir, "bad1")], { timeoutMs: 10_000 });
    expect(flag).toEqual({ code: 2, stdout: "", stderr: 'mq: usage: --log-level must be error, warn, info, debug, trace or a number 0-5, got "loud"\n(run `mq server --help` for help)\n' });
    const env = await mq(null, ["local", "--data", path.join(dir, "bad2")], { timeoutMs: 10_000, env: { MQ_LOG_LEVEL: "verbose" } });
    expect(env.code).toBe(2);
    expect(env.stderr).toStartWith('mq: usage: MQ_LOG_LEVEL must be error, warn, info, debug, trace or a number 0-5, got "verbose"\n');
    expect(fs.existsSync(path.join(dir, "bad1"))).toBe(false);
  });

  test("a bad MQ_LOG_JSON is a usage error (exit 2) naming every value it takes", async () => {
    const r = await mq(null, ["local", "--data", path.join(dir, "bad3"), "--socket", path.join(dir, "bad3.sock")], { timeoutMs: 10_000, env: { MQ_LOG_JSON: "yes" } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('MQ_LOG_JSON must be 1 or true (JSON lines), 0, false or empty (text), got "yes"');
  });
});

/**
 * `mq local --server A,B`: the local broker fails over between servers (issue 12,
 * docs/semantics.md "Failover between servers"). Real servers on separate stores: this tests
 * the mechanism (which server, when, what it says); what two servers of one database share
 * (ids, cursors, acks across a failover) is tested with the PostgreSQL store.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { createOn, mq, mqCommand, startLocal, startServer, teardown, tmpDir, type Daemon } from "./harness.ts";

/** `mq stats --json`'s local part. */
async function localStats(socket: string): Promise<Record<string, unknown>> {
  const r = await mq(socket, ["stats", "--json"]);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout).local;
}

/** Publishes one message to `topic` with a fresh id subscribed to it, and receives it: the server connected to serves. */
async function roundTrip(socket: string, topic: string, payload: string): Promise<void> {
  const id = await createOn(socket);
  expect((await mq(socket, ["sub", String(id), topic])).code).toBe(0);
  expect((await mq(socket, ["pub", String(id), topic, payload])).code).toBe(0);
  expect((await mq(socket, ["recv", String(id), "--wait", "10"])).stdout).toBe(`${payload}\n`);
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("--server A,B: A killed → B; B killed and A back → A", () => {
  const daemons: Daemon[] = [];
  const dirs: string[] = [];
  afterAll(() => teardown(daemons, dirs));

  test("fails over, says where it is connected, and serves on each", async () => {
    const a = await startServer();
    const b = await startServer();
    daemons.push(a.daemon, b.daemon);
    dirs.push(a.dataDir, b.dataDir);
    // Two stores hand out the same global ids, where servers of one database never would:
    // B's first ids go to another broker, so the ids this test makes on A and on B differ.
    const other = await startLocal(b.address);
    daemons.unshift(other.daemon);
    dirs.push(other.dataDir);
    for (let i = 0; i < 3; i++) await createOn(other.socket);
    const local = await startLocal(`${a.address},${b.address}`, { args: ["--http", "127.0.0.1:0"] });
    daemons.unshift(local.daemon);
    dirs.push(local.dataDir);
    const http = `http://127.0.0.1:${(await local.daemon.waitFor(/http listening on http:\/\/127\.0\.0\.1:(\d+)/))[1]}`;
    await local.daemon.waitFor(new RegExp(`listening on .*servers ${escape(a.address)},${escape(b.address)}`));
    expect(await localStats(local.socket)).toMatchObject({ server: a.address, connected: true, failovers: 0 });

    // An id made on A, subscribed there: A keeps it (file store) for when the broker comes back.
    const onA = await createOn(local.socket);
    expect((await mq(local.socket, ["sub", String(onA), "back"])).code).toBe(0);
    await roundTrip(local.socket, "first", "on-a");

    await a.daemon.kill9();
    await local.daemon.waitFor(new RegExp(`connected to the server ${escape(b.address)} \\(failed over from ${escape(a.address)}: [^)]+\\)`));
    expect(await localStats(local.socket)).toMatchObject({ server: b.address, connected: true, failovers: 1, reconnects: 1 });
    const api = await (await fetch(`${http}/api/local`)).json();
    expect(api).toMatchObject({ server: "connected", serverAddress: b.address, local: { server: b.address, failovers: 1 } });
    await roundTrip(local.socket, "second", "on-b");

    await b.daemon.kill9();
    const a2 = await startServer({ dataDir: a.dataDir, port: a.port });
    daemons.push(a2.daemon);
    await local.daemon.waitFor(new RegExp(`connected to the server ${escape(a.address)} \\(failed over from ${escape(b.address)}: [^)]+\\)`));
    expect(await localStats(local.socket)).toMatchObject({ server: a.address, connected: true, failovers: 2, reconnects: 2 });
    // Back on A: the id made there still works, with its subscription.
    expect((await mq(local.socket, ["pub", String(onA), "back", "again-on-a"])).code).toBe(0);
    expect((await mq(local.socket, ["recv", String(onA), "--wait", "10"])).stdout).toBe("again-on-a\n");
    await roundTrip(local.socket, "third", "new-on-a");
  });
});

describe("--server A,B where A freezes (SIGSTOP)", () => {
  const daemons: Daemon[] = [];
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of daemons) if (d.proc.exitCode === null) d.proc.kill("SIGCONT");
    await teardown(daemons, dirs);
  });

  test("the heartbeat notices the silence and the broker fails over to B", async () => {
    const a = await startServer();
    const b = await startServer();
    daemons.push(a.daemon, b.daemon);
    dirs.push(a.dataDir, b.dataDir);
    const local = await startLocal(`${a.address},${b.address}`, { args: ["--heartbeat-ms", "200", "--heartbeat-missed", "2"] });
    daemons.unshift(local.daemon);
    dirs.push(local.dataDir);
    expect(await localStats(local.socket)).toMatchObject({ server: a.address, failovers: 0 });
    a.daemon.proc.kill("SIGSTOP");
    await local.daemon.waitFor(new RegExp(`connected to the server ${escape(b.address)} \\(failed over from ${escape(a.address)}: [^)]+\\)`));
    expect(await localStats(local.socket)).toMatchObject({ server: b.address, connected: true, failovers: 1 });
    await roundTrip(local.socket, "t", "on-b");
  });
});

describe("--server R,B where R refuses the hello (wrong token)", () => {
  const daemons: Daemon[] = [];
  const dirs: string[] = [];
  afterAll(() => teardown(daemons, dirs));

  test("R is skipped with one logged refusal, B serves; R is not asked in a loop while B is away", async () => {
    const dir = tmpDir("mq-failover-tokens-");
    dirs.push(dir);
    const token = (name: string, value: string) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, value, { mode: 0o600 });
      return file;
    };
    const r = await startServer({ args: ["--token-file", token("r.token", "not-the-broker's")] });
    const b = await startServer({ args: ["--token-file", token("b.token", "the-broker's")] });
    daemons.push(r.daemon, b.daemon);
    dirs.push(r.dataDir, b.dataDir);
    const local = await startLocal(`${r.address},${b.address}`, { args: ["--token-file", path.join(dir, "b.token")] });
    daemons.unshift(local.daemon);
    dirs.push(local.dataDir);
    expect(local.daemon.log).toMatch(new RegExp(`cannot reach the server ${escape(r.address)}: refused: AUTH_FAILED: .*trying the other servers`));
    expect(local.daemon.log).toMatch(new RegExp(`connected to the server ${escape(b.address)}`));
    expect(await localStats(local.socket)).toMatchObject({ server: b.address, connected: true, failovers: 0 });
    await roundTrip(local.socket, "t", "on-b");

    // B away: the broker alternates between R (refused, waiting longer each time) and B.
    await b.daemon.kill9();
    await local.daemon.waitFor(/lost the server .*reconnecting/);
    // R's refusal is not the answer while B is only unreachable: UNAVAILABLE, to retry.
    const away = await mq(local.socket, ["create"]);
    expect({ code: away.code, stderr: away.stderr }).toMatchObject({ code: 4, stderr: expect.stringContaining(`UNAVAILABLE: servers ${r.address},${b.address} unreachable`) });
    await Bun.sleep(1500);
    const b2 = await startServer({ dataDir: b.dataDir, port: b.port, args: ["--token-file", path.join(dir, "b.token")] });
    daemons.push(b2.daemon);
    // Connected to B a second time: the same server as before the loss, so not a failover.
    await local.daemon.waitFor(new RegExp(`connected to the server ${escape(b.address)}[^]*connected to the server ${escape(b.address)}`), 20_000);
    expect(await localStats(local.socket)).toMatchObject({ server: b.address, connected: true, failovers: 0, reconnects: 1 });
    // The refusal was logged once; R saw a handful of hellos, not a loop's worth.
    expect(local.daemon.log.match(/refused: AUTH_FAILED/g)?.length).toBe(1);
    const refusedAtR = r.daemon.log.match(/refused: (wrong token|no token)/g)?.length ?? 0;
    expect(refusedAtR).toBeGreaterThanOrEqual(1);
    expect(refusedAtR).toBeLessThanOrEqual(6);
    await roundTrip(local.socket, "t2", "on-b-again");
  });
});

describe("--server A,B where both refuse the hello", () => {
  const daemons: Daemon[] = [];
  const dirs: string[] = [];
  afterAll(() => teardown(daemons, dirs));

  test("clients are told the refusal (AUTH_FAILED), not a bare UNAVAILABLE", async () => {
    const dir = tmpDir("mq-failover-refused-");
    dirs.push(dir);
    fs.writeFileSync(path.join(dir, "server.token"), "the-servers'", { mode: 0o600 });
    fs.writeFileSync(path.join(dir, "broker.token"), "not-the-servers'", { mode: 0o600 });
    const servers = [];
    for (let i = 0; i < 2; i++) {
      const s = await startServer({ args: ["--token-file", path.join(dir, "server.token")] });
      daemons.push(s.daemon);
      dirs.push(s.dataDir);
      servers.push(s);
    }
    const local = await startLocal(servers.map((s) => s.address).join(","), { args: ["--token-file", path.join(dir, "broker.token")], connected: false });
    daemons.unshift(local.daemon);
    dirs.push(local.dataDir);
    for (const s of servers) await local.daemon.waitFor(new RegExp(`cannot reach the server ${escape(s.address)}: refused: AUTH_FAILED`));
    const r = await mq(local.socket, ["create"]);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 4, stderr: expect.stringContaining("AUTH_FAILED") });
  });
});

describe("--server with a bad entry", () => {
  const dir = tmpDir("mq-failover-usage-");
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Runs `mq local` with `args` (and `env`); it must exit at once. */
  async function local(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
    const proc = Bun.spawn([...mqCommand(), "local", "--data", path.join(dir, "data"), "--socket", path.join(dir, "l.sock"), ...args], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
      env: { ...process.env, ...env },
    });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    return { code, stderr };
  }

  test("exit 2 naming the entry: not an address, empty, port 0, given twice; from MQ_SERVER too", async () => {
    const bad = await local(["--server", "127.0.0.1:7600,nonsense"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`--server: Cannot parse address "nonsense"`);
    const empty = await local(["--server", "127.0.0.1:7600,,127.0.0.1:7601"]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("entry 2 is empty");
    const zero = await local(["--server", "127.0.0.1:0"]);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain(`"127.0.0.1:0": port 0`);
    const twice = await local(["--server", "127.0.0.1:7600,127.0.0.1:7601,127.0.0.1:7600"]);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain(`names "127.0.0.1:7600" twice`);
    const env = await local([], { MQ_SERVER: "127.0.0.1:7600,127.0.0.1:x" });
    expect(env.code).toBe(2);
    expect(env.stderr).toContain(`MQ_SERVER: Cannot parse address "127.0.0.1:x"`);
    // Nothing was started: no socket left behind.
    expect(fs.existsSync(path.join(dir, "l.sock"))).toBe(false);
  });
});

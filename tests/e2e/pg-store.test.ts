/**
 * `mq server --store postgres://…` (lib/store/backend.ts, lib/store/pg/): the server keeps its
 * topics, messages, ids and cursors in a real PostgreSQL (tests/pg-kit.ts), so a restarted
 * server finds them all; MQ_STORE works like the flag; an unreachable database fails the
 * start (exit 4, UNAVAILABLE) naming HOST:PORT/DB and never the password; a value that is no
 * store at all is bad usage (exit 2). Skipped (the reason in the names) without PostgreSQL.
 */
import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { noPostgres, postgresForTests } from "../pg-kit.ts";
import { createOn, jsonLines, memoryStore, mq, startLocal, startServer, teardown } from "./harness.ts";

const pgTest = test.skipIf(noPostgres !== "");
const postgres = postgresForTests();

/** A fresh database's URL with a password in it (the test cluster trusts, so any password does): it must never be printed. */
async function databaseWithPassword(): Promise<{ url: string; location: string }> {
  const plain = new URL(await postgres.current().database());
  plain.password = "hunter2secret";
  return { url: plain.toString(), location: `127.0.0.1:${plain.port}${plain.pathname}` };
}

describe(`mq server --store postgres://${noPostgres}`, () => {
  pgTest("create, sub, pub and recv through a server on PostgreSQL and a local broker; the server names the database without the password and writes nothing under --data", async () => {
    const { url, location } = await databaseWithPassword();
    const server = await startServer({ args: ["--store", url] });
    const local = await startLocal(server.address);
    try {
      expect(server.daemon.log).toContain(`store postgres ${location}, fsync always`);
      const id = await createOn(local.socket);
      expect((await mq(local.socket, ["sub", String(id), "pg.orders"])).code).toBe(0);
      const sent = Array.from({ length: 200 }, (_, i) => `order ${i}`);
      expect((await mq(local.socket, ["pub", String(id), "pg.orders", "--lines"], { stdin: `${sent.join("\n")}\n` })).code).toBe(0);
      // --wait: the push from the server may come after the publish's answer (it reads PostgreSQL).
      const got = jsonLines((await mq(local.socket, ["recv", String(id), "--count", "200", "--wait", "10", "--json"])).stdout);
      expect(got.map((m) => [m.seq, m.data])).toEqual(sent.map((data, i) => [i + 1, data]));
      expect(fs.readdirSync(server.dataDir)).toEqual([]);
      expect(server.daemon.log).not.toContain("hunter2secret");
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  });

  pgTest("a restarted server finds the ids, topics, cursors and messages in PostgreSQL: delivery goes on after the last acknowledged message", async () => {
    const { url } = await databaseWithPassword();
    let server = await startServer({ args: ["--store", url, "--default-topics", "general"] });
    const local = await startLocal(server.address);
    try {
      const id = await createOn(local.socket);
      expect((await mq(local.socket, ["sub", String(id), "kept"])).code).toBe(0);
      expect((await mq(local.socket, ["pub", String(id), "kept", "--lines"], { stdin: "m1\nm2\nm3\nm4\nm5\n" })).code).toBe(0);
      expect((await mq(local.socket, ["recv", String(id), "--count", "2", "--wait", "10"])).stdout).toBe("m1\nm2\n");

      expect(await server.daemon.stop()).toBe(0);
      // The stop line names the store (not --data), without the URL's password.
      expect(server.daemon.log).toMatch(/stopped \(127\.0\.0\.1:\d+, store postgres 127\.0\.0\.1:\d+\/\w+\)/);
      expect(server.daemon.log).not.toContain("hunter2secret");
      // Another --data: nothing of the server's state is kept on its disk.
      fs.rmSync(server.dataDir, { recursive: true, force: true });
      server = await startServer({ port: server.port, args: ["--store", url, "--default-topics", "general"] });
      await local.daemon.waitFor(/connected to the server[\s\S]*connected to the server/);
      expect(server.daemon.log).toMatch(/2 topics.*1 id\)/);

      const topics = jsonLines((await mq(local.socket, ["topics", "--json"])).stdout);
      expect(topics.map((t) => t.topic).sort()).toEqual(["general", "kept"]);
      const rest = jsonLines((await mq(local.socket, ["recv", String(id), "--count", "3", "--wait", "10", "--json"])).stdout);
      expect(rest.map((m) => [m.seq, m.data])).toEqual([
        [3, "m3"],
        [4, "m4"],
        [5, "m5"],
      ]);
      // The id is the same one: it publishes, and seqs go on.
      expect((await mq(local.socket, ["pub", String(id), "kept", "m6", "--json"])).stdout).toContain('"seq":6');
      expect((await mq(local.socket, ["recv", String(id), "--count", "1", "--wait", "10"])).stdout).toBe("m6\n");
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  }, 60_000);

  test.skipIf(noPostgres !== "" || memoryStore)("MQ_STORE=postgres://… is the store when --store is not given; the flag wins over it", async () => {
    const { url, location } = await databaseWithPassword();
    const server = await startServer({ env: { MQ_STORE: url } });
    const flagWins = await startServer({ env: { MQ_STORE: url }, args: ["--store", "memory"] });
    try {
      expect(server.daemon.log).toContain(`store postgres ${location}`);
      expect(flagWins.daemon.log).toContain("store memory");
    } finally {
      await teardown([server.daemon, flagWins.daemon], [server.dataDir, flagWins.dataDir]);
    }
  });
});

describe("mq server --store: values that fail", () => {
  test("an unreachable PostgreSQL fails the start with exit 4 (UNAVAILABLE), naming HOST:PORT/DB and not the password", async () => {
    for (const url of ["postgres://mq:hunter2secret@nohost.invalid:1/x", "postgresql://mq:hunter2secret@127.0.0.1:1/x"]) {
      const r = await mq(null, ["server", "--store", url, "--listen", "127.0.0.1:0"], { timeoutMs: 60_000 });
      const where = url.includes("nohost") ? "nohost.invalid:1/x" : "127.0.0.1:1/x";
      expect({ url, code: r.code, names: r.stderr.includes(`Cannot reach the PostgreSQL store postgres ${where}`), leaks: r.stderr.includes("hunter2secret") }).toEqual({ url, code: 4, names: true, leaks: false });
    }
  }, 90_000);

  test("a --store (or MQ_STORE) that is none of file, memory, postgres://… is bad usage (exit 2) naming the value and the three forms, and never a password", async () => {
    const bogus = await mq(null, ["server", "--store", "bogus", "--listen", "127.0.0.1:0"]);
    expect([bogus.code, bogus.stderr]).toEqual([2, expect.stringContaining('--store must be file, memory or postgres://USER@HOST:PORT/DB (or postgresql://…), got "bogus"')]);
    const typo = await mq(null, ["server", "--store", "postgress://mq:hunter2secret@db/x", "--listen", "127.0.0.1:0"]);
    expect([typo.code, typo.stderr.includes('got "postgress://mq:***@db/x"'), typo.stderr.includes("hunter2secret")]).toEqual([2, true, false]);
    const env = await mq(null, ["server", "--listen", "127.0.0.1:0"], { env: { MQ_STORE: "disk" } });
    expect([env.code, env.stderr.includes('got "disk"')]).toEqual([2, true]);
    const noHost = await mq(null, ["up", "--store", "postgres://", "--listen", "127.0.0.1:0"]);
    expect(noHost.code).toBe(2);
  });
});

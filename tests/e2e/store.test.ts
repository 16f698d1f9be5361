/**
 * `mq server --store file|memory` (lib/store/backend.ts): the memory store serves like the
 * file store, writes nothing to --data and keeps nothing across a restart, where no id of
 * the run before is handed out again. A bad value is bad usage.
 */
import * as fs from "node:fs";
import { describe, expect, test } from "bun:test";
import { createOn, jsonLines, mq, startLocal, startServer, teardown } from "./harness.ts";

describe("mq server --store", () => {
  test("a bad --store value is bad usage (exit 2) naming the value and the allowed ones, for mq server and mq up", async () => {
    for (const command of ["server", "up"]) {
      const r = await mq(null, [command, "--store", "disk", "--listen", "127.0.0.1:0"]);
      expect({ command, code: r.code }).toEqual({ command, code: 2 });
      expect(r.stderr).toContain('--store must be file, memory or postgres://USER@HOST:PORT/DB (or postgresql://…), got "disk"');
    }
    const missing = await mq(null, ["server", "--store"]);
    expect(missing.code).toBe(2);
  });

  test("--store memory serves pub, sub and recv, writes nothing to --data, and takes no lock on it", async () => {
    const server = await startServer({ args: ["--store", "memory"] });
    const local = await startLocal(server.address);
    // A second memory server on the same --data is not refused: there is nothing to share.
    const second = await startServer({ dataDir: server.dataDir, args: ["--store", "memory"] });
    try {
      expect(server.daemon.log).toContain("store memory: nothing is kept across a restart");
      const id = await createOn(local.socket);
      expect((await mq(local.socket, ["sub", String(id), "kept.nowhere"])).code).toBe(0);
      const sent = Array.from({ length: 300 }, (_, i) => `m${i}`);
      expect((await mq(local.socket, ["pub", String(id), "kept.nowhere", "--lines"], { stdin: `${sent.join("\n")}\n` })).code).toBe(0);
      const got = jsonLines((await mq(local.socket, ["recv", String(id), "--count", "300", "--json"])).stdout);
      expect(got.map((m) => [m.seq, m.data])).toEqual(sent.map((data, i) => [i + 1, data]));
      expect(fs.readdirSync(server.dataDir)).toEqual([]);
    } finally {
      await teardown([local.daemon, second.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  });

  test("--store memory forgets topics, messages and ids at a restart, and hands out none of the old ids again", async () => {
    let server = await startServer({ args: ["--store", "memory", "--default-topics", "general"] });
    const local = await startLocal(server.address);
    try {
      const old = await createOn(local.socket);
      expect((await mq(local.socket, ["sub", String(old), "before"])).code).toBe(0);
      expect((await mq(local.socket, ["pub", String(old), "before", "lost at the restart"])).code).toBe(0);

      expect(await server.daemon.stop()).toBe(0);
      server = await startServer({ dataDir: server.dataDir, port: server.port, args: ["--store", "memory", "--default-topics", "general"] });
      await local.daemon.waitFor(/connected to the server[\s\S]*connected to the server/);

      const topics = jsonLines((await mq(local.socket, ["topics", "--json"])).stdout);
      expect(topics.map((t) => t.topic)).toEqual(["general"]);
      // A new id of the same local broker is not the old one under another name.
      const fresh = await createOn(local.socket);
      expect(fresh).not.toBe(old);
      const r = await mq(local.socket, ["pub", String(old), "after", "x"]);
      expect({ code: r.code, unknown: r.stderr.includes("UNKNOWN_ID") }).toEqual({ code: 1, unknown: true });
      expect((await mq(local.socket, ["sub", String(fresh), "after"])).code).toBe(0);
      expect((await mq(local.socket, ["pub", String(fresh), "after", "y"])).code).toBe(0);
      expect((await mq(local.socket, ["recv", String(fresh), "--count", "1"])).stdout).toBe("y\n");
      expect((await mq(local.socket, ["recv", String(old), "--wait", "0"])).code).toBe(1);
    } finally {
      await teardown([local.daemon, server.daemon], [local.dataDir, server.dataDir]);
    }
  });
});

/**
 * Several `mq server`s on one PostgreSQL database (docs/scale-out.md), each with local
 * brokers, from the compiled binary: the fixture of tests/cluster and tests/faults/cluster.
 * PostgreSQL comes from tests/pg-kit.ts (one per file, a fresh database per fixture).
 */
import * as fs from "node:fs";
import { startLocal, startServer, teardown, type Daemon, type LocalHandle, type ServerHandle } from "../e2e/harness.ts";
import type { PostgresHandle } from "../pg-kit.ts";

export interface SharedServers {
  url: string;
  servers: ServerHandle[];
  /** A local broker on `servers` (addresses tried in the order given: `--server A,B`). */
  local(...on: ServerHandle[]): Promise<LocalHandle>;
  /** Starts server `i` again on its port after a kill. */
  restart(i: number): Promise<ServerHandle>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** `count` servers on a fresh database of `pg`, with `args` each; everything stopped (by PID) when disposed. */
export async function sharedServers(pg: PostgresHandle, count = 2, args: string[] = []): Promise<SharedServers> {
  const url = await pg.database();
  const servers: ServerHandle[] = [];
  const locals: Daemon[] = [];
  const dirs: string[] = [];
  const start = async (port = 0) => {
    const s = await startServer({ port, args: ["--store", url, ...args] });
    dirs.push(s.dataDir);
    return s;
  };
  for (let i = 0; i < count; i++) servers.push(await start());
  return {
    url,
    servers,
    async local(...on) {
      const l = await startLocal(on.map((s) => s.address).join(","));
      locals.push(l.daemon);
      dirs.push(l.dataDir);
      return l;
    },
    async restart(i) {
      const old = servers[i]!;
      servers[i] = await start(old.port);
      return servers[i]!;
    },
    async [Symbol.asyncDispose]() {
      await teardown([...locals, ...servers.map((s) => s.daemon)]);
      for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    },
  };
}

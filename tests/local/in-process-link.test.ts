/**
 * A server and a local broker of one process joined in memory, as `mq up` joins them
 * (lib/wire/memory-link.ts): when the server drops the connection, the local broker
 * reconnects through a new in-memory pair, and ids, subscriptions and messages carry on.
 */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { connect } from "../../lib/client/index.ts";
import { LocalBroker } from "../../lib/local/local.ts";
import { configureLog } from "../../lib/log.ts";
import { MqServer } from "../../lib/server/server.ts";
import { CloseReason, type Connection } from "../../lib/wire/connection.ts";
import { joinInMemory } from "../../lib/wire/memory-link.ts";

afterAll(() => configureLog());

test("the server drops the in-memory connection: the local broker reconnects in memory; nothing is lost, order holds", async () => {
  configureLog({ level: "error" });
  const serverDir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-inproc-server-"));
  const localDir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-inproc-local-"));
  const socketPath = path.join(localDir, "s.sock");
  const server = await MqServer.start({ hostname: "127.0.0.1", port: 0, dataDir: serverDir, defaultTopics: [], fsync: "always", fsyncIntervalMs: 50, maxMessageBytes: 1 << 20 });
  const serverSides: Connection[] = [];
  const local = await LocalBroker.start({
    socketPath,
    server: { hostname: "127.0.0.1", port: server.port },
    dataDir: localDir,
    inProcess: (attach) => joinInMemory((socket) => {
      const conn = server.acceptInProcess(socket, "in-process");
      serverSides.push(conn);
      return conn;
    }, attach),
  });
  const client = await connect({ socket: socketPath });
  try {
    const id = await client.create();
    await client.subscribe(id, ["t"]);
    for (let i = 1; i <= 3; i++) await client.publish(id, "t", `m${i}`);
    // Pushed to the local broker before the drop; received only after it.
    expect((await client.stats()).server?.connections).toBe(1);

    serverSides[0]!.close(CloseReason.Shutdown);
    for (let i = 0; i < 200 && !(serverSides.length === 2 && local.connected); i++) await Bun.sleep(20);
    expect(serverSides).toHaveLength(2);
    expect(serverSides[0]!.closed).toBe(true);
    expect(local.connected).toBe(true);

    for (let i = 4; i <= 5; i++) await client.publish(id, "t", `m${i}`);
    const seen = new Map<number, string>();
    for (let i = 0; i < 50 && seen.size < 5; i++) {
      const got = await client.recv(id, { max: 10, waitMs: 200 });
      for (const m of got.messages) if (!seen.has(m.seq)) seen.set(m.seq, m.text());
      await got.ack();
    }
    // At least once across the drop: duplicates may come, loss and reordering may not.
    expect([...seen]).toEqual([1, 2, 3, 4, 5].map((n) => [n, `m${n}`]));
    expect((await client.stats()).server?.connections).toBe(1);
  } finally {
    client.close();
    await local.stop();
    await server.stop();
    fs.rmSync(serverDir, { recursive: true, force: true });
    fs.rmSync(localDir, { recursive: true, force: true });
  }
});

/**
 * A local broker against a server from before the buffer budgets: that server refuses the
 * hello's unknown `bufferBytes` fields with a non-fatal BAD_REQUEST, and the local broker
 * says hello again without them.
 */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Code, MqError } from "../../lib/errors.ts";
import { LocalBroker } from "../../lib/local/local.ts";
import { configureLog } from "../../lib/log.ts";
import { Connection } from "../../lib/wire/connection.ts";
import { PROTOCOL_VERSION, type HelloRequest } from "../../lib/wire/messages.ts";

afterAll(() => configureLog());

test("LocalBroker connects to a server that refuses the budget fields, by saying hello without them", async () => {
  configureLog({ level: "error" }); // its warning (and start/stop lines) would only be noise here
  const hellos: HelloRequest[] = [];
  const connected = Promise.withResolvers<void>();
  const server = Bun.listen<Connection>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: (s) => {
        s.data = new Connection(
          s,
          {
            frame: (conn, frame) => {
              if (frame.op !== "hello") return {};
              hellos.push(frame);
              // What the schema check of an older server answered: unknown field, not fatal.
              if (frame.bufferBytes !== undefined) throw new MqError(Code.BadRequest, 'hello: unknown field "bufferBytes"');
              conn.helloDone = true;
              connected.resolve();
              return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, maxInFlight: 1024 };
            },
          },
          { maxFrameBytes: 1 << 20, label: "older server" },
        );
      },
      data: (s, d) => s.data.onData(d),
      drain: (s) => s.data.onDrain(),
      close: (s) => s.data.onClose(),
    },
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-older-"));
  const local = await LocalBroker.start({ socketPath: path.join(dir, "s.sock"), server: { hostname: "127.0.0.1", port: server.port }, dataDir: dir });
  try {
    await connected.promise;
    for (let i = 0; i < 100 && !local.connected; i++) await Bun.sleep(10);
    expect(local.connected).toBe(true);
    expect(hellos.map((h) => [h.bufferBytes, h.bufferBytesPerId])).toEqual([
      [64 * 1024 * 1024, 16 * 1024 * 1024],
      [undefined, undefined],
    ]);
  } finally {
    await local.stop();
    server.stop(true);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

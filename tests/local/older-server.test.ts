/**
 * A local broker against a server from before the buffer budgets: that server refuses the
 * hello's unknown `bufferBytes` fields with a non-fatal BAD_REQUEST, and the local broker
 * says hello again without them.
 */
import { afterAll, expect, test } from "bun:test";
import { Code, MqError } from "../../lib/errors.ts";
import { configureLog } from "../../lib/log.ts";
import { PROTOCOL_VERSION, type HelloRequest } from "../../lib/wire/messages.ts";
import { localAgainst } from "./scripted-server.ts";

afterAll(() => configureLog());

test("LocalBroker connects to a server that refuses the budget fields, by saying hello without them", async () => {
  configureLog({ level: "error" }); // its warning (and start/stop lines) would only be noise here
  const hellos: HelloRequest[] = [];
  const older = await localAgainst("older server", (frame) => {
    if (frame.op !== "hello") return {};
    hellos.push(frame);
    // What the schema check of an older server answered: unknown field, not fatal.
    if (frame.bufferBytes !== undefined) throw new MqError(Code.BadRequest, 'hello: unknown field "bufferBytes"');
    return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, maxInFlight: 1024 };
  });
  try {
    expect(older.local.connected).toBe(true);
    expect(hellos.map((h) => [h.bufferBytes, h.bufferBytesPerId])).toEqual([
      [64 * 1024 * 1024, 16 * 1024 * 1024],
      [undefined, undefined],
    ]);
  } finally {
    await older.stop();
  }
});

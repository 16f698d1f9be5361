/**
 * A push from the server that the local broker cannot take (here: a dead letter with more
 * headers than the codec allows) is not dropped, which would lose its messages once a later
 * ack moves past them: the local broker closes the connection, so that the server gives back
 * what it sent, and reconnects.
 */
import { afterAll, expect, test } from "bun:test";
import { configureLog } from "../../lib/log.ts";
import { MAX_HEADERS } from "../../lib/wire/headers.ts";
import { PROTOCOL_VERSION } from "../../lib/wire/messages.ts";
import { localAgainst } from "./scripted-server.ts";

afterAll(() => configureLog());

test("a push that does not validate closes the server connection (logged), and the local broker reconnects", async () => {
  configureLog({ level: 0 }); // the ERROR line is expected here
  let hellos = 0;
  const server = await localAgainst("scripted server", (frame) => {
    if (frame.op !== "hello") return {};
    hellos++;
    return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, maxInFlight: 1024 };
  });
  try {
    expect(hellos).toBe(1);
    const tooMany: Record<string, string> = {};
    for (let i = 0; i <= MAX_HEADERS; i++) tooMany[`k${i}`] = "v";
    const first = server.connections[0]!;
    first.send({ op: "msgs", id: 1, topic: "t", seq: 1, times: [0], payloads: [new Uint8Array([1])], more: false, explicit: true, headers: [tooMany] });
    for (let i = 0; i < 100 && hellos < 2; i++) await Bun.sleep(50);
    expect(first.closed).toBe(true);
    expect(hellos).toBe(2);
  } finally {
    await server.stop();
  }
});

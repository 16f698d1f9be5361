/**
 * The handlers of each hop against the table of operations, and the capabilities announced
 * in the hello: a local broker whose server announces fewer ops refuses the others itself,
 * with UNKNOWN_OP naming the server, instead of forwarding them.
 */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Code, MqError } from "../../lib/errors.ts";
import { LocalBroker } from "../../lib/local/local.ts";
import { configureLog } from "../../lib/log.ts";
import { MqServer } from "../../lib/server/server.ts";
import { PROTOCOL_VERSION, type Frame } from "../../lib/wire/messages.ts";
import { capabilities, DRAIN_CAP, MSGS_IDS_CAP, opNames, ops } from "../../lib/wire/ops.ts";
import { RawPeer } from "../security/kit.ts";
import { localAgainst } from "./scripted-server.ts";

afterAll(() => configureLog());

function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

test("every op the table says a hop serves has a handler there, and no other op does", async () => {
  configureLog({ level: "error" });
  const serverDir = tmp("mq-caps-server-");
  const localDir = tmp("mq-caps-local-");
  const server = await MqServer.start({ hostname: "127.0.0.1", port: 0, dataDir: serverDir, defaultTopics: [], fsync: "never", fsyncIntervalMs: 50, maxMessageBytes: 1 << 20 });
  const local = await LocalBroker.start({ socketPath: path.join(localDir, "s.sock"), server: { hostname: "127.0.0.1", port: server.port }, dataDir: localDir });
  try {
    const served = (hop: "client" | "server") => opNames.filter((op) => op !== "hello" && ops[op][hop]).sort();
    expect(Object.keys(server.handlers).sort()).toEqual(served("server"));
    expect(Object.keys(local.clientHandlers).sort()).toEqual(served("client"));
    // Both announce them in their hello replies.
    const peer = await RawPeer.connect({ unix: path.join(localDir, "s.sock") });
    expect(await peer.request({ op: "hello", rid: 1, version: PROTOCOL_VERSION })).toEqual({ op: "ok", rid: 1, version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, maxInFlight: 1024, caps: capabilities("client") });
    peer.end();
  } finally {
    await local.stop();
    await server.stop();
    fs.rmSync(serverDir, { recursive: true, force: true });
    fs.rmSync(localDir, { recursive: true, force: true });
  }
});

test("a local broker refuses with UNKNOWN_OP the ops its server does not announce, and forwards the others", async () => {
  configureLog({ level: "error" });
  const seen: Frame[] = [];
  // A server that serves only create and topics, and says so.
  const smaller = await localAgainst("smaller server", (frame) => {
    seen.push(frame);
    if (frame.op === "hello") return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, maxInFlight: 1024, caps: ["create", "topics"] };
    if (frame.op === "create") return { id: 1000 };
    if (frame.op === "topics") return { topics: [] };
    throw new Error(`forwarded ${frame.op}`);
  });
  try {
    const hello = seen[0] as Frame & { caps?: string[] };
    expect(hello.caps).toEqual([...capabilities("client"), MSGS_IDS_CAP, DRAIN_CAP]);
    const peer = await RawPeer.connect({ unix: smaller.socket });
    await peer.request({ op: "hello", rid: 1, version: PROTOCOL_VERSION });
    expect(await peer.request({ op: "create", rid: 2 })).toEqual({ op: "ok", rid: 2, id: 1 });
    expect(await peer.request({ op: "topics", rid: 3 })).toEqual({ op: "ok", rid: 3, topics: [] });
    expect(await peer.request({ op: "sub", rid: 4, id: 1, topics: ["t"] })).toEqual({
      op: "error",
      rid: 4,
      code: "UNKNOWN_OP",
      message: `the server at 127.0.0.1:${smaller.port} does not support op "sub"; upgrade it`,
      unsent: true, // refused here, never forwarded
    });
    expect(await peer.request({ op: "pub", rid: 5, id: 1, topic: "t", data: new Uint8Array([1]) })).toMatchObject({ op: "error", rid: 5, code: "UNKNOWN_OP" });
    expect(seen.map((f) => f.op)).toEqual(["hello", "create", "topics"]);
    peer.end();
  } finally {
    await smaller.stop();
  }
});

test("a local broker says hello again without caps to a server that refuses the field, keeping its budgets, and forwards everything", async () => {
  configureLog({ level: "error" });
  const hellos: Array<Frame & { caps?: string[]; bufferBytes?: number }> = [];
  // What a server from before the table of operations answers: unknown field, not fatal; no caps in its reply.
  const older = await localAgainst("server without caps", (frame) => {
    if (frame.op === "topics") return { topics: ["x"] };
    if (frame.op !== "hello") return {};
    hellos.push(frame);
    if (frame.caps !== undefined) throw new MqError(Code.BadRequest, 'hello: unexpected field "caps"');
    return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, maxInFlight: 1024 };
  });
  try {
    expect(hellos.map((h) => [h.caps, h.bufferBytes])).toEqual([
      [[...capabilities("client"), MSGS_IDS_CAP, DRAIN_CAP], 64 * 1024 * 1024],
      [undefined, 64 * 1024 * 1024],
    ]);
    const peer = await RawPeer.connect({ unix: older.socket });
    await peer.request({ op: "hello", rid: 1, version: PROTOCOL_VERSION });
    expect(await peer.request({ op: "topics", rid: 2 })).toEqual({ op: "ok", rid: 2, topics: ["x"] });
    peer.end();
  } finally {
    await older.stop();
  }
});

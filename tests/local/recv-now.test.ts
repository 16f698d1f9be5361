/**
 * A recv that finds messages buffered is answered in the same turn (not after a promise), so
 * its reply goes out in one write with the connection's other answers of the turn — the ack a
 * recv loop sends just before it; a recv that finds nothing still waits.
 */
import { afterAll, expect, test } from "bun:test";
import type { LocalBroker } from "../../lib/local/local.ts";
import { configureLog } from "../../lib/log.ts";
import { PROTOCOL_VERSION, type Frame, type Message, type MsgsFrame } from "../../lib/wire/messages.ts";
import { RawPeer } from "../security/kit.ts";
import { localAgainst } from "./scripted-server.ts";

afterAll(() => configureLog());

const push = (id: number, seq: number, n: number): MsgsFrame => ({
  op: "msgs",
  id,
  topic: "t",
  seq,
  times: Array.from({ length: n }, () => 1),
  payloads: Array.from({ length: n }, (_, k) => new Uint8Array([seq + k])),
  more: false,
});

/** The broker's recv, called as its client handler does (test access to a private method). */
type Recv = (conn: object, local: number, max: number, wait: number) => unknown;
const recvOf = (local: LocalBroker) => (local as unknown as { recv: Recv }).recv.bind(local);

test("recv answers at once from what is buffered; with nothing buffered it waits for the next push", async () => {
  configureLog({ level: "error" });
  let nextId = 1001;
  const server = await localAgainst("scripted server", (frame: Frame) => {
    if (frame.op === "hello") return { version: PROTOCOL_VERSION, maxMessageBytes: 1 << 20, maxInFlight: 1024 };
    if (frame.op === "create") return { id: nextId++ };
    return {};
  });
  const peer = await RawPeer.connect({ unix: server.socket });
  try {
    await peer.request({ op: "hello", rid: 1, version: PROTOCOL_VERSION });
    await peer.request({ op: "create", rid: 2 });
    const conn = { state: { nextTag: 1, delivered: new Map(), waiters: new Set() }, closed: false };
    const recv = recvOf(server.local);
    server.connections[0]!.send(push(1001, 1, 3));
    for (let i = 0; i < 100 && server.local.counters.received < 3; i++) await Bun.sleep(10);
    const now = recv(conn, 1, 10, 30_000);
    expect(now).not.toBeInstanceOf(Promise);
    expect((now as { messages: Message[] }).messages.map((m) => m.seq)).toEqual([1, 2, 3]);
    // Nothing buffered: a promise, answered by the next push.
    const later = recv(conn, 1, 10, 30_000);
    expect(later).toBeInstanceOf(Promise);
    server.connections[0]!.send(push(1001, 4, 1));
    expect(((await later) as { messages: Message[] }).messages.map((m) => m.seq)).toEqual([4]);

    // Through the socket: an ack and the next recv sent together are both answered, the recv with what is buffered.
    server.connections[0]!.send(push(1001, 5, 2));
    for (let i = 0; i < 100 && server.local.counters.received < 6; i++) await Bun.sleep(10);
    const first = (await peer.request({ op: "recv", rid: 3, id: 1, max: 1, wait: 1000 })) as { tag: number; messages: Message[] };
    expect(first.messages.map((m) => m.seq)).toEqual([5]);
    const [acked, next] = await Promise.all([peer.request({ op: "ack", rid: 4, id: 1, tag: first.tag }), peer.request({ op: "recv", rid: 5, id: 1, max: 10, wait: 1000 })]);
    expect(acked).toEqual({ op: "ok", rid: 4 });
    expect((next as { messages: Message[] }).messages.map((m) => m.seq)).toEqual([6]);
  } finally {
    peer.end();
    await server.stop();
  }
});

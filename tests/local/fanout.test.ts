/**
 * The local broker's side of fan-out once per local broker: it announces MSGS_IDS_CAP, and
 * a `msgs` frame with `ids` is buffered for each of those ids and its `id`, from one copy of
 * the payloads; each id's client acknowledges, and the ack goes to the server per id. A
 * frame whose `ids` do not validate costs the connection (the server sends again), never the process.
 */
import { afterAll, expect, test } from "bun:test";
import { configureLog } from "../../lib/log.ts";
import { MSGS_IDS_CAP, MSGS_STARTS_CAP, PROTOCOL_VERSION, type Frame, type MsgsFrame } from "../../lib/wire/messages.ts";
import { RawPeer } from "../security/kit.ts";
import { buffered, scripted } from "./scripted-server.ts";

afterAll(() => configureLog());

test("a frame with ids reaches every id it is for, from one copy of its payloads; acks go back per id", async () => {
  configureLog({ level: "error" });
  const { server, seen } = await scripted();
  const peer = await RawPeer.connect({ unix: server.socket });
  try {
    expect((seen[0] as Frame & { caps?: string[] }).caps).toEqual(expect.arrayContaining([MSGS_IDS_CAP, MSGS_STARTS_CAP]));
    await peer.request({ op: "hello", rid: 1, version: PROTOCOL_VERSION });
    for (let rid = 2; rid <= 4; rid++) expect(await peer.request({ op: "create", rid })).toEqual({ op: "ok", rid, id: rid - 1 });
    // Global ids 1001-1003 are local ids 1-3.
    server.connections[0]!.send({ op: "msgs", id: 1001, ids: [1002, 1003], topic: "t", seq: 5, times: [10, 11], payloads: [new Uint8Array([1]), new Uint8Array([2])], more: false });
    for (let i = 0; i < 100 && buffered(server.local, 3).length < 2; i++) await Bun.sleep(10);
    const [one, two, three] = [1, 2, 3].map((id) => buffered(server.local, id));
    expect([one, two, three].map((q) => q!.map((m) => [m.topic, m.seq, m.time, [...m.data]]))).toEqual(
      Array(3).fill([
        ["t", 5, 10, [1]],
        ["t", 6, 11, [2]],
      ]),
    );
    // One copy of each payload, and one message object, shared by the ids.
    expect(two![0]!.data).toBe(one![0]!.data);
    expect(three![1]).toBe(one![1]);

    // A push with `lost`: each id counts what it lost from what it had, so the first message
    // is an object of each id's own. Id 3 got seq 7 besides; seq 8 was lost for all.
    server.connections[0]!.send({ op: "msgs", id: 1003, topic: "t", seq: 7, times: [12], payloads: [new Uint8Array([3])], more: false });
    server.connections[0]!.send({ op: "msgs", id: 1001, ids: [1003], topic: "t", seq: 9, times: [14, 15], payloads: [new Uint8Array([5]), new Uint8Array([6])], lost: 2, more: false });
    for (let i = 0; i < 100 && buffered(server.local, 3).length < 5; i++) await Bun.sleep(10);
    const [oneAfter, threeAfter] = [buffered(server.local, 1).slice(2), buffered(server.local, 3).slice(3)];
    expect(oneAfter.map((m) => [m.seq, m.lost])).toEqual([[9, 2], [10, undefined]]);
    expect(threeAfter.map((m) => [m.seq, m.lost])).toEqual([[9, 1], [10, undefined]]);
    expect(threeAfter[1]).toBe(oneAfter[1]!);
    expect(buffered(server.local, 2).length).toBe(2);

    // Id 2's client receives and acknowledges: the server hears an ack for global id 1002 only.
    const got = (await peer.request({ op: "recv", rid: 5, id: 2, max: 10, wait: 0 })) as { tag: number; messages: unknown[] };
    expect(got.messages.length).toBe(2);
    await peer.request({ op: "ack", rid: 6, id: 2, tag: got.tag });
    for (let i = 0; i < 100 && !seen.some((f) => f.op === "ack"); i++) await Bun.sleep(10);
    expect(seen.filter((f) => f.op === "ack")).toEqual([{ op: "ack", id: 1002, topic: "t", seq: 6 }]);
    expect(buffered(server.local, 1).length + buffered(server.local, 3).length).toBe(4 + 5);
  } finally {
    peer.end();
    await server.stop();
  }
});

test("a frame with bad ids closes the server connection (logged) and the local broker reconnects", async () => {
  configureLog({ level: 0 }); // the ERROR line is expected here
  const { server, seen } = await scripted();
  try {
    const first = server.connections[0]!;
    // Not an array of ids: the codec's schema refuses it, naming the field.
    first.send({ op: "msgs", id: 1001, ids: ["x"] as unknown as number[], topic: "t", seq: 1, times: [0], payloads: [new Uint8Array([1])], more: false });
    for (let i = 0; i < 100 && seen.filter((f) => f.op === "hello").length < 2; i++) await Bun.sleep(50);
    expect(first.closed).toBe(true);
    expect(seen.filter((f) => f.op === "hello").length).toBe(2);
  } finally {
    await server.stop();
  }
});

test("a frame with starts: each id of `ids` is buffered from its own start, from the same message objects; `lost` only for ids that start at the first", async () => {
  configureLog({ level: "error" });
  const { server } = await scripted();
  const peer = await RawPeer.connect({ unix: server.socket });
  try {
    await peer.request({ op: "hello", rid: 1, version: PROTOCOL_VERSION });
    for (let rid = 2; rid <= 5; rid++) expect(await peer.request({ op: "create", rid })).toEqual({ op: "ok", rid, id: rid - 1 });
    // Global ids 1001-1004 are local ids 1-4. Seqs 5-8; id 2 starts at seq 7, id 3 at 5, id 4 at 8; seq 4 was lost.
    const payloads = [1, 2, 3, 4].map((b) => new Uint8Array([b]));
    server.connections[0]!.send({ op: "msgs", id: 1001, ids: [1002, 1003, 1004], starts: [2, 0, 3], topic: "t", seq: 5, times: [10, 11, 12, 13], payloads, lost: 1, more: true });
    for (let i = 0; i < 100 && buffered(server.local, 4).length < 1; i++) await Bun.sleep(10);
    const queues = [1, 2, 3, 4].map((id) => buffered(server.local, id).map((m) => [m.seq, m.time, [...m.data], m.lost]));
    const all: Array<[number, number, number[], number | undefined]> = [
      [5, 10, [1], 1],
      [6, 11, [2], undefined],
      [7, 12, [3], undefined],
      [8, 13, [4], undefined],
    ];
    expect(queues).toEqual([all, all.slice(2), all, all.slice(3)]);
    // One object per message for every id that holds it.
    expect(buffered(server.local, 2)[0]).toBe(buffered(server.local, 1)[2]!);
    expect(buffered(server.local, 4)[0]).toBe(buffered(server.local, 3)[3]!);
    // Id 2's client receives seqs 7-8 and acknowledges them.
    const got = (await peer.request({ op: "recv", rid: 6, id: 2, max: 10, wait: 0 })) as { tag: number; messages: Array<{ seq: number }>; more?: boolean };
    expect(got.messages.map((m) => m.seq)).toEqual([7, 8]);
  } finally {
    peer.end();
    await server.stop();
  }
});

test("a frame with starts that do not fit its ids or payloads closes the server connection (logged); nothing of it is buffered, and the local broker reconnects", async () => {
  configureLog({ level: 0 }); // the ERROR lines are expected here
  const { server, seen } = await scripted();
  const peer = await RawPeer.connect({ unix: server.socket });
  try {
    await peer.request({ op: "hello", rid: 1, version: PROTOCOL_VERSION });
    for (let rid = 2; rid <= 3; rid++) await peer.request({ op: "create", rid });
    const frame = { op: "msgs", id: 1001, ids: [1002], topic: "t", seq: 1, times: [0, 1], payloads: [new Uint8Array([1]), new Uint8Array([2])], more: false } as MsgsFrame;
    const bad: Array<Partial<MsgsFrame>> = [
      { starts: [2] }, // past the frame's 2 messages
      { starts: [0, 1] }, // two starts for one id
      { ids: undefined, starts: [1] }, // starts without ids
      { starts: [-1] }, // not an index: the codec's schema
      { starts: ["1"] as unknown as number[] },
      { starts: [] },
    ];
    for (let k = 0; k < bad.length; k++) {
      const hellos = seen.filter((f) => f.op === "hello").length;
      const conn = server.connections[k]!;
      const sent: Record<string, unknown> = { ...frame, ...bad[k] };
      for (const key of Object.keys(sent)) if (sent[key] === undefined) delete sent[key];
      conn.send(sent as unknown as MsgsFrame);
      for (let i = 0; i < 100 && seen.filter((f) => f.op === "hello").length === hellos; i++) await Bun.sleep(20);
      expect([k, conn.closed]).toEqual([k, true]);
      expect(seen.filter((f) => f.op === "hello").length).toBe(hellos + 1);
    }
    // The process lives on: the next frame, a good one, is taken.
    for (let i = 0; i < 100 && !server.local.connected; i++) await Bun.sleep(10);
    expect(buffered(server.local, 1).length + buffered(server.local, 2).length).toBe(0);
    server.connections[bad.length]!.send({ ...frame, starts: [1] });
    for (let i = 0; i < 100 && buffered(server.local, 2).length < 1; i++) await Bun.sleep(10);
    expect([buffered(server.local, 1).map((m) => m.seq), buffered(server.local, 2).map((m) => m.seq)]).toEqual([[1, 2], [2]]);
  } finally {
    peer.end();
    await server.stop();
  }
});

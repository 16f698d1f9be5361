/**
 * The local broker's side of fan-out once per local broker: it announces MSGS_IDS_CAP, and
 * a `msgs` frame with `ids` is buffered for each of those ids and its `id`, from one copy of
 * the payloads; each id's client acknowledges, and the ack goes to the server per id. A
 * frame whose `ids` do not validate costs the connection (the server sends again), never the process.
 */
import { afterAll, expect, test } from "bun:test";
import { configureLog } from "../../lib/log.ts";
import { MSGS_IDS_CAP, PROTOCOL_VERSION, type Frame } from "../../lib/wire/messages.ts";
import { RawPeer } from "../security/kit.ts";
import { buffered, scripted } from "./scripted-server.ts";

afterAll(() => configureLog());

test("a frame with ids reaches every id it is for, from one copy of its payloads; acks go back per id", async () => {
  configureLog({ level: "error" });
  const { server, seen } = await scripted();
  const peer = await RawPeer.connect({ unix: server.socket });
  try {
    expect((seen[0] as Frame & { caps?: string[] }).caps).toContain(MSGS_IDS_CAP);
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

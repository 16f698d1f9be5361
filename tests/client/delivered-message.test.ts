/**
 * Pushed messages decoded straight into the library's Message (lib/wire/hot-decode.ts with
 * the factory lib/client/message.ts sets): the same fields as the generic decoding, and a
 * frame the fast reader does not know still decodes, into plain maps the Follow converts.
 */
import { describe, expect, test } from "bun:test";
import { Message } from "../../lib/client/message.ts";
import { decodeMap, encode } from "../../lib/wire/codec.ts";
import { readHotFrame } from "../../lib/wire/hot-decode.ts";

const fields = (m: Record<string, unknown>) => ({ topic: m.topic, seq: m.seq, time: m.time, data: [...(m.data as Uint8Array)], lost: m.lost, headers: m.headers, expiresAt: m.expiresAt });

describe("delivered messages", () => {
  const wire = [
    { topic: "t", seq: 1, time: 1_700_000_000_000, data: new Uint8Array([1, 2, 3]) },
    { topic: "t", seq: 5, time: 2 ** 40, data: new Uint8Array(0), lost: 3, headers: { a: "b", "ключ": "😀" }, expiresAt: 1_800_000_000_000 },
  ];

  test("a delivery frame's messages come out as Messages with the fields of the wire", () => {
    const frame = decodeMap(encode({ op: "delivery", id: 7, messages: wire }));
    const messages = frame.messages as Message[];
    expect(messages).toHaveLength(2);
    for (const m of messages) expect(m).toBeInstanceOf(Message);
    expect(messages.map((m) => fields(m as unknown as Record<string, unknown>))).toEqual(wire.map((m) => fields({ lost: undefined, headers: undefined, expiresAt: undefined, ...m })));
    expect(new TextDecoder().decode(messages[0]!.data)).toBe(messages[0]!.text());
    expect(frame.id).toBe(7);
  });

  test("a recv reply's messages come out as Messages too, before or after its op (the local broker writes them first)", () => {
    for (const f of [
      { messages: wire, tag: 3, more: false, op: "ok", rid: 9 },
      { op: "ok", rid: 9, messages: wire, tag: 3 },
      { messages: wire, op: "delivery", id: 1 },
    ]) {
      const frame = decodeMap(encode(f));
      const messages = frame.messages as Message[];
      for (const m of messages) expect(m).toBeInstanceOf(Message);
      expect(messages.map((m) => fields(m as unknown as Record<string, unknown>))).toEqual(wire.map((m) => fields({ lost: undefined, headers: undefined, expiresAt: undefined, ...m })));
    }
  });

  test("an unknown key, a value of another type, a missing key, or another op: plain maps, as the generic decoder gives them", () => {
    const odd = [
      { op: "delivery", id: 1, messages: [{ ...wire[0], extra: 1 }] },
      { op: "delivery", id: 1, messages: [{ ...wire[0], seq: "1" }] },
      { op: "delivery", id: 1, messages: [{ seq: 1, time: 2, data: new Uint8Array(1) }] },
      { op: "sub", id: 1, messages: wire },
      { messages: [{ ...wire[0], extra: 1 }], tag: 1, op: "ok", rid: 1 },
    ];
    for (const f of odd) {
      const frame = decodeMap(encode(f));
      for (const m of frame.messages as object[]) expect(m).not.toBeInstanceOf(Message);
      expect((frame.messages as Record<string, unknown>[]).map((m) => m.seq)).toEqual(f.messages.map((m) => (m as { seq?: unknown }).seq));
    }
    // The fast reader gives up on the first three and the last (cbor-x decodes them), and reads the fourth as maps.
    expect(readHotFrame(encode(odd[0]!))).toBeUndefined();
    expect(readHotFrame(encode(odd[3]!))).toBeDefined();
  });
});

import { describe, expect, test } from "bun:test";
// The pure-JS entry point, like codec.ts: the package root loads the native cbor-extract
// addon, which would then also be used by the codec under test.
import { Encoder } from "cbor-x/encode";
import { Code, MqError } from "../../lib/errors.ts";
import { decode, decodeMap, encode, validate } from "../../lib/wire/codec.ts";
import type { Frame } from "../../lib/wire/messages.ts";

/** Runs `fn` and returns the MqError it throws (failing the test if it throws anything else or nothing). */
function mqErrorOf(fn: () => unknown): MqError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MqError);
    return err as MqError;
  }
  throw new Error("expected an MqError, nothing was thrown");
}

/** A plain CBOR encoder that does whatever we ask, to build frames the codec would never write. */
const raw = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true } as never);

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

const data = new Uint8Array([0, 1, 2, 0xfe, 0xff]);

/** One well-formed frame of every op a peer may send, plus replies. */
const frames: Array<[string, Frame]> = [
  ["hello (client hop)", { op: "hello", rid: 1, version: 1 }],
  ["hello (server hop)", { op: "hello", rid: 1, version: 1, broker: "b-1", secret: "c0ffee", token: "shared" }],
  ["create", { op: "create", rid: 2 }],
  ["pub", { op: "pub", rid: 3, id: 7, topic: "a.b", data }],
  ["pub with empty data", { op: "pub", rid: 3, id: 7, topic: "a.b", data: new Uint8Array(0) }],
  ["sub", { op: "sub", rid: 4, id: 7, topics: ["a", "b.c"] }],
  ["sub from earliest", { op: "sub", rid: 4, id: 7, topics: ["a"], from: "earliest" }],
  ["sub from latest", { op: "sub", rid: 4, id: 7, topics: ["a"], from: "latest" }],
  ["sub from a seq", { op: "sub", rid: 4, id: 7, topics: ["a"], from: 42 }],
  ["unsub", { op: "unsub", rid: 5, id: 7, topics: ["a"] }],
  ["pubs", { op: "pubs", rid: 11, id: 7, topic: "a", payloads: [data, new Uint8Array(0), data] }],
  ["recv", { op: "recv", rid: 6, id: 7, max: 100, wait: 5000 }],
  ["ack (client hop)", { op: "ack", rid: 7, id: 7, tag: 3 }],
  ["ack (server hop)", { op: "ack", id: 7, topic: "a", seq: 2 ** 40 }],
  ["destroy", { op: "destroy", rid: 8, id: 7 }],
  ["topics", { op: "topics", rid: 9 }],
  ["stats", { op: "stats", rid: 10 }],
  ["msgs", { op: "msgs", id: 7, topic: "a", seq: 1, times: [1_700_000_000_123, 1_700_000_000_124], payloads: [data, new Uint8Array(0)] }],
  ["ping (heartbeat)", { op: "ping" }],
  ["pong (heartbeat)", { op: "pong" }],
  ["ok", { op: "ok", rid: 3, topic: "a", seq: 1, subscribers: 0, created: true }],
  ["ok with a list", { op: "ok", rid: 9, topics: [{ topic: "a", subscribers: 1, messages: 2 }] }],
  ["error", { op: "error", rid: 3, code: "INVALID_TOPIC", message: 'invalid topic "a/b"' }],
  ["error without rid", { op: "error", code: "VERSION_MISMATCH", message: "version 2 is not supported" }],
];

describe("codec round trip", () => {
  test.each(frames)("decode(encode(x)) returns x for %s", (_name, frame) => {
    expect(decode(encode(frame))).toEqual(frame);
  });

  test("decode returns payload data as a Uint8Array", () => {
    const got = decode(encode({ op: "pub", rid: 1, id: 1, topic: "a", data })) as { data: unknown };
    expect(got.data).toBeInstanceOf(Uint8Array);
    expect(got.data).toEqual(data);
  });

  test("decode returns msgs payloads of 1 MiB intact", () => {
    const big = Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 31) & 0xff);
    const got = decode(encode({ op: "msgs", id: 1, topic: "a", seq: 1, times: [1], payloads: [big] })) as { payloads: Uint8Array[] };
    expect(got.payloads[0]).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(got.payloads[0]!).equals(Buffer.from(big))).toBe(true);
  });

  test("validate accepts an empty msgs (the window-full notice) and rejects pubs without payloads", () => {
    expect(decode(encode({ op: "msgs", id: 1, topic: "a", seq: 5, times: [], payloads: [], more: true }))).toMatchObject({ op: "msgs", more: true });
    expect(mqErrorOf(() => decode(encode({ op: "pubs", rid: 1, id: 1, topic: "a", payloads: [] }))).code).toBe(Code.BadRequest);
  });

  test("validate rejects msgs with an oversized or mistyped list", () => {
    for (const bad of [
      { times: [1], payloads: ["text"] },
      { times: [-1], payloads: [new Uint8Array(1)] },
      { times: Array.from({ length: 1025 }, () => 1), payloads: Array.from({ length: 1025 }, () => new Uint8Array(0)) },
    ]) {
      expect(mqErrorOf(() => decode(encode({ op: "msgs", id: 1, topic: "a", seq: 1, ...bad }))).code).toBe(Code.BadRequest);
    }
  });
});

describe("codec encoding", () => {
  test("encode writes a frame as a plain CBOR map with text keys", () => {
    // a2 = map of 2 pairs; 62 6f70 = "op"; 66 637265617465 = "create"; 63 726964 = "rid"; 01
    expect(hex(encode({ op: "create", rid: 1 }))).toBe("a2626f706663726561746563726964" + "01");
  });

  test("encode writes data as a CBOR byte string (major type 2), not a tag 64 typed array", () => {
    const out = hex(encode({ op: "pub", rid: 1, id: 2, topic: "a", data: new Uint8Array([1, 2, 3]) }));
    // 64 64617461 = "data", then 43 = byte string of 3 bytes, then the bytes.
    expect(out).toContain("6464617461" + "43" + "010203");
    expect(out).not.toContain("d840"); // tag 64 (uint8 typed array)
    expect(out.endsWith("6464617461" + "43010203")).toBe(true);
  });

  test("encode writes a 300-byte payload as a byte string with a 2-byte length", () => {
    const out = hex(encode({ op: "pub", rid: 1, id: 2, topic: "a", data: new Uint8Array(300).fill(0xaa) }));
    // 59 012c = byte string, length 300 in the two following bytes.
    expect(out).toContain("6464617461" + "59012c" + "aa".repeat(300));
    expect(out).not.toContain("d840");
  });

  test("encode writes a Buffer payload as a plain byte string too", () => {
    expect(hex(encode({ d: Buffer.from([9]) }))).toBe("a1" + "6164" + "4109");
  });
});

describe("codec integers", () => {
  /** The CBOR head of a uint64 followed by its 8 bytes. */
  const uint64 = (n: number) => `1b${n.toString(16).padStart(16, "0")}`;

  test("encode writes integers of 2^32 and more (times in ms, big seqs) as CBOR uint64, not float64", () => {
    const time = 1_796_053_804_378;
    const bytes = encode({ op: "msgs", id: 1, topic: "a", seq: 5e9, times: [time, time + 1], payloads: [new Uint8Array(0), new Uint8Array(0)] });
    expect(hex(bytes)).toContain(`736571${uint64(5e9)}`); // "seq" then the value
    expect(hex(bytes)).toContain(`82${uint64(time)}${uint64(time + 1)}`);
    expect(hex(bytes)).not.toContain("fb");
    expect(decode(bytes)).toEqual({ op: "msgs", id: 1, topic: "a", seq: 5e9, times: [time, time + 1], payloads: [new Uint8Array(0), new Uint8Array(0)] } as Frame);
  });

  test("encode leaves bytes inside a payload alone, even when they look like a float64", () => {
    const lookalike = new Uint8Array([0xfb, 0x41, 0xf2, 0xa0, 0x5f, 0x20, 0, 0, 0]); // float64 5e9
    const frame = { op: "pub", rid: 1, id: 2, topic: "t", data: lookalike };
    expect((decode(encode(frame)) as { data: Uint8Array }).data).toEqual(lookalike);
  });

  test("decode accepts a uint64 seq from another implementation, and refuses one above 2^53 - 1", () => {
    const frame = (seq: bigint) => raw.encode({ op: "msgs", id: 1, topic: "a", seq, times: [], payloads: [] });
    expect(hex(frame(5_000_000_000n))).toContain(uint64(5e9));
    expect(decode(frame(5_000_000_000n))).toMatchObject({ op: "msgs", seq: 5e9 });
    const err = mqErrorOf(() => decode(frame(2n ** 53n)));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.message).toContain('field "seq"');
  });
});

describe("decodeMap", () => {
  test.each([
    ["a reserved CBOR byte", [0xff, 0xfe]],
    ["a truncated map", [0xa2, 0x62, 0x6f]],
    ["a map followed by trailing bytes", [...encode({ op: "create", rid: 1 }), 0x01]],
    ["no bytes at all", []],
  ])("decodeMap rejects %s as fatal BAD_REQUEST", (_name, bytes) => {
    const err = mqErrorOf(() => decodeMap(new Uint8Array(bytes as number[])));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.fatal).toBe(true);
    expect(err.message).toContain("not valid CBOR");
  });

  test.each([
    ["an array", [1, 2]],
    ["a number", 42],
    ["a string", "hello"],
    ["a byte string", new Uint8Array([1, 2, 3])],
    ["null", null],
    ["true", true],
  ])("decodeMap rejects CBOR %s as fatal BAD_REQUEST", (_name, value) => {
    const err = mqErrorOf(() => decodeMap(raw.encode(value)));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.fatal).toBe(true);
    expect(err.message).toContain("not a CBOR map");
  });

  test("decodeMap rejects CBOR items that decode to objects other than a plain map", () => {
    // BUG: the check only rules out null, primitives, arrays and Uint8Array, so a tagged
    // date, another typed array or a map with a "__proto__" key (cbor-x returns a Map)
    // passes as "a map"; validate then answers a non-fatal BAD_REQUEST instead of fatal.
    const cases: Array<[string, number[]]> = [
      ["tag 1 date", [0xc1, 0x00]],
      ["tag 72 int8 array", [0xd8, 0x48, 0x42, 0x01, 0x02]],
      ["map with a __proto__ key", [...raw.encode(new Map<string, unknown>([["op", "create"], ["__proto__", 1]]))]],
    ];
    for (const [name, bytes] of cases) {
      const err = mqErrorOf(() => decodeMap(new Uint8Array(bytes)));
      expect({ name, code: err.code, fatal: err.fatal }).toEqual({ name, code: Code.BadRequest, fatal: true });
    }
  });

  test("decodeMap returns a map with its fields", () => {
    expect(decodeMap(encode({ op: "x", n: 1 }))).toEqual({ op: "x", n: 1 });
  });
});

describe("validate", () => {
  test("validate rejects a map without op as BAD_REQUEST, not fatal", () => {
    const err = mqErrorOf(() => decode(encode({ rid: 1 })));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.fatal).toBe(false);
    expect(err.message).toContain('"op"');
  });

  test("validate rejects a non-string op as BAD_REQUEST", () => {
    const err = mqErrorOf(() => decode(encode({ op: 1, rid: 1 })));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.message).toContain('"op"');
  });

  test("validate rejects an unknown op as UNKNOWN_OP, not fatal", () => {
    const err = mqErrorOf(() => decode(encode({ op: "frobnicate", rid: 1 })));
    expect(err.code).toBe(Code.UnknownOp);
    expect(err.fatal).toBe(false);
    expect(err.message).toContain('"frobnicate"');
  });

  test("validate cuts a long unknown op in its message", () => {
    const err = mqErrorOf(() => decode(encode({ op: "x".repeat(10_000), rid: 1 })));
    expect(err.code).toBe(Code.UnknownOp);
    expect(err.message.length).toBeLessThan(100);
  });

  test("validate rejects ops named like Object.prototype members as UNKNOWN_OP", () => {
    // BUG: `schemas[op]` also finds members inherited from Object.prototype, so these
    // ops pass validation with no field checked and reach the dispatcher as frames.
    for (const op of ["constructor", "toString", "hasOwnProperty", "__proto__", "valueOf"]) {
      const err = mqErrorOf(() => decode(encode({ op })));
      expect({ op, code: err.code }).toEqual({ op, code: Code.UnknownOp });
    }
  });

  test("validate rejects extra fields named like Object.prototype members", () => {
    // BUG: `key in schema` also sees members inherited from Object.prototype.
    for (const key of ["toString", "constructor", "hasOwnProperty"]) {
      const err = mqErrorOf(() => decode(encode({ op: "create", rid: 1, [key]: 5 })));
      expect({ key, code: err.code }).toEqual({ key, code: Code.BadRequest });
      expect(err.message).toContain(`"${key}"`);
    }
  });

  test.each([
    ["pub", { op: "pub", rid: 1, id: 2, data }, "topic"],
    ["pub", { op: "pub", rid: 1, id: 2, topic: "a" }, "data"],
    ["pub", { op: "pub", id: 2, topic: "a", data }, "rid"],
    ["hello", { op: "hello", rid: 1 }, "version"],
    ["sub", { op: "sub", rid: 1, id: 2 }, "topics"],
    ["recv", { op: "recv", rid: 1, id: 2, max: 1 }, "wait"],
    ["ack", { op: "ack", rid: 1, tag: 1 }, "id"],
    ["msgs", { op: "msgs", id: 1, topic: "a", seq: 1, payloads: [data] }, "times"],
  ])("validate rejects %s without a required field as BAD_REQUEST naming it", (op, map, field) => {
    const err = mqErrorOf(() => decode(encode(map)));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.fatal).toBe(false);
    expect(err.message).toBe(`${op}: field "${field}" is missing`);
  });

  test.each([
    ["rid as a string", { op: "create", rid: "1" }, "rid", "a non-negative integer"],
    ["rid negative", { op: "create", rid: -1 }, "rid", "a non-negative integer"],
    ["rid fractional", { op: "create", rid: 1.5 }, "rid", "a non-negative integer"],
    ["rid above 2^53", { op: "create", rid: 2 ** 60 }, "rid", "a non-negative integer"],
    ["topic as bytes", { op: "pub", rid: 1, id: 1, topic: new Uint8Array([97]), data }, "topic", "a string"],
    ["data as a string", { op: "pub", rid: 1, id: 1, topic: "a", data: "aGVsbG8=" }, "data", "a byte string"],
    ["data as an array", { op: "pub", rid: 1, id: 1, topic: "a", data: [1, 2] }, "data", "a byte string"],
    ["topics empty", { op: "sub", rid: 1, id: 1, topics: [] }, "topics", "an array of 1 to 1024 strings"],
    ["topics as a string", { op: "sub", rid: 1, id: 1, topics: "a" }, "topics", "an array of 1 to 1024 strings"],
    ["topics holding a number", { op: "unsub", rid: 1, id: 1, topics: ["a", 1] }, "topics", "an array of 1 to 1024 strings"],
    ["topics too many", { op: "sub", rid: 1, id: 1, topics: Array(1025).fill("a") }, "topics", "an array of 1 to 1024 strings"],
    ["from 0", { op: "sub", rid: 1, id: 1, topics: ["a"], from: 0 }, "from", '"earliest", "latest" or a seq >= 1'],
    ["from a word", { op: "sub", rid: 1, id: 1, topics: ["a"], from: "oldest" }, "from", '"earliest", "latest" or a seq >= 1'],
    ["broker as a number", { op: "hello", rid: 1, version: 1, broker: 5 }, "broker", "a string"],
    ["optional seq as a string", { op: "ack", id: 1, topic: "a", seq: "2" }, "seq", "a non-negative integer"],
  ])("validate rejects %s as BAD_REQUEST naming the field", (_name, map, field, must) => {
    const op = (map as { op: string }).op;
    const err = mqErrorOf(() => decode(encode(map)));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.fatal).toBe(false);
    expect(err.message).toBe(`${op}: field "${field}" must be ${must}`);
  });

  test("validate rejects an extra field as BAD_REQUEST naming it", () => {
    const err = mqErrorOf(() => decode(encode({ op: "pub", rid: 1, id: 1, topic: "a", data, extra: true })));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.fatal).toBe(false);
    expect(err.message).toBe('pub: unexpected field "extra"');
  });

  test("validate rejects null for an optional field", () => {
    // CBOR null for an optional field is a wrong type, not an absent field.
    const err = mqErrorOf(() => decode(encode({ op: "hello", rid: 1, version: 1, token: null })));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.message).toContain('"token"');
  });

  test("validate rejects an ok reply without rid", () => {
    const err = mqErrorOf(() => decode(encode({ op: "ok", seq: 1 })));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.message).toContain('"rid"');
  });

  test("validate rejects an error reply without code or message", () => {
    expect(mqErrorOf(() => decode(encode({ op: "error", rid: 1, message: "m" }))).code).toBe(Code.BadRequest);
    expect(mqErrorOf(() => decode(encode({ op: "error", rid: 1, code: "INTERNAL" }))).code).toBe(Code.BadRequest);
  });

  test("validate rejects a reply with a non-integer rid", () => {
    const err = mqErrorOf(() => decode(encode({ op: "ok", rid: "1" })));
    expect(err.code).toBe(Code.BadRequest);
    expect(err.message).toContain('"rid"');
  });
});

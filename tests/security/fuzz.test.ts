/**
 * Seeded fuzz of the wire edge: the frame decoder and the request validator in isolation,
 * then thousands of rejected frames against a real server in this process.
 *
 * Every case comes from a fixed seed, so a failure names the seed and case that reproduce it.
 * Loops are bounded in count and in time.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Code, MqError } from "../../lib/errors.ts";
import { MqServer } from "../../lib/server/server.ts";
import { decodeMap, validate } from "../../lib/wire/codec.ts";
import { FrameDecoder, encodeFrames } from "../../lib/wire/frame.ts";
import { MAX_IDS_PER_FRAME, MAX_MSGS_PER_FRAME, MAX_TOPICS_PER_REQUEST, schemas } from "../../lib/wire/messages.ts";
import { patternProblem, topicProblem } from "../../lib/wire/topic.ts";
import { tmpDir } from "../e2e/harness.ts";
import { RAW_SECRET, RawPeer, Rng, frameOf, frameOfBytes, lengthPrefix, listFiles, rawCbor, type WireMap } from "./kit.ts";

/** Fuzz cases per seed and rejected frames per run: fixed counts, never capped by the clock. */
const CASES_PER_SEED = 3000;
const REJECTED_FRAMES = 4000;

/** The data directory's files once two looks 150 ms apart agree (lazy cursor writes landed); at most 40 looks. */
async function settled(dir: string): Promise<string[]> {
  let before = listFiles(dir);
  for (let i = 0; i < 40; i++) {
    await Bun.sleep(150);
    const now = listFiles(dir);
    if (JSON.stringify(now) === JSON.stringify(before)) return now;
    before = now;
  }
  throw new Error(`files in ${dir} still changing after 40 looks`);
}

const OPS = Object.keys(schemas); // every op a peer may send
const REPLY_OPS = ["ok", "error"];
const SEEDS = [0x5eed1, 0x5eed2, 0x5eed3, 0x5eed4];

// --- generators --------------------------------------------------------------------------

const TOPIC_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";

function validTopic(rng: Rng): string {
  const tokens = rng.range(1, 3);
  const out: string[] = [];
  for (let i = 0; i < tokens; i++) {
    let t = "";
    for (let j = rng.range(1, 8); j > 0; j--) t += rng.pick([...TOPIC_CHARS]);
    out.push(t);
  }
  return out.join(".");
}

/** A value that fits one schema field type. */
function fieldValue(rng: Rng, type: string): unknown {
  switch (type) {
    case "uint":
      return rng.pick([0, 1, rng.int(1000), rng.int(2 ** 32), Number.MAX_SAFE_INTEGER]);
    case "string":
      return rng.chance(0.7) ? validTopic(rng) : randomString(rng, 12);
    case "bytes":
      return rng.bytes(rng.int(48));
    case "topics":
      return Array.from({ length: rng.range(1, 4) }, () => validTopic(rng));
    case "from":
      return rng.pick(["earliest", "latest", rng.range(1, 10_000)]);
    case "bool":
      return rng.chance(0.5);
    case "times":
      return Array.from({ length: rng.range(0, 4) }, () => rng.int(2 ** 40));
    case "payloads":
      return Array.from({ length: rng.range(1, 4) }, () => rng.bytes(rng.int(48)));
    case "payloads0":
      return Array.from({ length: rng.range(0, 4) }, () => rng.bytes(rng.int(48)));
    case "msgid":
      return `k${randomString(rng, 12)}`;
    case "msgids":
      return Array.from({ length: rng.range(1, 4) }, () => `k${randomString(rng, 12)}`);
    case "idprefix":
      return `p${randomString(rng, 12)}:`;
    case "seqs":
      return Array.from({ length: rng.range(1, 4) }, () => rng.range(1, 10_000));
    case "ids":
      return Array.from({ length: rng.range(1, 4) }, () => rng.int(10_000));
    case "headers":
      return validHeaders(rng);
    case "headerslist":
      return Array.from({ length: rng.range(0, 4) }, () => validHeaders(rng));
    case "ttl":
      return rng.range(1, 2 ** 40);
    case "deliveries":
      return Array.from({ length: rng.range(0, 3) }, () => ({ topic: validTopic(rng), seq: rng.range(1, 10_000), time: rng.int(2 ** 40), data: rng.bytes(rng.int(48)) }));
    default:
      throw new Error(`no generator for field type ${type}`);
  }
}

/** Headers that pass validation: keys of plain characters, values of anything. */
function validHeaders(rng: Rng): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = rng.int(4); i > 0; i--) out[`h${randomString(rng, 6).replace(/[=\s\0\n\ud800\u202e]/g, "x")}`] = randomString(rng, 10).replaceAll("\ud800", "");
  return out;
}

/** Headers as docs/semantics.md says: a plain map, at most 64, keys 1-128 bytes without "=", controls or edge spaces, string values, 16 KiB in all. */
function isHeaders(v: unknown): boolean {
  if (v === null || typeof v !== "object" || Object.getPrototypeOf(v) !== Object.prototype) return false;
  const entries = Object.entries(v);
  if (entries.length > 64) return false;
  let total = 0;
  for (const [k, val] of entries) {
    const kb = new TextEncoder().encode(k).length;
    if (kb < 1 || kb > 128 || k.includes("=") || /[\u0000-\u001f\u007f-\u009f]/.test(k) || k.trim() !== k || !k.isWellFormed() || k === "__proto__") return false;
    if (typeof val !== "string" || !val.isWellFormed()) return false;
    total += kb + new TextEncoder().encode(val).length;
  }
  return total <= 16 * 1024;
}

/** A frame of `op` that passes validation: every required field, some optional ones. */
function validFrame(rng: Rng, op: string): WireMap {
  const frame: WireMap = { op };
  for (const [key, spec] of Object.entries(schemas[op]!)) {
    const optional = spec.endsWith("?");
    if (optional && rng.chance(0.5)) continue;
    frame[key] = fieldValue(rng, optional ? spec.slice(0, -1) : spec);
  }
  return frame;
}

function randomString(rng: Rng, max: number): string {
  const pool = ["a", "Z", "0", ".", "/", "\\", "..", "*", ">", " ", "\0", "\n", "é", "ａ", "\u202e", "\ud800", "😀", "%2e", "_", "-"];
  let s = "";
  for (let i = rng.int(max + 1); i > 0; i--) s += rng.pick(pool);
  return s;
}

/** Anything CBOR can carry, of any type: the values a hostile peer puts in a field. */
function hostileValue(rng: Rng, depth = 0): unknown {
  const kinds = depth > 2 ? 14 : 17;
  switch (rng.int(kinds)) {
    case 0: return null;
    case 1: return undefined;
    case 2: return rng.chance(0.5);
    case 3: return -rng.range(1, 2 ** 31);
    case 4: return rng.pick([0.5, -0.0, NaN, Infinity, -Infinity, 1e300, 2 ** 53, 2 ** 64]);
    case 5: return rng.pick([2n ** 64n - 1n, -(2n ** 63n), 5n]);
    case 6: return randomString(rng, 20);
    case 7: return "x".repeat(rng.pick([0, 201, 5000]));
    case 8: return rng.bytes(rng.int(32));
    case 9: return new Date(rng.int(2 ** 40));
    case 10: return rng.int(1000);
    case 11: return rng.pick(["earliest", "latest", "hello", "__proto__", "constructor"]);
    case 12: return new Float32Array([1.5, -2]);
    case 13: return [];
    case 14: return Array.from({ length: rng.int(4) }, () => hostileValue(rng, depth + 1));
    case 15: {
      const m: Record<string, unknown> = {};
      for (let i = rng.int(4); i > 0; i--) m[randomString(rng, 6)] = hostileValue(rng, depth + 1);
      return m;
    }
    default: return new Map<unknown, unknown>([[1, "one"], [["k"], { nested: true }]]);
  }
}

const JUNK_KEYS = ["__proto__", "constructor", "toString", "hasOwnProperty", "", "x".repeat(300), "rid ", "OP", "data\0", "prototype"];

type Mutation = "swap" | "drop" | "junk" | "op" | "bitflip" | "truncate" | "extend" | "splice" | "random" | "hostile";

interface Case {
  mutation: Mutation;
  bytes: Uint8Array;
  /** For single-field mutations of a valid frame: the field an error must name. */
  field?: string;
  baseOp?: string;
}

/** Hand-written CBOR that attacks the decoder itself (sizes, nesting, tags). */
const HOSTILE_CBOR: Array<[string, Uint8Array]> = [
  ["array nested 100k deep", new Uint8Array([...new Array(100_000).fill(0x81), 0x00])],
  ["map nested 50k deep", new Uint8Array([...Array.from({ length: 50_000 }, () => [0xa1, 0x61, 0x61]).flat(), 0x00])],
  ["array of 2^64-1 items", new Uint8Array([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00])],
  ["map of 2^32-1 entries", new Uint8Array([0xba, 0xff, 0xff, 0xff, 0xff, 0x61, 0x61, 0x00])],
  ["byte string of 2^32-1 bytes", new Uint8Array([0x5a, 0xff, 0xff, 0xff, 0xff, 0x00])],
  ["text string of 2^32-1 bytes", new Uint8Array([0x7a, 0xff, 0xff, 0xff, 0xff, 0x61])],
  ["indefinite array never closed", new Uint8Array([0x9f, 0x01, 0x02, 0x03])],
  ["indefinite map never closed", new Uint8Array([0xbf, 0x62, 0x6f, 0x70, 0x01])],
  ["break byte alone", new Uint8Array([0xff])],
  ["reserved additional info", new Uint8Array([0x1c])],
  ["invalid UTF-8 in a key", new Uint8Array([0xa1, 0x62, 0xc3, 0x28, 0x01])],
  ["map with a map as key", new Uint8Array([0xa1, 0xa0, 0x01])],
  ["map with an array as key", new Uint8Array([0xa1, 0x80, 0x01])],
  ["__proto__ key holding a map", rawCbor.encode(JSON.parse('{"op":"topics","rid":1,"__proto__":{"op":"create"}}'))],
  ["__proto__ key holding an integer", rawCbor.encode(JSON.parse('{"op":"topics","rid":1,"__proto__":7}'))],
  ["date tag at top level", new Uint8Array([0xc1, 0x1a, 0x65, 0x00, 0x00, 0x00])],
  ["set tag at top level", new Uint8Array([0xd9, 0x01, 0x02, 0x81, 0x01])],
  ["generic-object tag 27 (RegExp)", new Uint8Array([0xd8, 0x1b, 0x83, 0x66, ...Buffer.from("RegExp"), 0x62, ...Buffer.from("(a"), 0x60])],
  ["shared-reference tags 28/29 (a map containing itself)", new Uint8Array([0xd8, 0x1c, 0xa2, 0x62, 0x6f, 0x70, 0x66, ...Buffer.from("topics"), 0x63, 0x72, 0x69, 0x64, 0xd8, 0x1d, 0x00])],
  ["record definition tag 0xdffe", new Uint8Array([0xd9, 0xdf, 0xfe, 0x83, 0x00, 0x82, 0x62, 0x6f, 0x70, 0x63, 0x72, 0x69, 0x64, 0xa0])],
  ["unknown tag around a valid request", new Uint8Array([0xd9, 0xff, 0xfe, ...rawCbor.encode({ op: "topics", rid: 1 })])],
  ["valid request followed by junk", new Uint8Array([...rawCbor.encode({ op: "topics", rid: 1 }), 0x00, 0x00])],
  ["two maps in one frame", new Uint8Array([...rawCbor.encode({ op: "topics", rid: 1 }), ...rawCbor.encode({ op: "create", rid: 2 })])],
  ["half-precision NaN rid", new Uint8Array([0xa2, 0x62, 0x6f, 0x70, 0x66, ...Buffer.from("topics"), 0x63, 0x72, 0x69, 0x64, 0xf9, 0x7e, 0x00])],
];

/** Builds one fuzz case from the rng: a valid frame mutated one way, or bytes from nowhere. */
function makeCase(rng: Rng): Case {
  const mutation = rng.pick<Mutation>(["swap", "swap", "drop", "junk", "op", "bitflip", "bitflip", "truncate", "extend", "splice", "random", "hostile"]);
  const baseOp = rng.chance(0.9) ? rng.pick(OPS) : rng.pick(REPLY_OPS);
  const base: WireMap =
    baseOp === "ok" ? { op: "ok", rid: rng.int(100), seq: 1 } : baseOp === "error" ? { op: "error", rid: rng.int(100), code: "BAD_REQUEST", message: "x" } : validFrame(rng, baseOp);
  const keys = Object.keys(base).filter((k) => k !== "op");
  switch (mutation) {
    case "swap": {
      if (keys.length === 0) return { mutation, bytes: rawCbor.encode({ ...base, op: hostileValue(rng) }), field: "op", baseOp };
      const field = rng.pick(keys);
      return { mutation, bytes: rawCbor.encode({ ...base, [field]: hostileValue(rng) }), field, baseOp };
    }
    case "drop": {
      if (keys.length === 0) return { mutation, bytes: rawCbor.encode({}), field: "op", baseOp };
      const field = rng.pick(keys);
      const copy = { ...base };
      delete copy[field];
      return { mutation, bytes: rawCbor.encode(copy), field, baseOp };
    }
    case "junk": {
      const field = rng.chance(0.5) ? rng.pick(JUNK_KEYS) : randomString(rng, 8) || "k";
      const copy: WireMap = { ...base };
      Object.defineProperty(copy, field, { value: hostileValue(rng), enumerable: true, configurable: true, writable: true });
      return { mutation, bytes: rawCbor.encode(copy), field, baseOp };
    }
    case "op":
      return { mutation, bytes: rawCbor.encode({ ...base, op: rng.pick([...OPS, ...REPLY_OPS, "msgs", "HELLO", "hello ", "", "__proto__", "toString", randomString(rng, 10)]) }), baseOp };
    case "bitflip": {
      const bytes = rawCbor.encode(base).slice();
      for (let i = rng.range(1, 8); i > 0; i--) bytes[rng.int(bytes.length)]! ^= 1 << rng.int(8);
      return { mutation, bytes, baseOp };
    }
    case "truncate": {
      const full = rawCbor.encode(base);
      return { mutation, bytes: full.slice(0, rng.int(full.length)), baseOp };
    }
    case "extend":
      return { mutation, bytes: new Uint8Array([...rawCbor.encode(base), ...rng.bytes(rng.range(1, 16))]), baseOp };
    case "splice": {
      const bytes = rawCbor.encode(base).slice();
      const at = rng.int(bytes.length);
      bytes.set(rng.bytes(Math.min(rng.range(1, 8), bytes.length - at)), at);
      return { mutation, bytes, baseOp };
    }
    case "random":
      return { mutation, bytes: rng.bytes(rng.int(64)) };
    case "hostile":
      return { mutation, bytes: rawCbor.encode(hostileValue(rng)) };
  }
}

// --- what "accepted" must mean, checked independently of lib/wire/messages.ts --------------

/** A message id: a string of 1 to 256 bytes of UTF-8. */
const isKey = (v: unknown) => typeof v === "string" && v.length > 0 && new TextEncoder().encode(v).length <= 256;
const isUint = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER;

/** Why an accepted frame does not actually fit its op's schema, or null. */
function nonConformance(frame: WireMap): string | null {
  const op = frame.op as string;
  if (op === "ok") return isUint(frame.rid) || (typeof frame.rid === "number" && Number.isSafeInteger(frame.rid)) ? null : "ok without an integer rid";
  if (op === "error") return typeof frame.code === "string" && typeof frame.message === "string" ? null : "error without code/message strings";
  const schema = schemas[op];
  if (!schema || !Object.hasOwn(schemas, op)) return `accepted unknown op ${op}`;
  for (const key of Object.keys(frame)) if (key !== "op" && !Object.hasOwn(schema, key)) return `accepted extra field ${key}`;
  for (const [key, spec] of Object.entries(schema)) {
    const v = frame[key];
    if (v === undefined) {
      if (!spec.endsWith("?")) return `accepted without ${key}`;
      continue;
    }
    const type = spec.replace("?", "");
    const ok =
      type === "uint" ? isUint(v)
      : type === "string" ? typeof v === "string"
      : type === "bytes" ? v instanceof Uint8Array
      : type === "topics" ? Array.isArray(v) && v.length >= 1 && v.length <= MAX_TOPICS_PER_REQUEST && v.every((t) => typeof t === "string")
      : type === "from" ? v === "earliest" || v === "latest" || (isUint(v) && (v as number) >= 1)
      : type === "bool" ? typeof v === "boolean"
      : type === "times" ? Array.isArray(v) && v.length <= MAX_MSGS_PER_FRAME && v.every(isUint)
      : type === "payloads" ? Array.isArray(v) && v.length >= 1 && v.length <= MAX_MSGS_PER_FRAME && v.every((p) => p instanceof Uint8Array)
      : type === "payloads0" ? Array.isArray(v) && v.length <= MAX_MSGS_PER_FRAME && v.every((p) => p instanceof Uint8Array)
      : type === "msgid" ? isKey(v)
      : type === "msgids" ? Array.isArray(v) && v.length >= 1 && v.length <= MAX_MSGS_PER_FRAME && v.every(isKey)
      : type === "idprefix" ? typeof v === "string" && v.endsWith(":") && new TextEncoder().encode(v).length <= 200
      : type === "seqs" ? Array.isArray(v) && v.length >= 1 && v.length <= MAX_MSGS_PER_FRAME && v.every((n) => isUint(n) && (n as number) >= 1)
      : type === "ids" ? Array.isArray(v) && v.length >= 1 && v.length <= MAX_IDS_PER_FRAME && v.every(isUint)
      : type === "headers" ? isHeaders(v)
      : type === "headerslist" ? Array.isArray(v) && v.length <= MAX_MSGS_PER_FRAME && v.every(isHeaders)
      : type === "ttl" ? isUint(v) && (v as number) >= 1
      : type === "deliveries" ? Array.isArray(v) && v.length <= MAX_MSGS_PER_FRAME && v.every((m) => m !== null && typeof m === "object" && (m as WireMap).data instanceof Uint8Array)
      : false;
    if (!ok) return `accepted ${key} of the wrong type`;
  }
  return null;
}

type Outcome = { kind: "fatal"; err: MqError } | { kind: "rejected"; err: MqError; map: WireMap } | { kind: "accepted"; map: WireMap };

/** Runs one frame body through decodeMap + validate; anything but an MqError escaping is thrown on. */
function classify(bytes: Uint8Array): Outcome {
  let map: WireMap;
  try {
    map = decodeMap(bytes);
  } catch (err) {
    if (!(err instanceof MqError)) throw new Error(`decodeMap threw a non-MqError: ${String(err)}`);
    return { kind: "fatal", err };
  }
  try {
    validate(map);
  } catch (err) {
    if (!(err instanceof MqError)) throw new Error(`validate threw a non-MqError: ${String(err)}`);
    return { kind: "rejected", err, map };
  }
  return { kind: "accepted", map };
}

function hex(bytes: Uint8Array, max = 48): string {
  const h = Buffer.from(bytes.subarray(0, max)).toString("hex");
  return bytes.length > max ? `${h}… (${bytes.length} bytes)` : h;
}

// --- 1. decoder and validator in isolation ----------------------------------------------

describe("decodeMap + validate", () => {
  test.each(SEEDS)("throw nothing but MqError, accept only schema-conformant frames and name the bad field for seed %i", (seed) => {
    const rng = new Rng(seed);
    const failures: string[] = [];
    const counts: Record<string, number> = { fatal: 0, rejected: 0, accepted: 0 };
    // A fixed number of cases per seed: the same cases on every machine, however loaded.
    let n = 0;
    for (; n < CASES_PER_SEED; n++) {
      const c = makeCase(rng);
      const where = `seed ${seed} case ${n} (${c.mutation}${c.baseOp ? ` of ${c.baseOp}` : ""}${c.field !== undefined ? ` field ${JSON.stringify(c.field.slice(0, 20))}` : ""}) bytes ${hex(c.bytes)}`;
      let outcome: Outcome;
      try {
        outcome = classify(c.bytes);
      } catch (err) {
        failures.push(`${where}: ${(err as Error).message}`);
        continue;
      }
      counts[outcome.kind]!++;
      if (outcome.kind === "fatal") {
        if (outcome.err.code !== Code.BadRequest || !outcome.err.fatal) failures.push(`${where}: undecodable frame gave ${outcome.err.code} (fatal ${outcome.err.fatal})`);
      } else if (outcome.kind === "rejected") {
        const { err } = outcome;
        if (err.fatal) failures.push(`${where}: a validation error is fatal`);
        if (err.code !== Code.BadRequest && err.code !== Code.UnknownOp) failures.push(`${where}: validation gave ${err.code}`);
        // One field of a valid request changed: the error names that field.
        const single = c.mutation === "swap" || c.mutation === "drop" || c.mutation === "junk";
        // A junk key is named as it arrived (cbor-x turns a lone surrogate or "__proto__" into something else).
        const field = c.mutation === "junk" && c.baseOp && OPS.includes(c.baseOp) ? Object.keys(outcome.map).find((k) => k !== "op" && !Object.hasOwn(schemas[c.baseOp!]!, k)) : c.field;
        if (single && c.baseOp && OPS.includes(c.baseOp) && field !== undefined && field !== "op") {
          if (err.code !== Code.BadRequest || !err.message.includes(JSON.stringify(field.slice(0, 40)).slice(0, -1))) failures.push(`${where}: error does not name the field: ${err.code} ${err.message}`);
        }
      } else {
        const problem = nonConformance(outcome.map);
        if (problem) failures.push(`${where}: ${problem}`);
      }
    }
    expect(failures).toEqual([]);
    expect(n).toBe(CASES_PER_SEED);
    // The generator reaches every outcome (a fuzz that only hits one path proves little).
    expect(counts.fatal).toBeGreaterThan(100);
    expect(counts.rejected).toBeGreaterThan(100);
    expect(counts.accepted).toBeGreaterThan(10);
  });

  test.each(HOSTILE_CBOR)("reject %s with an MqError or a conformant frame, nothing else", (_name, bytes) => {
    // A hang fails through the test's own timeout; no wall-clock bound here.
    const outcome = classify(bytes);
    if (outcome.kind === "accepted") expect(nonConformance(outcome.map)).toBeNull();
    else expect(outcome.err.code === Code.BadRequest || outcome.err.code === Code.UnknownOp).toBe(true);
    expect(Object.prototype).not.toHaveProperty("op"); // no prototype pollution
  });

  test("decodeMap never returns an object whose prototype was swapped by a __proto__ key", () => {
    const outcome = classify(rawCbor.encode(JSON.parse('{"op":"create","rid":1,"__proto__":{"polluted":true}}')));
    if (outcome.kind !== "fatal") expect(Object.getPrototypeOf(outcome.map)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe("FrameDecoder.push", () => {
  test.each(SEEDS)("splits a stream of valid frames cut at random chunk boundaries back into the same frames for seed %i", (seed) => {
    const rng = new Rng(seed);
    for (let round = 0; round < 200; round++) {
      const payloads = Array.from({ length: rng.range(1, 20) }, () => rng.bytes(rng.range(1, 300)));
      const stream = encodeFrames(payloads);
      const got: Uint8Array[] = [];
      let invalid = 0;
      const decoder = new FrameDecoder({ frame: (p) => got.push(p.slice()), invalid: () => invalid++ }, 300);
      for (let pos = 0; pos < stream.length; ) {
        const size = rng.pick([1, 2, 3, 4, 5, rng.range(1, 64), rng.range(1, 2000)]);
        decoder.push(stream.subarray(pos, pos + size));
        pos += size;
      }
      expect(invalid).toBe(0);
      expect(decoder.partial).toBe(false);
      expect(got.map((p) => hex(p, 1000))).toEqual(payloads.map((p) => hex(p, 1000)));
    }
  });

  test.each(SEEDS)("never throws on random bytes in random chunks, reports a bad length once and then emits nothing for seed %i", (seed) => {
    const rng = new Rng(seed ^ 0xdecaf);
    const failures: string[] = [];
    for (let round = 0; round < 500; round++) {
      const max = rng.pick([1, 16, 1024, 1 << 20]);
      // Mostly random bytes; sometimes valid frames with random bytes mixed in.
      const stream =
        rng.chance(0.5)
          ? rng.bytes(rng.int(600))
          : new Uint8Array([...encodeFrames([rng.bytes(rng.range(1, Math.min(max, 50)))]), ...rng.bytes(rng.int(40)), ...encodeFrames([rng.bytes(rng.range(1, 30))])]);
      const events: string[] = [];
      const decoder = new FrameDecoder(
        {
          frame: (p) => events.push(p.length > 0 && p.length <= max ? "frame" : `frame of bad length ${p.length}`),
          invalid: (reason, length) => events.push(`invalid ${reason} ${length}`),
        },
        max,
      );
      try {
        for (let pos = 0; pos < stream.length; ) {
          const size = rng.range(1, 100);
          decoder.push(stream.subarray(pos, pos + size));
          pos += size;
        }
        decoder.push(new Uint8Array(0));
      } catch (err) {
        failures.push(`seed ${seed} round ${round}: push threw ${String(err)}`);
        continue;
      }
      const firstInvalid = events.findIndex((e) => e.startsWith("invalid"));
      if (events.some((e) => e.startsWith("frame of bad length"))) failures.push(`seed ${seed} round ${round}: ${events.join(", ")}`);
      if (firstInvalid >= 0 && firstInvalid !== events.length - 1) failures.push(`seed ${seed} round ${round}: events after invalid: ${events.join(", ")}`);
    }
    expect(failures).toEqual([]);
  });

  test("rejects a 0xFFFFFFFF length whether the header arrives whole or byte by byte, before allocating", () => {
    for (const chunks of [[lengthPrefix(0xffffffff)], [...lengthPrefix(0xffffffff)].map((b) => new Uint8Array([b]))]) {
      const events: string[] = [];
      const decoder = new FrameDecoder({ frame: () => events.push("frame"), invalid: (r, n) => events.push(`${r} ${n}`) }, 1 << 20);
      for (const c of chunks) decoder.push(c);
      decoder.push(new Uint8Array(100)); // ignored after the failure
      expect(events).toEqual(["too-large 4294967295"]);
    }
  });

  test("rejects a length of 0", () => {
    const events: string[] = [];
    new FrameDecoder({ frame: () => events.push("frame"), invalid: (r, n) => events.push(`${r} ${n}`) }, 100).push(new Uint8Array([0, 0, 0, 0, 1, 2, 3]));
    expect(events).toEqual(["empty 0"]);
  });
});

// --- 2. a real server in this process ----------------------------------------------------

describe("MqServer under fuzzed frames", () => {
  let server: MqServer;
  let dataDir: string;
  let target: { hostname: string; port: number };
  const peers: RawPeer[] = [];
  let owner: RawPeer;
  let ownerId: number;
  let fuzzer: RawPeer;
  let fuzzerId: number;

  async function peer(broker: string): Promise<RawPeer> {
    const p = await RawPeer.connect(target);
    peers.push(p);
    expect(await p.request({ op: "hello", rid: 1, version: 1, broker, secret: RAW_SECRET })).toMatchObject({ op: "ok" });
    return p;
  }

  // The server runs in this process and logs every session at info level: keep the test
  // output readable by dropping those lines (warnings and errors still show).
  const stderrWrite = process.stderr.write;
  beforeAll(async () => {
    process.stderr.write = function (this: unknown, chunk: unknown, ...rest: unknown[]) {
      if (/^\[info\] \[(server|wire)\]/.test(String(chunk))) return true;
      return (stderrWrite as (...a: unknown[]) => boolean).call(process.stderr, chunk, ...rest);
    } as typeof process.stderr.write;
    dataDir = tmpDir("mq-fuzz-server-");
    server = await MqServer.start({ hostname: "127.0.0.1", port: 0, dataDir, defaultTopics: [], fsync: "never", fsyncIntervalMs: 50, maxMessageBytes: 1 << 20 });
    target = { hostname: "127.0.0.1", port: server.port };
    // Some state worth protecting: an id of another broker, subscribed, with a message acknowledged.
    owner = await peer("owner");
    ownerId = (await owner.request({ op: "create", rid: 2 })).id as number;
    expect(await owner.request({ op: "pub", rid: 3, id: ownerId, topic: "fz.a", data: new Uint8Array([1]) })).toMatchObject({ op: "ok", seq: 1 });
    expect(await owner.request({ op: "sub", rid: 4, id: ownerId, topics: ["fz.a"], from: "earliest" })).toMatchObject({ op: "ok" });
    const msg = await owner.next();
    expect(msg).toMatchObject({ op: "msgs", id: ownerId, topic: "fz.a", seq: 1 });
    owner.send({ op: "ack", id: ownerId, topic: "fz.a", seq: 1 });
    fuzzer = await peer("fuzzer");
    fuzzerId = (await fuzzer.request({ op: "create", rid: 2 })).id as number;
    await settled(dataDir); // lazily written cursors reach the disk (every 100 ms)
  });

  afterAll(async () => {
    for (const p of peers) p.end();
    await server?.stop();
    process.stderr.write = stderrWrite;
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  /** Frames the server must refuse without changing anything, each with the code it must answer. */
  function semanticRejects(rng: Rng, rid: number): Array<[WireMap, string]> {
    const badTopic = (problem = topicProblem) => {
      for (;;) {
        const t = rng.pick(["../escape", "..", ".", "a/b", "a\\b", "a\0b", "%2e%2e", "ａ", "a..b", ".a", "a.", "", "*", ">", "a.*", "a*", ">.a", "x".repeat(201), "é", "a b", "\u202e", "a\nb", randomString(rng, 8)]);
        if (problem(t)) return t;
      }
    };
    // sub and unsub take patterns: only what is neither a name nor a pattern is refused.
    const badFilter = () => badTopic(patternProblem);
    const foreign = rng.pick([ownerId, ownerId + 1000, 0, Number.MAX_SAFE_INTEGER]);
    return [
      [{ op: "pub", rid, id: foreign, topic: "fz.a", data: new Uint8Array([9]) }, Code.UnknownId],
      [{ op: "sub", rid, id: foreign, topics: ["fz.a", "fz.new"] }, Code.UnknownId],
      [{ op: "unsub", rid, id: foreign, topics: ["fz.a"] }, Code.UnknownId],
      [{ op: "destroy", rid, id: foreign }, Code.UnknownId],
      [{ op: "pub", rid, id: fuzzerId, topic: badTopic(), data: new Uint8Array([9]) }, Code.InvalidTopic],
      [{ op: "sub", rid, id: fuzzerId, topics: ["fz.ok", badFilter()] }, Code.InvalidTopic],
      [{ op: "unsub", rid, id: fuzzerId, topics: [badFilter()] }, Code.InvalidTopic],
      [{ op: "recv", rid, id: fuzzerId, max: 1, wait: 0 }, Code.UnknownOp],
      [{ op: "hello", rid, version: 1, broker: "fuzzer" }, Code.BadRequest],
      [{ op: "ack", rid, id: fuzzerId }, Code.BadRequest],
    ];
  }

  test("answers thousands of rejected frames each with an error, changes nothing, and still serves a normal round trip", async () => {
    const topicsBefore = (await owner.request({ op: "topics", rid: 10 })).topics;
    const filesBefore = listFiles(dataDir);

    // Non-fatal rejections on one long-lived connection, in pipelined batches.
    const rng = new Rng(0xf0220);
    let sent = 0;
    const failures: string[] = [];
    let nextRid = 1_000_000;
    while (sent < REJECTED_FRAMES) {
      const batch: Uint8Array[] = [];
      const expected = new Map<number, string>(); // rid → code, for the semantic ones
      while (batch.length < 250) {
        if (rng.chance(0.25)) {
          const [frame, code] = rng.pick(semanticRejects(rng, nextRid));
          expected.set(nextRid++, code);
          batch.push(frameOf(frame));
          continue;
        }
        const c = makeCase(rng);
        const outcome = classify(c.bytes);
        if (outcome.kind !== "rejected") continue; // fatal ones get their own connections below
        batch.push(frameOfBytes(c.bytes));
      }
      fuzzer.write(new Uint8Array(Buffer.concat(batch)));
      const replies = await fuzzer.take(batch.length, 10_000);
      if (fuzzer.closed) {
        failures.push(`the fuzzing connection was closed after ${sent} frames; last frames ${JSON.stringify(fuzzer.all.slice(-3))}`);
        break;
      }
      for (const r of replies) {
        if (r.op !== "error") failures.push(`not an error: ${JSON.stringify(r)}`);
        else if (r.code === Code.Internal) failures.push(`INTERNAL: ${String(r.message)}`);
        else if (expected.has(r.rid as number)) {
          const want = expected.get(r.rid as number);
          if (want !== r.code) failures.push(`rid ${String(r.rid)}: want ${want}, got ${String(r.code)} ${String(r.message)}`);
          expected.delete(r.rid as number);
        }
      }
      if (expected.size > 0) failures.push(`no answer for rids ${[...expected.keys()].slice(0, 5).join(", ")}`);
      sent += batch.length;
      if (failures.length > 0) break;
    }
    expect(failures.slice(0, 10)).toEqual([]);
    expect(sent).toBe(REJECTED_FRAMES);

    // Fatal ones: undecodable bodies, bad lengths and a first frame that is not hello, each on its own connection.
    const fatal: Array<{ bytes: Uint8Array; hello: boolean; code: string }> = [
      { bytes: lengthPrefix(0xffffffff), hello: true, code: Code.FrameTooLarge },
      { bytes: lengthPrefix((1 << 20) + 64 * 1024 + 1), hello: true, code: Code.FrameTooLarge },
      { bytes: lengthPrefix(0), hello: true, code: Code.BadRequest },
      { bytes: frameOf({ op: "create", rid: 5 }), hello: false, code: Code.BadRequest },
      { bytes: frameOf({ op: "hello", rid: 5, version: 99, broker: "x" }), hello: false, code: Code.VersionMismatch },
      { bytes: frameOf({ op: "hello", rid: 5, version: 1 }), hello: false, code: Code.BadRequest },
      ...HOSTILE_CBOR.filter(([, b]) => classify(b).kind === "fatal").map(([, b]) => ({ bytes: frameOfBytes(b), hello: true, code: Code.BadRequest })),
    ];
    while (fatal.length < 120) {
      const c = makeCase(rng);
      if (c.bytes.length > 0 && classify(c.bytes).kind === "fatal") fatal.push({ bytes: frameOfBytes(c.bytes), hello: rng.chance(0.8), code: Code.BadRequest });
    }
    for (let i = 0; i < fatal.length; i += 20) {
      await Promise.all(
        fatal.slice(i, i + 20).map(async (f, j) => {
          const p = f.hello ? await peer(`fatal-${i + j}`) : await RawPeer.connect(target);
          peers.push(p);
          p.write(f.bytes);
          const r = await p.next(5000);
          const closed = await p.waitClosed(5000);
          if (!r || r.op !== "error" || r.code !== f.code || !closed) failures.push(`fatal case ${i + j} (${hex(f.bytes)}): got ${JSON.stringify(r)}, closed ${closed}`);
        }),
      );
    }
    expect(failures.slice(0, 10)).toEqual([]);

    // Nothing changed, and nobody else noticed.
    expect(fuzzer.closed).toBe(false);
    expect((await fuzzer.request({ op: "topics", rid: 11 })).topics).toEqual(topicsBefore);
    expect((await owner.request({ op: "topics", rid: 12 })).topics).toEqual(topicsBefore);
    // Each fatal case above came on a connection of a new broker identity, whose secret the
    // server bound at its hello (DATA/brokers grows by design); nothing else may change.
    const withoutBindings = (files: string[]) => files.filter((f) => !/^brokers(\.mirror)? /.test(f));
    expect(withoutBindings(await settled(dataDir))).toEqual(withoutBindings(filesBefore));

    // A normal round trip on a fresh connection.
    const fresh = await peer("after-fuzz");
    const id = (await fresh.request({ op: "create", rid: 2 })).id as number;
    expect(await fresh.request({ op: "sub", rid: 3, id, topics: ["fz.after"] })).toMatchObject({ op: "ok" });
    expect(await fresh.request({ op: "pub", rid: 4, id, topic: "fz.after", data: new Uint8Array([42]) })).toMatchObject({ op: "ok", seq: 1, subscribers: 1 });
    const delivered = await fresh.next();
    expect(delivered).toMatchObject({ op: "msgs", id, topic: "fz.after", seq: 1 });
    expect([...(delivered!.payloads as Uint8Array[])[0]!]).toEqual([42]);
  }, 60_000);
});

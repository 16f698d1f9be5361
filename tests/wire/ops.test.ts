/**
 * The table of operations (lib/wire/ops.ts) and what is derived from it: a sample of each
 * request, typed by the derived type (so tsc checks the type against the sample), carries
 * every field of its schema and passes the runtime schema after a round trip through CBOR.
 */
import { describe, expect, test } from "bun:test";
import { decode, encode } from "../../lib/wire/codec.ts";
import { capabilities, schemas } from "../../lib/wire/messages.ts";
import { opNames, ops, type Op, type RequestOf } from "../../lib/wire/ops.ts";

const b = (s: string) => new TextEncoder().encode(s);

/** Every field, optional ones included: the derived type must accept exactly these. */
const samples: { [K in Op]: Required<RequestOf<K>> } = {
  hello: { op: "hello", rid: 1, version: 1, broker: "b", secret: "s", token: "t", bufferBytes: 1024, bufferBytesPerId: 512, caps: ["pub", "sub"] },
  create: { op: "create", rid: 2 },
  pub: { op: "pub", rid: 3, id: 7, topic: "a.b", data: b("x"), msgId: "k1", headers: { k: "v" }, ttl: 30_000, delayMs: 1000, at: 1_800_000_000_000, after: "k0" },
  pubs: { op: "pubs", rid: 4, id: 7, topic: "a.b", payloads: [b("x"), b("y")], msgIds: ["k1", "k2"], idPrefix: "p:", idFrom: 1, headers: [{ k: "v" }, {}], ttl: 30_000, delayMs: 1000, at: 1_800_000_000_000, after: "k0" },
  sub: { op: "sub", rid: 5, id: 7, topics: ["a", "b.*"], from: "earliest", since: 1_700_000_000_000, group: "workers", maxDeliver: 3, deadLetter: "a.dead" },
  unsub: { op: "unsub", rid: 6, id: 7, topics: ["a"] },
  recv: { op: "recv", rid: 7, id: 7, max: 10, wait: 100 },
  ack: { op: "ack", rid: 8, id: 7, tag: 1, count: 1, topic: "a", seq: 3, seqs: [3, 5] },
  nak: { op: "nak", rid: 12, id: 7, tag: 1, topic: "a", seqs: [4] },
  destroy: { op: "destroy", rid: 9, id: 7 },
  buffered: { op: "buffered", id: 7, topic: "a", seqs: [4, 6] },
  drained: { op: "drained" },
  topics: { op: "topics", rid: 10 },
  stats: { op: "stats", rid: 11 },
  follow: { op: "follow", rid: 13, id: 7, credits: 100, bytes: 65536 },
  credit: { op: "credit", rid: 14, id: 7, acked: 10, credits: 10, bytes: 4096 },
  unfollow: { op: "unfollow", rid: 15, id: 7 },
};

describe("the table of operations", () => {
  for (const op of opNames) {
    test(`${op}: the derived type, the runtime schema and the codec agree`, () => {
      const sample = samples[op] as Record<string, unknown>;
      expect(Object.keys(sample).filter((k) => k !== "op").sort()).toEqual(Object.keys(ops[op].request).sort());
      expect(schemas[op]).toBe(ops[op].request);
      expect(decode(encode(sample))).toEqual(sample as never);
      // Without its optional fields it is still valid; without a required one it is not.
      const required = Object.entries(ops[op].request).filter(([, t]) => !t.endsWith("?")).map(([k]) => k);
      const minimal = Object.fromEntries(Object.entries(sample).filter(([k]) => k === "op" || required.includes(k)));
      expect(decode(encode(minimal))).toEqual(minimal as never);
      for (const k of required) {
        const { [k]: _gone, ...missing } = minimal;
        expect(() => decode(encode(missing))).toThrow(`${op}: field "${k}" is missing`);
      }
    });
  }

  test("the capabilities of each hop are the ops the table says it serves, hello left out", () => {
    expect(capabilities("server")).toEqual(["create", "pub", "pubs", "sub", "unsub", "ack", "nak", "destroy", "buffered", "drained", "topics", "stats"]);
    expect(capabilities("client")).toEqual(["create", "pub", "pubs", "sub", "unsub", "recv", "ack", "nak", "destroy", "topics", "follow", "credit", "unfollow", "stats"]);
  });

  test("an op is served on the server hop only when the local broker can forward it or serves it itself", () => {
    for (const op of opNames) {
      const spec = ops[op];
      if (spec.id === "global") expect(spec.server && spec.client).toBe(true);
      if (!spec.server) expect(spec.id).toBe("local-only");
    }
  });
});

/**
 * The hot frames' encoding and decoding, per frame, cbor-x against the hand-written path
 * (lib/wire/hot-frames.ts, lib/wire/hot-decode.ts): 256 messages of 128 B per frame, as
 * `mq bench` sends them (docs/benchmarks.md, "a lean hot path"); and cbor-x's records
 * (`useRecords` with structures shared by both ends, as on one connection: each map's keys are
 * sent once, then a record tag and the values), the other compact form the issue names.
 * Bytes per frame for each.
 *     bun bench/hot-codec.ts [ROUNDS=3]
 */
import { Encoder } from "cbor-x";
import { Decoder } from "cbor-x/decode";
import { encode } from "../lib/wire/codec.ts";
import { readHotFrame } from "../lib/wire/hot-decode.ts";
import { FrameWriter, writeHotFrame } from "../lib/wire/hot-frames.ts";

const rounds = Number(process.argv[2] ?? 3);
const cborx = new Decoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true } as never);
// Records: one structures list per direction, shared by the encoder and the decoder (a connection's state).
const structures: unknown[] = [];
const recordsOut = new Encoder({ useRecords: true, structures, mapsAsObjects: true, tagUint8Array: false } as never);
const recordsIn = new Decoder({ useRecords: true, structures, mapsAsObjects: true, int64AsNumber: true } as never);
const N = 256;
const payload = () => new Uint8Array(128).fill(3);
const frames: Record<string, object> = {
  msgs: { op: "msgs", id: 5, topic: "bench", seq: 123456, times: Array.from({ length: N }, (_, i) => 1_764_000_000_000 + i), payloads: Array.from({ length: N }, payload) },
  pubs: { op: "pubs", id: 5, topic: "bench", payloads: Array.from({ length: N }, payload), idPrefix: "abc:", idFrom: 1000, rid: 77 },
  "recv reply": { messages: Array.from({ length: N }, (_, i) => ({ topic: "bench", seq: 1000 + i, time: 1_764_000_000_000 + i, data: payload() })), tag: 9, more: true, op: "ok", rid: 12 },
  ack: { op: "ack", id: 5, topic: "bench", seq: 123456 },
};

/** `v` with its byte arrays (Buffers or Uint8Arrays) as plain arrays of numbers, to compare decoded frames. */
const plain = (v: unknown): unknown =>
  v instanceof Uint8Array ? Array.from(v) : Array.isArray(v) ? v.map(plain) : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)])) : v;

/** µs per call of `fn`, over `reps` calls. */
function time(reps: number, fn: () => void): number {
  const t = performance.now();
  for (let k = 0; k < reps; k++) fn();
  return ((performance.now() - t) * 1000) / reps;
}

const w = new FrameWriter();
console.log(`load ${(await Bun.file("/proc/loadavg").text()).trim()}`);
console.log("| frame | encode: cbor-x + copy | encode: hand-written | encode: cbor-x records + copy | decode: cbor-x | decode: hand-written | decode: cbor-x records | bytes: maps / records |");
console.log("|---|---|---|---|---|---|---|---|");
for (const [name, frame] of Object.entries(frames)) {
  const reps = name === "ack" ? 100_000 : 1000;
  const bytes = encode(frame);
  recordsOut.encode(frame); // the structures are defined by the first frame of each shape
  const recordBytes = recordsOut.encode(frame);
  // Both ends hold the same structures here, so a decode reads what the encoder wrote.
  if (!Bun.deepEquals(plain(recordsIn.decode(recordBytes)), plain(frame))) throw new Error(`records: ${name} did not decode to what was encoded`);
  for (let r = 0; r < rounds; r++) {
    const generic = time(reps, () => {
      const b = encode(frame);
      w.pos = 0;
      w.ensure(b.length);
      w.buf.set(b, 0);
    });
    const hot = time(reps, () => {
      w.pos = 0;
      writeHotFrame(w, frame);
    });
    const records = time(reps, () => {
      const b = recordsOut.encode(frame);
      w.pos = 0;
      w.ensure(b.length);
      w.buf.set(b, 0);
    });
    const dGeneric = time(reps, () => cborx.decode(bytes));
    const dHot = time(reps, () => readHotFrame(bytes));
    const dRecords = time(reps, () => recordsIn.decode(recordBytes));
    console.log(`| ${name} | ${generic.toFixed(2)} µs | ${hot.toFixed(2)} µs | ${records.toFixed(2)} µs | ${dGeneric.toFixed(2)} µs | ${dHot.toFixed(2)} µs | ${dRecords.toFixed(2)} µs | ${bytes.length} / ${recordBytes.length} |`);
  }
}

/**
 * The hot frames' encoding and decoding, per frame, cbor-x against the hand-written path
 * (lib/wire/hot-frames.ts, lib/wire/hot-decode.ts): 256 messages of 128 B per frame, as
 * `mq bench` sends them (docs/benchmarks.md, "a lean hot path").
 *     bun bench/hot-codec.ts [ROUNDS=3]
 */
import { Decoder } from "cbor-x/decode";
import { encode } from "../lib/wire/codec.ts";
import { readHotFrame } from "../lib/wire/hot-decode.ts";
import { FrameWriter, writeHotFrame } from "../lib/wire/hot-frames.ts";

const rounds = Number(process.argv[2] ?? 3);
const cborx = new Decoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true } as never);
const N = 256;
const payload = () => new Uint8Array(128).fill(3);
const frames: Record<string, object> = {
  msgs: { op: "msgs", id: 5, topic: "bench", seq: 123456, times: Array.from({ length: N }, (_, i) => 1_764_000_000_000 + i), payloads: Array.from({ length: N }, payload) },
  pubs: { op: "pubs", id: 5, topic: "bench", payloads: Array.from({ length: N }, payload), idPrefix: "abc:", idFrom: 1000, rid: 77 },
  "recv reply": { messages: Array.from({ length: N }, (_, i) => ({ topic: "bench", seq: 1000 + i, time: 1_764_000_000_000 + i, data: payload() })), tag: 9, more: true, op: "ok", rid: 12 },
  ack: { op: "ack", id: 5, topic: "bench", seq: 123456 },
};

/** µs per call of `fn`, over `reps` calls. */
function time(reps: number, fn: () => void): number {
  const t = performance.now();
  for (let k = 0; k < reps; k++) fn();
  return ((performance.now() - t) * 1000) / reps;
}

const w = new FrameWriter();
console.log(`load ${(await Bun.file("/proc/loadavg").text()).trim()}`);
console.log("| frame | encode: cbor-x + copy | encode: hand-written | decode: cbor-x | decode: hand-written |");
console.log("|---|---|---|---|---|");
for (const [name, frame] of Object.entries(frames)) {
  const reps = name === "ack" ? 100_000 : 1000;
  const bytes = encode(frame);
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
    const dGeneric = time(reps, () => cborx.decode(bytes));
    const dHot = time(reps, () => readHotFrame(bytes));
    console.log(`| ${name} | ${generic.toFixed(2)} µs | ${hot.toFixed(2)} µs | ${dGeneric.toFixed(2)} µs | ${dHot.toFixed(2)} µs |`);
  }
}

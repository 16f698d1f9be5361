import { describe, expect, test } from "bun:test";
import { encodeFrames, FrameDecoder, HEADER_BYTES, socketBytes } from "../../lib/wire/frame.ts";

type Invalid = { reason: "empty" | "too-large"; length: number };

/** A decoder whose sink records what it emits; frames are copied (they may be views into the chunk). */
function recorder(maxFrameBytes = 1024) {
  const frames: Uint8Array[] = [];
  const invalid: Invalid[] = [];
  const decoder = new FrameDecoder(
    {
      frame: (payload) => frames.push(payload.slice()),
      invalid: (reason, length) => invalid.push({ reason, length }),
    },
    maxFrameBytes,
  );
  return { decoder, frames, invalid };
}

function bytes(...values: number[]): Uint8Array {
  return new Uint8Array(values);
}

/** A payload of `n` bytes counting up from `start`, so that a misplaced byte shows. */
function payload(n: number, start = 1): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
}

/** A raw 4-byte big-endian header claiming `length`, with no body. */
function header(length: number): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  new DataView(out.buffer).setUint32(0, length);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/**
 * Feeds `input` one byte at a time (each byte in a fresh buffer, as a socket would hand
 * it over) and checks the frames emitted and whether a frame is left half-received.
 */
function expectByteByByte(input: Uint8Array, expected: Uint8Array[], partial: boolean, maxFrameBytes = 1024) {
  const { decoder, frames, invalid } = recorder(maxFrameBytes);
  for (let i = 0; i < input.length; i++) decoder.push(input.slice(i, i + 1));
  expect(frames).toEqual(expected);
  expect(invalid).toEqual([]);
  expect(decoder.partial).toBe(partial);
}

/** Pushes `input` cut at `cuts` (ascending offsets), each piece copied into its own buffer. */
function pushSplit(decoder: FrameDecoder, input: Uint8Array, cuts: number[]) {
  let from = 0;
  for (const cut of [...cuts, input.length]) {
    decoder.push(input.slice(from, cut));
    from = cut;
  }
}

const three = [payload(1, 10), payload(7, 20), payload(3, 30)];
const threeFrames = encodeFrames(three);

describe("FrameDecoder byte by byte", () => {
  test("FrameDecoder emits one frame fed one byte at a time", () => {
    expectByteByByte(encodeFrames([payload(5)]), [payload(5)], false);
  });

  test("FrameDecoder emits three frames fed one byte at a time", () => {
    expectByteByByte(threeFrames, three, false);
  });

  test("FrameDecoder reports a partial frame when the input stops inside the header", () => {
    expectByteByByte(concat(encodeFrames([payload(2)]), header(5).subarray(0, 3)), [payload(2)], true);
  });

  test("FrameDecoder reports a partial frame when the input stops after the header", () => {
    expectByteByByte(concat(encodeFrames([payload(2)]), header(5)), [payload(2)], true);
  });

  test("FrameDecoder reports a partial frame when the input stops inside the body", () => {
    const whole = encodeFrames([payload(2), payload(9)]);
    expectByteByByte(whole.subarray(0, whole.length - 1), [payload(2)], true);
  });

  test("FrameDecoder is not partial after pushing nothing", () => {
    expectByteByByte(new Uint8Array(0), [], false);
  });

  test("FrameDecoder ignores empty chunks between bytes", () => {
    const { decoder, frames } = recorder();
    for (const b of threeFrames) {
      decoder.push(new Uint8Array(0));
      decoder.push(bytes(b));
    }
    expect(frames).toEqual(three);
    expect(decoder.partial).toBe(false);
  });
});

describe("FrameDecoder split points", () => {
  test("FrameDecoder emits the same three frames when the buffer is split at every offset", () => {
    for (let cut = 0; cut <= threeFrames.length; cut++) {
      const { decoder, frames, invalid } = recorder();
      pushSplit(decoder, threeFrames, [cut]);
      expect({ cut, frames }).toEqual({ cut, frames: three });
      expect(invalid).toEqual([]);
      expect(decoder.partial).toBe(false);
    }
  });

  test("FrameDecoder emits the same three frames when the buffer is split at every pair of offsets", () => {
    for (let a = 0; a <= threeFrames.length; a++) {
      for (let b = a; b <= threeFrames.length; b++) {
        const { decoder, frames, invalid } = recorder();
        pushSplit(decoder, threeFrames, [a, b]);
        expect({ a, b, frames }).toEqual({ a, b, frames: three });
        expect(invalid).toEqual([]);
        expect(decoder.partial).toBe(false);
      }
    }
  });

  test("FrameDecoder emits frames as soon as they are complete, not at the end", () => {
    const { decoder, frames } = recorder();
    const firstEnd = HEADER_BYTES + three[0]!.length;
    decoder.push(threeFrames.subarray(0, firstEnd));
    expect(frames).toEqual([three[0]!]);
    decoder.push(threeFrames.subarray(firstEnd, firstEnd + 2));
    expect(frames).toEqual([three[0]!]);
    expect(decoder.partial).toBe(true);
    decoder.push(threeFrames.subarray(firstEnd + 2));
    expect(frames).toEqual(three);
  });

  // Edge cases named after the chunk boundaries they exercise. Each row: the chunks as
  // pushed, the frames expected, and whether a frame is left half-received.
  const f5 = payload(5, 50);
  const f2 = payload(2, 90);
  const h5 = header(5);
  const cases: Array<{ name: string; chunks: Uint8Array[]; frames: Uint8Array[]; partial: boolean }> = [
    // Header split 1/3: only the top length byte arrives first.
    { name: "header split 1/3", chunks: [h5.subarray(0, 1), concat(h5.subarray(1), f5)], frames: [f5], partial: false },
    // Header split 2/2.
    { name: "header split 2/2", chunks: [h5.subarray(0, 2), concat(h5.subarray(2), f5)], frames: [f5], partial: false },
    // Header split 3/1.
    { name: "header split 3/1", chunks: [h5.subarray(0, 3), concat(h5.subarray(3), f5)], frames: [f5], partial: false },
    // The header alone, then the body alone.
    { name: "header then body", chunks: [h5, f5], frames: [f5], partial: false },
    // A header split 2/2 whose second half arrives with only part of the body.
    { name: "header split 2/2 then body split", chunks: [h5.subarray(0, 2), concat(h5.subarray(2), f5.subarray(0, 2)), f5.subarray(2)], frames: [f5], partial: false },
    // A frame ending exactly at a chunk end: nothing is left over.
    { name: "frame ends at chunk end", chunks: [encodeFrames([f5])], frames: [f5], partial: false },
    // A frame ending at a chunk end, the next one starting in the next chunk.
    { name: "frame ends at chunk end, next in next chunk", chunks: [encodeFrames([f5]), encodeFrames([f2])], frames: [f5, f2], partial: false },
    // Two whole frames in one chunk.
    { name: "two frames in one chunk", chunks: [encodeFrames([f5, f2])], frames: [f5, f2], partial: false },
    // Two whole frames and the first byte of a third header in one chunk.
    { name: "two frames and 1 header byte", chunks: [concat(encodeFrames([f5, f2]), h5.subarray(0, 1))], frames: [f5, f2], partial: true },
    // The body of one frame and the whole of the next in one chunk (slow path then fast path).
    { name: "body tail and a whole frame", chunks: [concat(h5, f5.subarray(0, 1)), concat(f5.subarray(1), encodeFrames([f2]))], frames: [f5, f2], partial: false },
    // A body spanning three chunks.
    { name: "body over three chunks", chunks: [concat(h5, f5.subarray(0, 1)), f5.subarray(1, 3), f5.subarray(3)], frames: [f5], partial: false },
    // A frame of the largest accepted size (maxFrameBytes = 8 in this table).
    { name: "frame of exactly maxFrameBytes", chunks: [encodeFrames([payload(8)])], frames: [payload(8)], partial: false },
  ];

  test.each(cases)("FrameDecoder handles $name", ({ chunks, frames: expected, partial }) => {
    const { decoder, frames, invalid } = recorder(8);
    for (const c of chunks) decoder.push(c.slice());
    expect(frames).toEqual(expected);
    expect(invalid).toEqual([]);
    expect(decoder.partial).toBe(partial);
  });

  test("FrameDecoder hands frames of a whole chunk out as views of that chunk", () => {
    // Documented: the payload may share memory with the chunk, so the sink must copy to keep it.
    const chunk = encodeFrames([payload(4)]);
    const seen: Uint8Array[] = [];
    new FrameDecoder({ frame: (p) => seen.push(p), invalid: () => {} }, 1024).push(chunk);
    expect(seen[0]!.buffer).toBe(chunk.buffer);
    expect(seen[0]).toEqual(payload(4));
  });
});

describe("FrameDecoder bad lengths", () => {
  test("FrameDecoder rejects a length of 0", () => {
    const { decoder, frames, invalid } = recorder();
    decoder.push(header(0));
    expect(invalid).toEqual([{ reason: "empty", length: 0 }]);
    expect(frames).toEqual([]);
    expect(decoder.partial).toBe(false);
  });

  test("FrameDecoder rejects a length of 0 whose header is split", () => {
    const { decoder, invalid } = recorder();
    decoder.push(bytes(0, 0));
    expect(invalid).toEqual([]);
    decoder.push(bytes(0, 0));
    expect(invalid).toEqual([{ reason: "empty", length: 0 }]);
  });

  test("FrameDecoder rejects a length above maxFrameBytes and accepts one equal to it", () => {
    const ok = recorder(16);
    ok.decoder.push(encodeFrames([payload(16)]));
    expect(ok.frames).toEqual([payload(16)]);
    expect(ok.invalid).toEqual([]);

    const bad = recorder(16);
    bad.decoder.push(encodeFrames([payload(17)]));
    expect(bad.invalid).toEqual([{ reason: "too-large", length: 17 }]);
    expect(bad.frames).toEqual([]);
  });

  test("FrameDecoder rejects a length above maxFrameBytes from the header alone, before the body arrives", () => {
    // Rejected on the 4 header bytes: the decoder never waits for (or allocates) the body.
    const { decoder, invalid } = recorder(1024);
    decoder.push(header(1025));
    expect(invalid).toEqual([{ reason: "too-large", length: 1025 }]);
    expect(decoder.partial).toBe(false);
  });

  test("FrameDecoder rejects a length of 0xFFFFFFFF without allocating it", () => {
    // A 4 GiB allocation would throw or stall; the length must be read as unsigned, not -1.
    for (const cuts of [[], [1], [2], [3]]) {
      const { decoder, frames, invalid } = recorder(1024 * 1024);
      pushSplit(decoder, header(0xffffffff), cuts);
      expect(invalid).toEqual([{ reason: "too-large", length: 0xffffffff }]);
      expect(frames).toEqual([]);
      expect(decoder.partial).toBe(false);
    }
  });

  test("FrameDecoder reads lengths with the top bit set as unsigned", () => {
    const { decoder, invalid } = recorder(0x7fffffff);
    decoder.push(header(0x80000000));
    expect(invalid).toEqual([{ reason: "too-large", length: 0x80000000 }]);
  });

  test("FrameDecoder emits the frames before a bad length and nothing after it", () => {
    const { decoder, frames, invalid } = recorder(16);
    decoder.push(concat(encodeFrames([payload(3)]), header(17), encodeFrames([payload(2)])));
    decoder.push(encodeFrames([payload(4)]));
    decoder.push(header(0));
    expect(frames).toEqual([payload(3)]);
    expect(invalid).toEqual([{ reason: "too-large", length: 17 }]);
  });

  test("FrameDecoder emits nothing after a length of 0, even fed byte by byte", () => {
    const { decoder, frames, invalid } = recorder();
    const input = concat(encodeFrames([payload(1)]), header(0), encodeFrames([payload(2), payload(3)]));
    for (let i = 0; i < input.length; i++) decoder.push(input.slice(i, i + 1));
    expect(frames).toEqual([payload(1)]);
    expect(invalid).toEqual([{ reason: "empty", length: 0 }]);
  });
});

describe("encodeFrames", () => {
  test("encodeFrames writes a big-endian length before each payload", () => {
    expect(encodeFrames([bytes(7), bytes(8, 9)])).toEqual(bytes(0, 0, 0, 1, 7, 0, 0, 0, 2, 8, 9));
  });

  test("encodeFrames writes all four length bytes", () => {
    const big = payload(0x010203);
    const out = encodeFrames([big]);
    expect(out.subarray(0, 4)).toEqual(bytes(0, 1, 2, 3));
    expect(out.length).toBe(4 + 0x010203);
  });

  test("encodeFrames of no payloads is empty", () => {
    expect(encodeFrames([])).toEqual(new Uint8Array(0));
  });

  test("encodeFrames round-trips through FrameDecoder", () => {
    const payloads = [payload(1), payload(255), payload(256), payload(70_000), payload(3)];
    const { decoder, frames, invalid } = recorder(100_000);
    decoder.push(encodeFrames(payloads));
    expect(frames).toEqual(payloads);
    expect(invalid).toEqual([]);
    expect(decoder.partial).toBe(false);
  });
});

describe("socketBytes", () => {
  test("socketBytes gives a Buffer's bytes as a plain Uint8Array view of the same memory, and a Uint8Array as it is", () => {
    const backing = Buffer.from("..hello..");
    const read = backing.subarray(2, 7); // a Buffer, as a Bun socket's data handler gets
    const bytes = socketBytes(read);
    expect(bytes.constructor).toBe(Uint8Array);
    expect(Buffer.from(bytes).toString()).toBe("hello");
    backing[2] = 0x48; // a view, not a copy
    expect(bytes[0]).toBe(0x48);
    const plain = new Uint8Array([1, 2, 3]);
    expect(socketBytes(plain)).toBe(plain);
  });

  test("frames decoded from socketBytes of a Buffer are plain Uint8Arrays, as those handed over in memory", () => {
    const frames: Uint8Array[] = [];
    const decoder = new FrameDecoder({ frame: (p) => frames.push(p), invalid: () => {} }, 1024);
    decoder.push(socketBytes(Buffer.from(encodeFrames([Uint8Array.of(1, 2), Uint8Array.of(3)]))));
    expect(frames.map((f) => [f.constructor, [...f]])).toEqual([[Uint8Array, [1, 2]], [Uint8Array, [3]]]);
  });
});

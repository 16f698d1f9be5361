/**
 * Length-prefixed framing: a 4-byte unsigned big-endian length N, then N bytes.
 * This file knows only bytes; CBOR lives in codec.ts.
 */

export const HEADER_BYTES = 4;

export interface FrameSink {
  /** A complete frame body. It may be a view into the pushed chunk: copy it to keep it past this call. */
  frame(payload: Uint8Array): void;
  /** The stream is unusable (bad length); no more frames will be emitted. */
  invalid(reason: "empty" | "too-large", length: number): void;
}

/**
 * Incremental frame decoder: feed it chunks of any size with `push`; it emits
 * whole frames to the sink. The body is copied only when a frame spans chunks;
 * a length of 0 or above `maxFrameBytes` is rejected before anything is allocated.
 */
export class FrameDecoder {
  private readonly header = new Uint8Array(HEADER_BYTES);
  private headerFill = 0;
  private body: Uint8Array | null = null;
  private bodyFill = 0;
  private failed = false;

  constructor(
    private readonly sink: FrameSink,
    /** May be raised or lowered between pushes (a peer announced another limit). */
    public maxFrameBytes: number,
  ) {}

  /** True while part of a frame has been received and the rest has not. */
  get partial(): boolean {
    return this.headerFill > 0 || this.body !== null;
  }

  push(chunk: Uint8Array): void {
    let pos = 0;
    while (pos < chunk.length && !this.failed) {
      if (this.body === null) {
        // Fast path: a whole header and body inside this chunk need no copy.
        if (this.headerFill === 0 && chunk.length - pos >= HEADER_BYTES) {
          const length = readLength(chunk, pos);
          if (!this.accept(length)) return;
          if (chunk.length - pos - HEADER_BYTES >= length) {
            pos += HEADER_BYTES;
            this.sink.frame(chunk.subarray(pos, pos + length));
            pos += length;
            continue;
          }
          pos += HEADER_BYTES;
          this.body = new Uint8Array(length);
          this.bodyFill = 0;
          continue;
        }
        // Slow path: the header itself is split across chunks.
        while (this.headerFill < HEADER_BYTES && pos < chunk.length) this.header[this.headerFill++] = chunk[pos++]!;
        if (this.headerFill < HEADER_BYTES) return;
        this.headerFill = 0;
        const length = readLength(this.header, 0);
        if (!this.accept(length)) return;
        this.body = new Uint8Array(length);
        this.bodyFill = 0;
        continue;
      }
      const take = Math.min(this.body.length - this.bodyFill, chunk.length - pos);
      this.body.set(chunk.subarray(pos, pos + take), this.bodyFill);
      this.bodyFill += take;
      pos += take;
      if (this.bodyFill === this.body.length) {
        const done = this.body;
        this.body = null;
        this.sink.frame(done);
      }
    }
  }

  private accept(length: number): boolean {
    if (length === 0) {
      this.failed = true;
      this.sink.invalid("empty", length);
      return false;
    }
    if (length > this.maxFrameBytes) {
      this.failed = true;
      this.sink.invalid("too-large", length);
      return false;
    }
    return true;
  }
}

function readLength(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) >>> 0) + (bytes[at + 1]! << 16) + (bytes[at + 2]! << 8) + bytes[at + 3]!;
}

/**
 * The bytes of a socket read as a plain Uint8Array (a view, no copy). Bun reads into a `Buffer`,
 * whose views are Buffers too, while frames handed over in memory and the store's records are
 * Uint8Arrays: payloads of both kinds met in the same code (the decoder, the store's record
 * writer) made the JIT throw away what it had compiled for one kind (docs/benchmarks.md).
 * Used by the server and the local broker; the client library keeps Bun's Buffers.
 */
export function socketBytes(chunk: Uint8Array): Uint8Array {
  return chunk.constructor === Uint8Array ? chunk : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** Concatenates payloads into one buffer of frames: one allocation, one write. */
export function encodeFrames(payloads: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of payloads) total += HEADER_BYTES + p.length;
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of payloads) {
    const n = p.length;
    out[pos] = n >>> 24;
    out[pos + 1] = (n >>> 16) & 0xff;
    out[pos + 2] = (n >>> 8) & 0xff;
    out[pos + 3] = n & 0xff;
    out.set(p, pos + HEADER_BYTES);
    pos += HEADER_BYTES + n;
  }
  return out;
}

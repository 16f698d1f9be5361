/**
 * A hand-written CBOR encoder for the frames on the hot path — deliveries (`msgs` to a local
 * broker, `delivery` pushed to a client), publishes
 * (`pub`, `pubs`), recv requests, acks, a follow's `credit` and `ok` replies (a recv's messages, a publish's seqs) — writing
 * straight into one reusable output buffer (`FrameWriter`) instead of cbor-x's per-frame
 * result that is then copied again. It writes exactly what the generic encoder (codec.ts
 * `encode`) writes for these maps, byte for byte: keys in the object's order, minimal heads,
 * integers of 2^32 or more as uint64 (the `integersAsUints` rule), byte strings untagged.
 *
 * It handles only what it knows: a frame whose op is not listed, a field not listed for the
 * op, or a value other than a safe unsigned integer, string, boolean, Uint8Array, array or
 * plain object makes `writeHotFrame` return false, and the caller uses the generic encoder.
 * So a field added to a hot frame later is never lost; it only costs the fast path until it
 * is listed here.
 */
import { HEADER_BYTES } from "./frame.ts";

/** The fields each hot frame may carry (any subset, any order); anything else takes the generic encoder. */
const HOT_FIELDS: Record<string, ReadonlySet<string>> = {
  msgs: new Set(["op", "id", "topic", "seq", "times", "payloads", "more", "lost", "headers", "expires", "explicit", "ids"]),
  // Push delivery to a client: `messages` as in a recv reply; `code` and `message` when the follow ended.
  delivery: new Set(["op", "id", "messages", "code", "message"]),
  // `after`: a batch chained behind the one before it (the library's, when several are in flight).
  pub: new Set(["op", "rid", "id", "topic", "data", "msgId", "headers", "ttl", "after"]),
  pubs: new Set(["op", "rid", "id", "topic", "payloads", "msgIds", "idPrefix", "idFrom", "headers", "ttl", "after"]),
  ack: new Set(["op", "rid", "id", "tag", "count", "topic", "seq", "seqs"]),
  recv: new Set(["op", "rid", "id", "max", "wait"]),
  // A client's ack of a follow's pushed messages, one per batch it read (lib/client/follow.ts).
  credit: new Set(["op", "rid", "id", "acked", "credits", "bytes"]),
  // Replies to recv (messages, tag, more, away), pub and pubs (topic, seq(s), subscribers, created, duplicate(s)), acks (nothing).
  ok: new Set(["op", "rid", "messages", "tag", "more", "away", "topic", "seq", "seqs", "subscribers", "created", "duplicate", "duplicates"]),
};

/** Nesting the fast path follows: frame → array of messages → message → headers map → value. */
const MAX_DEPTH = 4;
/** A connection keeps its output buffer up to this size between flushes; a larger one (a burst) goes to the spares below. */
const KEEP_BYTES = 64 * 1024;
const INITIAL_BYTES = 4 * 1024;
/**
 * The buffers of bursts, given back at `reset` for the next burst of any writer in this
 * thread: a frame above KEEP_BYTES (a recv reply or a `pubs` of a few hundred messages) then
 * costs neither the growth from 4 KiB by doubling (allocation, zeroing, copies) nor a new
 * big buffer each time. Bounded: MAX_SPARES buffers of up to MAX_SPARE_BYTES.
 */
const spares: Uint8Array[] = [];
const MAX_SPARES = 4;
const MAX_SPARE_BYTES = 1024 * 1024;

/** A spare of at least `bytes`, taken out of the pool; undefined when none is that big. */
function takeSpare(bytes: number): Uint8Array | undefined {
  for (let i = spares.length - 1; i >= 0; i--) {
    const spare = spares[i]!;
    if (spare.length < bytes) continue;
    spares[i] = spares[spares.length - 1]!;
    spares.pop();
    return spare;
  }
  return undefined;
}

/** A growing byte buffer frames are encoded into; `reset` after the bytes are handed on. */
export class FrameWriter {
  buf: Uint8Array;
  pos = 0;
  /** During a burst: the buffer of KEEP_BYTES or less it grew out of, used again after it. */
  private home: Uint8Array | undefined;

  constructor(initialBytes = INITIAL_BYTES) {
    this.buf = new Uint8Array(initialBytes);
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let next = need > KEEP_BYTES ? takeSpare(need) : undefined;
    if (next === undefined) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      next = new Uint8Array(size);
    }
    next.set(this.buf.subarray(0, this.pos));
    if (this.buf.length <= KEEP_BYTES && next.length > KEEP_BYTES) this.home = this.buf;
    this.buf = next;
  }

  /**
   * Appends one frame with its 4-byte length prefix (frame.ts): by the fast path when the
   * frame is a hot one, else the bytes of `generic(frame)` (which may throw: nothing is then appended).
   */
  frame(frame: object, generic: (frame: object) => Uint8Array): void {
    const start = this.pos;
    this.ensure(HEADER_BYTES);
    this.pos += HEADER_BYTES;
    if (!writeHotFrame(this, frame)) {
      this.pos = start;
      const payload = generic(frame);
      this.ensure(HEADER_BYTES + payload.length);
      this.buf.set(payload, start + HEADER_BYTES);
      this.pos = start + HEADER_BYTES + payload.length;
    }
    const n = this.pos - start - HEADER_BYTES;
    const buf = this.buf;
    buf[start] = n >>> 24;
    buf[start + 1] = (n >>> 16) & 0xff;
    buf[start + 2] = (n >>> 8) & 0xff;
    buf[start + 3] = n & 0xff;
  }

  /** Empties the buffer (its bytes must have been copied or written out). */
  reset(): void {
    this.pos = 0;
    if (this.buf.length <= KEEP_BYTES) return;
    if (this.buf.length <= MAX_SPARE_BYTES && spares.length < MAX_SPARES) spares.push(this.buf);
    this.buf = this.home ?? new Uint8Array(INITIAL_BYTES);
    this.home = undefined;
  }
}

/** Where one CBOR item was written ahead of the frame that carries it: bytes [start, end) of `block`. */
export interface Encoded {
  block: Uint8Array;
  start: number;
  end: number;
}

/**
 * A frame field whose items were written as CBOR before the frame (`ItemBlocks`): the frame
 * writes it as an array of those bytes, a run of items next to each other in one block in one
 * copy; codec.ts's `encode` decodes them back for cbor-x. The items must not change meanwhile.
 */
export class EncodedArray {
  constructor(readonly items: readonly Encoded[]) {}
}

/** Bytes of the block the library's publishes are copied into (a larger one gets a block of its own). */
export const ITEM_BLOCK_BYTES = 64 * 1024;
/** Blocks whose items were all released, kept for the next ones (per ItemBlocks). */
const MAX_SPARE_BLOCKS = 4;

/** A block of `ItemBlocks`, and how many of the items written into it are still held. */
class ItemBlock extends FrameWriter {
  live = 0;
}

/** An item written by `ItemBlocks`: where, and the block to give it back to (null: one of its own, or given back). */
export interface HeldItem extends Encoded {
  blockOf: ItemBlock | null;
}

/**
 * Byte strings written as CBOR items when they are given, ahead of the frame that will carry
 * them (the library's publishes: the caller may reuse its buffer at once, so each payload is
 * copied at the call anyway). They go one after the other into a shared block, not into a
 * buffer each, and a batch's payloads are then one copy into the frame. A block whose items
 * were all released (`release`: their frames will not be sent again) is written over.
 */
export class ItemBlocks {
  private current = new ItemBlock(0);
  private readonly spares: ItemBlock[] = [];

  /**
   * Writes `data` as a CBOR byte string and sets where on `into`. `alone`: into bytes of its
   * own, not a shared block (an item that may be held long: see `detach`).
   */
  bytes(data: Uint8Array, into: HeldItem, alone = false): void {
    const need = data.length + 9;
    let w = this.current;
    if (alone || w.pos + need > w.buf.length) {
      if (alone || need > ITEM_BLOCK_BYTES / 4) {
        const own = new FrameWriter(need);
        into.block = own.buf;
        into.start = 0;
        writeBytes(own, data);
        into.end = own.pos;
        into.blockOf = null;
        return;
      }
      w = this.current = this.spares.pop() ?? new ItemBlock(ITEM_BLOCK_BYTES);
    }
    into.block = w.buf;
    into.start = w.pos;
    writeBytes(w, data);
    into.end = w.pos;
    into.blockOf = w;
    w.live++;
  }

  /**
   * Moves `items` out of the shared blocks into one buffer of their own. A batch held long (sent
   * again while the link is down) would otherwise keep whole blocks, with everything published
   * to other topics meanwhile, from being written over.
   */
  detach(items: readonly HeldItem[]): void {
    let bytes = 0;
    for (const item of items) if (item.blockOf !== null) bytes += item.end - item.start;
    if (bytes === 0) return;
    const own = new Uint8Array(bytes);
    let pos = 0;
    for (const item of items) {
      if (item.blockOf === null) continue;
      const n = item.end - item.start;
      own.set(item.block.subarray(item.start, item.end), pos);
      this.release(item);
      item.block = own;
      item.start = pos;
      item.end = pos += n;
    }
  }

  /** The item's bytes are not needed any more; a second release of it does nothing. */
  release(item: HeldItem): void {
    const block = item.blockOf;
    if (block === null) return;
    item.blockOf = null;
    if (--block.live > 0) return;
    if (block === this.current) block.pos = 0;
    else if (this.spares.length < MAX_SPARE_BLOCKS) {
      block.pos = 0;
      this.spares.push(block);
    }
  }
}

/** The bytes of a byte string written by `ItemBlocks` (a view, without its CBOR head). */
export function bytesOfItem(item: Encoded): Uint8Array {
  const info = item.block[item.start]! & 31;
  const head = info < 24 ? 1 : info === 24 ? 2 : info === 25 ? 3 : info === 26 ? 5 : 9;
  return item.block.subarray(item.start + head, item.end);
}

/** An EncodedArray: its runs of consecutive items copied whole. */
function writeEncodedArray(w: FrameWriter, items: readonly Encoded[]): void {
  writeHead(w, 4, items.length);
  for (let i = 0; i < items.length; ) {
    const first = items[i]!;
    let end = first.end;
    let j = i + 1;
    for (; j < items.length && items[j]!.block === first.block && items[j]!.start === end; j++) end = items[j]!.end;
    const n = end - first.start;
    w.ensure(n);
    w.buf.set(first.block.subarray(first.start, end), w.pos);
    w.pos += n;
    i = j;
  }
}

/** Not a string key: for-in, Object.keys and cbor-x do not see it, so the message encodes as before. */
const ENCODED = Symbol("mq.encoded");
/**
 * Messages up to this many payload bytes are encoded once; above it the payload copy is most
 * of the work anyway, and the block would hold a second copy of a big payload.
 */
export const ENCODE_ONCE_MAX_BYTES = 1024;

/**
 * Writes the CBOR of each of `messages` (plain objects, as the local broker buffers them) once,
 * into one block, and keeps on each message where: a frame that carries it later (a `delivery`,
 * a recv reply) copies those bytes, a run of consecutive ones in one copy, instead of encoding
 * the message again. For a message pushed once for several ids of a host. The messages must
 * not change afterwards; one with a bigger payload, or that the fast path does not know, is
 * left as it is (encoded each time).
 */
export function encodeOnce(messages: readonly { data: Uint8Array }[]): void {
  encodeEachOnce(messages, false);
}

/** A message with exactly these own keys, in this order (the local broker's pushed messages without `lost`, headers or expiry). */
export interface PlainMessage {
  topic: string;
  seq: number;
  time: number;
  data: Uint8Array;
}

/**
 * `encodeOnce` for messages that are all PlainMessages (the caller knows how they were made):
 * the same bytes, written by a fixed layout — the keys as constants, the topic's bytes made
 * once per topic — instead of walking each message's keys.
 */
export function encodeOncePlain(messages: readonly PlainMessage[]): void {
  encodeEachOnce(messages, true);
}

function encodeEachOnce(messages: readonly { data: Uint8Array }[], plain: boolean): void {
  let bytes = 0;
  for (const m of messages) bytes += m.data.length <= ENCODE_ONCE_MAX_BYTES ? m.data.length + 64 : 0;
  if (bytes === 0) return;
  const w = new FrameWriter(bytes);
  // Where each message's bytes start and end in the block, in the order of `written`.
  const written: object[] = [];
  const bounds: number[] = [];
  for (const m of messages) {
    if (m.data.length > ENCODE_ONCE_MAX_BYTES) continue;
    const start = w.pos;
    if (plain ? writePlainMessage(w, m as PlainMessage) : writeValue(w, m, 1)) {
      written.push(m);
      bounds.push(start, w.pos);
    } else w.pos = start;
  }
  // The block is final only now (writing may have grown it).
  for (let k = 0; k < written.length; k++) (written[k] as { [ENCODED]?: Encoded })[ENCODED] = { block: w.buf, start: bounds[2 * k]!, end: bounds[2 * k + 1]! };
}

/**
 * Marks a PlainMessage as one: a frame that carries it writes it by the fixed layout (as
 * `encodeOncePlain` does), not by walking its keys. The message must keep exactly its four keys
 * (a symbol key is not seen by for-in, Object.keys or cbor-x).
 */
const PLAIN = Symbol("mq.plain");
export function markPlain(message: PlainMessage): void {
  (message as { [PLAIN]?: true })[PLAIN] = true;
}

/**
 * A new PlainMessage, marked (`markPlain`) as it is made, with its `encodeOnce` slot empty: one
 * object shape from the start, no property added later. A message that `encodeOnce` gave the
 * slot to had a shape of its own, and code the JIT had compiled for the first shape (the inbox,
 * the recv reply's encoder) was thrown away at each message of the other (docs/benchmarks.md).
 */
export function plainMessage(topic: string, seq: number, time: number, data: Uint8Array): PlainMessage {
  return { topic, seq, time, data, [PLAIN]: true, [ENCODED]: undefined } as PlainMessage;
}

/** The topic whose text string `plainTopicBytes` holds (most pushes are of the topic before). */
let plainTopic: string | undefined;
let plainTopicBytes = new Uint8Array(0);

/** `m` as writeValue writes a map of its four keys; false (nothing usable written) for a number it does not take. */
function writePlainMessage(w: FrameWriter, m: PlainMessage): boolean {
  const { topic, seq, time, data } = m;
  if (!Number.isSafeInteger(seq) || seq < 0 || !Number.isSafeInteger(time) || time < 0) return false;
  if (topic !== plainTopic) {
    const t = new FrameWriter(topic.length * 3 + 9);
    writeString(t, topic);
    plainTopicBytes = t.buf.slice(0, t.pos);
    plainTopic = topic;
  }
  const topicBytes = plainTopicBytes;
  w.ensure(12 + topicBytes.length);
  const buf = w.buf;
  let p = w.pos;
  buf[p++] = 0xa4; // a map of 4
  buf[p++] = 0x65; // "topic"
  buf[p++] = 0x74;
  buf[p++] = 0x6f;
  buf[p++] = 0x70;
  buf[p++] = 0x69;
  buf[p++] = 0x63;
  for (let i = 0; i < topicBytes.length; i++) buf[p++] = topicBytes[i]!;
  buf[p++] = 0x63; // "seq"
  buf[p++] = 0x73;
  buf[p++] = 0x65;
  buf[p++] = 0x71;
  w.pos = p;
  writeHead(w, 0, seq);
  w.ensure(5);
  p = w.pos;
  w.buf[p++] = 0x64; // "time"
  w.buf[p++] = 0x74;
  w.buf[p++] = 0x69;
  w.buf[p++] = 0x6d;
  w.buf[p++] = 0x65;
  w.pos = p;
  writeHead(w, 0, time);
  w.ensure(5);
  p = w.pos;
  w.buf[p++] = 0x64; // "data"
  w.buf[p++] = 0x64;
  w.buf[p++] = 0x61;
  w.buf[p++] = 0x74;
  w.buf[p++] = 0x61;
  w.pos = p;
  writeBytes(w, data);
  return true;
}

/**
 * Gives `message` a payload of its own — a copy, when its bytes are a view into a bigger buffer
 * (a socket read, a commit buffer) — and forgets its `encodeOnce` bytes (a block shared with the
 * other messages of its push): a message that waits long holds no more memory than its own.
 */
export function detachMessage(message: { data: Uint8Array }): void {
  const data = message.data;
  if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) message.data = data.slice();
  const m = message as { [ENCODED]?: Encoded };
  if (m[ENCODED] !== undefined) m[ENCODED] = undefined;
}

/** True when `encodeOnce` wrote the CBOR of `message`. */
export function isEncodedOnce(message: object): boolean {
  return (message as { [ENCODED]?: Encoded })[ENCODED] !== undefined;
}

function encodedOf(v: unknown): Encoded | undefined {
  return typeof v === "object" && v !== null ? (v as { [ENCODED]?: Encoded })[ENCODED] : undefined;
}

/** An array; the runs of its items encoded next to each other by `encodeOnce` are copied whole. */
function writeArray(w: FrameWriter, v: unknown[], depth: number): boolean {
  writeHead(w, 4, v.length);
  for (let i = 0; i < v.length; ) {
    const first = encodedOf(v[i]);
    if (first === undefined) {
      const item = v[i] as { [PLAIN]?: true } | undefined;
      if (!((typeof item === "object" && item !== null && item[PLAIN] === true && writePlainMessage(w, item as PlainMessage)) || writeValue(w, item, depth + 1))) return false;
      i++;
      continue;
    }
    let end = first.end;
    let j = i + 1;
    for (let next = encodedOf(v[j]); j < v.length && next !== undefined && next.block === first.block && next.start === end; next = encodedOf(v[++j])) end = next.end;
    const n = end - first.start;
    w.ensure(n);
    w.buf.set(first.block.subarray(first.start, end), w.pos);
    w.pos += n;
    i = j;
  }
  return true;
}

/**
 * Appends the CBOR of `frame` to `w` when it is a hot frame of a known shape and returns true;
 * otherwise returns false with `w.pos` where it was (whatever was written past it is garbage).
 */
export function writeHotFrame(w: FrameWriter, frame: object): boolean {
  const fields = HOT_FIELDS[(frame as { op?: unknown }).op as string];
  if (fields === undefined || Object.getPrototypeOf(frame) !== Object.prototype) return false;
  const start = w.pos;
  if (writeMap(w, frame as Record<string, unknown>, fields, 0)) return true;
  w.pos = start;
  return false;
}

/** `w.buf` is read fresh after every `ensure` (it may have grown). */
function writeHead(w: FrameWriter, major: number, n: number): void {
  w.ensure(9);
  const buf = w.buf;
  let pos = w.pos;
  const m = major << 5;
  if (n < 24) buf[pos++] = m | n;
  else if (n < 0x100) {
    buf[pos++] = m | 24;
    buf[pos++] = n;
  } else if (n < 0x10000) {
    buf[pos++] = m | 25;
    buf[pos++] = n >> 8;
    buf[pos++] = n & 0xff;
  } else if (n <= 0xffffffff) {
    buf[pos++] = m | 26;
    buf[pos++] = n >>> 24;
    buf[pos++] = (n >> 16) & 0xff;
    buf[pos++] = (n >> 8) & 0xff;
    buf[pos++] = n & 0xff;
  } else {
    buf[pos++] = m | 27;
    const high = Math.floor(n / 2 ** 32);
    const low = n >>> 0;
    buf[pos++] = high >>> 24;
    buf[pos++] = (high >> 16) & 0xff;
    buf[pos++] = (high >> 8) & 0xff;
    buf[pos++] = high & 0xff;
    buf[pos++] = low >>> 24;
    buf[pos++] = (low >> 16) & 0xff;
    buf[pos++] = (low >> 8) & 0xff;
    buf[pos++] = low & 0xff;
  }
  w.pos = pos;
}

const utf8 = new TextEncoder();

/** A text string: short ones by hand (as cbor-x does, lone surrogates included), long ones by TextEncoder. */
function writeString(w: FrameWriter, s: string): void {
  const length = s.length;
  if (length >= 64) {
    w.ensure(5 + length * 3);
    // Written after a 5-byte head, then moved left when the minimal head is shorter.
    const written = utf8.encodeInto(s, w.buf.subarray(w.pos + 5)).written;
    const headBytes = written < 24 ? 1 : written < 0x100 ? 2 : written < 0x10000 ? 3 : 5;
    if (headBytes < 5) w.buf.copyWithin(w.pos + headBytes, w.pos + 5, w.pos + 5 + written);
    writeHead(w, 3, written);
    w.pos += written;
    return;
  }
  w.ensure(2 + length * 3);
  const buf = w.buf;
  if (length < 24) {
    // Keys, ops, most topics: short ASCII, one byte per unit and a one-byte head.
    const from = w.pos + 1;
    let i = 0;
    for (let c; i < length && (c = s.charCodeAt(i)) < 0x80; i++) buf[from + i] = c;
    if (i === length) {
      buf[w.pos] = 0x60 | length;
      w.pos = from + length;
      return;
    }
  }
  // Under 64 UTF-16 units: at most 192 bytes, so the head is 1 or 2 bytes; reserve 1, move if 2.
  const headAt = w.pos;
  let pos = headAt + 1;
  for (let i = 0; i < length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) buf[pos++] = c;
    else if (c < 0x800) {
      buf[pos++] = (c >> 6) | 0xc0;
      buf[pos++] = (c & 0x3f) | 0x80;
    } else if ((c & 0xfc00) === 0xd800 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      c = 0x10000 + ((c & 0x03ff) << 10) + (s.charCodeAt(i + 1) & 0x03ff);
      i++;
      buf[pos++] = (c >> 18) | 0xf0;
      buf[pos++] = ((c >> 12) & 0x3f) | 0x80;
      buf[pos++] = ((c >> 6) & 0x3f) | 0x80;
      buf[pos++] = (c & 0x3f) | 0x80;
    } else {
      buf[pos++] = (c >> 12) | 0xe0;
      buf[pos++] = ((c >> 6) & 0x3f) | 0x80;
      buf[pos++] = (c & 0x3f) | 0x80;
    }
  }
  const written = pos - headAt - 1;
  if (written < 24) {
    buf[headAt] = 0x60 | written;
    w.pos = pos;
  } else {
    buf.copyWithin(headAt + 2, headAt + 1, pos);
    buf[headAt] = 0x78;
    buf[headAt + 1] = written;
    w.pos = pos + 1;
  }
}

function writeBytes(w: FrameWriter, b: Uint8Array): void {
  writeHead(w, 2, b.length);
  w.ensure(b.length);
  w.buf.set(b, w.pos);
  w.pos += b.length;
}

/** One value of a kind the fast path knows; false for any other (the caller falls back). */
function writeValue(w: FrameWriter, v: unknown, depth: number): boolean {
  switch (typeof v) {
    case "number":
      if (!Number.isSafeInteger(v) || v < 0) return false;
      writeHead(w, 0, v);
      return true;
    case "string":
      writeString(w, v);
      return true;
    case "boolean":
      w.ensure(1);
      w.buf[w.pos++] = v ? 0xf5 : 0xf4;
      return true;
    case "object": {
      if (v === null || depth >= MAX_DEPTH) return false;
      if (v instanceof Uint8Array) {
        writeBytes(w, v);
        return true;
      }
      if (Array.isArray(v)) return writeArray(w, v, depth);
      if (v instanceof EncodedArray) {
        writeEncodedArray(w, v.items);
        return true;
      }
      if (Object.getPrototypeOf(v) !== Object.prototype) return false;
      return writeMap(w, v as Record<string, unknown>, null, depth + 1);
    }
    default:
      return false;
  }
}

/**
 * A plain object as a map, keys in their enumeration order (as cbor-x). The count is not
 * known up front: one head byte is reserved, and the entries moved right in the rare case
 * of 24 keys or more.
 */
function writeMap(w: FrameWriter, obj: Record<string, unknown>, allowed: ReadonlySet<string> | null, depth: number): boolean {
  w.ensure(1);
  const headAt = w.pos++;
  let count = 0;
  for (const key in obj) {
    if (allowed !== null && !allowed.has(key)) return false;
    writeString(w, key);
    if (!writeValue(w, obj[key], depth)) return false;
    count++;
  }
  if (count < 24) w.buf[headAt] = 0xa0 | count;
  else {
    const end = w.pos;
    const extra = count < 0x100 ? 1 : count < 0x10000 ? 2 : 4;
    w.ensure(extra);
    w.buf.copyWithin(headAt + 1 + extra, headAt + 1, end);
    w.pos = headAt;
    writeHead(w, 5, count);
    w.pos = end + extra;
  }
  return true;
}

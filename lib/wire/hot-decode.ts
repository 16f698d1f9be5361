/**
 * A small CBOR decoder for what frames are made of — maps with text keys, unsigned integers,
 * text and byte strings, booleans, arrays — giving exactly what the generic decoder (cbor-x
 * in codec.ts) gives for them: plain objects, numbers, strings, byte strings as views into
 * the frame. It exists for speed: a recv reply of 256 messages is 256 small maps, which
 * cbor-x decodes several times slower.
 *
 * Anything else (a tag, a float, a negative or null, a uint64 past 2^53, a non-text key,
 * text that is not valid UTF-8, an item cut short, bytes after the map) makes it give up:
 * `readHotFrame` returns undefined and the caller decodes with cbor-x, which then decides
 * (and reports errors) as before.
 */

/**
 * Makes the object a message of a `delivery` frame or a recv reply is handed out as (the client
 * library's Message), so that a received message is decoded straight into it: one object per
 * message, not a map and then a copy. Only those frames, which only a client receives, use it.
 */
export type DeliveredMessageFactory = (topic: string, seq: number, time: number, data: Uint8Array, lost: number | undefined, headers: Record<string, string> | undefined, expiresAt: number | undefined) => object;
let deliveredMessage: DeliveredMessageFactory | undefined;

/** Sets the factory of delivered messages for this process (the client library does, once); returns the one before. */
export function setDeliveredMessageFactory(factory: DeliveredMessageFactory | undefined): DeliveredMessageFactory | undefined {
  const before = deliveredMessage;
  deliveredMessage = factory;
  return before;
}

/** Thrown inside the reader to give up; caught in readHotFrame. */
const GIVE_UP = new Error("not a hot frame");
const MAX_DEPTH = 6;
const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

let src: Uint8Array = EMPTY;
let pos = 0;
let end = 0;

/** The frame `bytes` as a plain object, or undefined when it holds anything this reader does not know. */
export function readHotFrame(bytes: Uint8Array): Record<string, unknown> | undefined {
  if (bytes.length === 0 || bytes[0]! >> 5 !== 5) return undefined;
  src = bytes;
  pos = 0;
  end = bytes.length;
  try {
    const value = readItem(0);
    return pos === end ? (value as Record<string, unknown>) : undefined;
  } catch (err) {
    if (err === GIVE_UP) return undefined;
    throw err;
  } finally {
    src = EMPTY; // keeps no frame alive
  }
}

function readArg(info: number): number {
  if (info < 24) return info;
  let value: number;
  if (info === 24) {
    if (pos + 1 > end) throw GIVE_UP;
    value = src[pos]!;
    pos += 1;
  } else if (info === 25) {
    if (pos + 2 > end) throw GIVE_UP;
    value = (src[pos]! << 8) | src[pos + 1]!;
    pos += 2;
  } else if (info === 26) {
    if (pos + 4 > end) throw GIVE_UP;
    value = src[pos]! * 2 ** 24 + ((src[pos + 1]! << 16) | (src[pos + 2]! << 8) | src[pos + 3]!);
    pos += 4;
  } else if (info === 27) {
    if (pos + 8 > end) throw GIVE_UP;
    const high = src[pos]! * 2 ** 24 + ((src[pos + 1]! << 16) | (src[pos + 2]! << 8) | src[pos + 3]!);
    if (high >= 2 ** 21) throw GIVE_UP; // 2^53 or more: cbor-x rounds it, and the schema refuses it
    const low = src[pos + 4]! * 2 ** 24 + ((src[pos + 5]! << 16) | (src[pos + 6]! << 8) | src[pos + 7]!);
    value = high * 2 ** 32 + low;
    pos += 8;
  } else throw GIVE_UP; // indefinite lengths and reserved values
  return value;
}

/** Recently read short ASCII strings (keys, ops, topics), by a hash of their bytes: reading one again makes no new string. */
const textCache = new Array<string | undefined>(1024);
const CACHED_TEXT_BYTES = 24;

function readText(length: number): string {
  if (length > end - pos) throw GIVE_UP;
  const from = pos;
  pos += length;
  if (length > CACHED_TEXT_BYTES) return decodeUtf8(from, length);
  let hash = length;
  for (let i = from; i < pos; i++) {
    const c = src[i]!;
    if (c >= 0x80) return decodeUtf8(from, length);
    hash = (Math.imul(hash, 31) + c) | 0;
  }
  const slot = hash & (textCache.length - 1);
  const cached = textCache[slot];
  if (cached !== undefined && cached.length === length) {
    let i = 0;
    while (i < length && cached.charCodeAt(i) === src[from + i]) i++;
    if (i === length) return cached;
  }
  let s = "";
  for (let i = from; i < pos; i++) s += String.fromCharCode(src[i]!);
  textCache[slot] = s;
  return s;
}

function decodeUtf8(from: number, length: number): string {
  try {
    return utf8.decode(src.subarray(from, from + length));
  } catch {
    throw GIVE_UP; // not valid UTF-8 (a lone surrogate included): cbor-x decodes it its own way
  }
}

function readItem(depth: number): unknown {
  if (pos >= end) throw GIVE_UP;
  const head = src[pos++]!;
  const info = head & 31;
  switch (head >> 5) {
    case 0:
      return readArg(info);
    case 2: {
      const length = readArg(info);
      if (length > end - pos) throw GIVE_UP;
      const bytes = src.subarray(pos, pos + length);
      pos += length;
      return bytes;
    }
    case 3:
      return readText(readArg(info));
    case 4: {
      const length = readArg(info);
      if (depth >= MAX_DEPTH || length > end - pos) throw GIVE_UP; // each item takes a byte at least
      const array = new Array<unknown>(length);
      for (let i = 0; i < length; i++) array[i] = readItem(depth + 1);
      return array;
    }
    case 5: {
      const length = readArg(info);
      if (depth >= MAX_DEPTH || 2 * length > end - pos) throw GIVE_UP;
      const map: Record<string, unknown> = {};
      for (let i = 0; i < length; i++) {
        if (pos >= end || src[pos]! >> 5 !== 3) throw GIVE_UP; // keys are text
        const key = readText(readArg(src[pos++]! & 31));
        if (key === "__proto__") throw GIVE_UP;
        // The messages of a `delivery`, and of a recv reply (`ok`, whose `messages` come before its `op`).
        map[key] = depth === 0 && key === "messages" && (map.op === undefined || map.op === "delivery" || map.op === "ok") && deliveredMessage ? readDeliveredMessages(deliveredMessage) : readItem(depth + 1);
      }
      return map;
    }
    case 7:
      if (head === 0xf4) return false;
      if (head === 0xf5) return true;
      throw GIVE_UP;
    default:
      throw GIVE_UP;
  }
}

/**
 * The `messages` of a `delivery` or a recv reply: an array of maps with the keys of a wire Message, each
 * made by `make`. Anything else (another key, a value of another type, a key missing) gives
 * up: cbor-x then decodes the frame into plain maps, which the client converts as before.
 */
function readDeliveredMessages(make: DeliveredMessageFactory): object[] {
  if (pos >= end || src[pos]! >> 5 !== 4) throw GIVE_UP;
  const length = readArg(src[pos++]! & 31);
  if (length > end - pos) throw GIVE_UP;
  const out = new Array<object>(length);
  for (let i = 0; i < length; i++) {
    if (pos >= end || src[pos]! >> 5 !== 5) throw GIVE_UP;
    const keys = readArg(src[pos++]! & 31);
    let topic: string | undefined;
    let seq = -1;
    let time = -1;
    let data: Uint8Array | undefined;
    let lost: number | undefined;
    let headers: Record<string, string> | undefined;
    let expiresAt: number | undefined;
    for (let k = 0; k < keys; k++) {
      if (pos >= end || src[pos]! >> 5 !== 3) throw GIVE_UP;
      const key = messageKey(readArg(src[pos++]! & 31));
      if (pos >= end) throw GIVE_UP;
      const major = src[pos]! >> 5;
      if (key === KEY_DATA && major === 2) data = readItem(2) as Uint8Array;
      else if (major === 0 && (key === KEY_SEQ || key === KEY_TIME || key === KEY_LOST || key === KEY_EXPIRES_AT)) {
        const n = readItem(2) as number;
        if (key === KEY_SEQ) seq = n;
        else if (key === KEY_TIME) time = n;
        else if (key === KEY_LOST) lost = n;
        else expiresAt = n;
      } else if (key === KEY_TOPIC && major === 3) topic = readTopic();
      else if (key === KEY_HEADERS && major === 5) headers = readItem(2) as Record<string, string>;
      else throw GIVE_UP;
    }
    if (topic === undefined || seq < 0 || time < 0 || data === undefined) throw GIVE_UP;
    out[i] = make(topic, seq, time, data, lost, headers, expiresAt);
  }
  return out;
}

// The keys of a wire Message, as `messageKey` names them (0: any other key).
const KEY_TOPIC = 1;
const KEY_SEQ = 2;
const KEY_TIME = 3;
const KEY_DATA = 4;
const KEY_LOST = 5;
const KEY_HEADERS = 6;
const KEY_EXPIRES_AT = 7;

/**
 * The text key of `length` bytes at `pos` (its head read already), matched by its bytes: the
 * seven keys of a message are known, so no string is made and no hash taken (readText's cost,
 * five times per message). 0 for any other key, which makes the caller give up, as before.
 */
function messageKey(length: number): number {
  if (length > end - pos) throw GIVE_UP;
  const p = pos;
  const s = src;
  pos += length;
  switch (length) {
    case 3: // seq
      return s[p] === 0x73 && s[p + 1] === 0x65 && s[p + 2] === 0x71 ? KEY_SEQ : 0;
    case 4: // time, data, lost
      if (s[p] === 0x74) return s[p + 1] === 0x69 && s[p + 2] === 0x6d && s[p + 3] === 0x65 ? KEY_TIME : 0;
      if (s[p] === 0x64) return s[p + 1] === 0x61 && s[p + 2] === 0x74 && s[p + 3] === 0x61 ? KEY_DATA : 0;
      if (s[p] === 0x6c) return s[p + 1] === 0x6f && s[p + 2] === 0x73 && s[p + 3] === 0x74 ? KEY_LOST : 0;
      return 0;
    case 5: // topic
      return s[p] === 0x74 && s[p + 1] === 0x6f && s[p + 2] === 0x70 && s[p + 3] === 0x69 && s[p + 4] === 0x63 ? KEY_TOPIC : 0;
    case 7: // headers
      return s[p] === 0x68 && s[p + 1] === 0x65 && s[p + 2] === 0x61 && s[p + 3] === 0x64 && s[p + 4] === 0x65 && s[p + 5] === 0x72 && s[p + 6] === 0x73 ? KEY_HEADERS : 0;
    case 9: // expiresAt
      return s[p] === 0x65 && s[p + 1] === 0x78 && s[p + 2] === 0x70 && s[p + 3] === 0x69 && s[p + 4] === 0x72 && s[p + 5] === 0x65 && s[p + 6] === 0x73 && s[p + 7] === 0x41 && s[p + 8] === 0x74 ? KEY_EXPIRES_AT : 0;
    default:
      return 0;
  }
}

/** The topic of the message read last, when it is ASCII (then its UTF-16 units are its bytes). */
let lastTopic = "";

/** A message's topic (a text string at `pos`): the one before when the bytes are the same, without a hash or a new string. */
function readTopic(): string {
  const length = readArg(src[pos++]! & 31);
  if (length === lastTopic.length && length <= end - pos) {
    let i = 0;
    while (i < length && src[pos + i] === lastTopic.charCodeAt(i)) i++;
    if (i === length) {
      pos += length;
      return lastTopic;
    }
  }
  const topic = readText(length);
  // As many UTF-16 units as UTF-8 bytes only when every character is ASCII.
  if (topic.length === length) lastTopic = topic;
  return topic;
}

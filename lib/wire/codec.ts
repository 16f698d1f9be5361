/** cbor-x ↔ typed frames. cbor-x only ever sees whole frames (framing is frame.ts). */
// The pure-JS entry points: the package root loads the native cbor-extract addon, which
// under Bun corrupts string decoding after a few thousand frames and can abort the process.
import { Decoder } from "cbor-x/decode";
import { Encoder } from "cbor-x/encode";
import { Code, MqError } from "../errors.ts";
import { readHotFrame } from "./hot-decode.ts";
import { EncodedArray } from "./hot-frames.ts";
import { checkField, schemas, type Frame } from "./messages.ts";

// Plain maps and byte strings on the wire: no records extension, no typed-array tags,
// so any CBOR implementation can speak the protocol.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true } as never);
// int64AsNumber: a uint64 (major type 0, 27) decodes to a number, not a BigInt; above
// 2^53 it fails the "uint" check instead of being rounded silently.
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true } as never);

export function encode(frame: object): Uint8Array {
  return integersAsUints(encoder.encode(withItemsDecoded(frame)));
}

/** `frame`, or a copy whose EncodedArray fields (items written ahead, hot-frames.ts) are arrays of their values again, for cbor-x. */
function withItemsDecoded(frame: object): object {
  let copy: Record<string, unknown> | undefined;
  for (const key in frame) {
    const value = (frame as Record<string, unknown>)[key];
    if (!(value instanceof EncodedArray)) continue;
    copy ??= { ...frame };
    copy[key] = value.items.map((item) => decoder.decode(item.block.subarray(item.start, item.end)));
  }
  return copy ?? frame;
}

/**
 * cbor-x writes an integer of 2^32 or more (every `time` in ms, a seq past 4 billion) as a
 * float64. The protocol says integers are CBOR unsigned integers, so such floats are
 * rewritten in place as uint64: both take 9 bytes (head 0xfb → 0x1b, 8 big-endian bytes).
 * The walk skips strings by their length, so it costs one step per item, not per byte.
 */
export function integersAsUints(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let items = 1; // items still to read at this point of the walk
  while (items > 0 && pos < bytes.length) {
    items--;
    const head = bytes[pos]!;
    const major = head >> 5;
    const info = head & 31;
    pos++;
    if (info > 27) break; // indefinite lengths and reserved values: never written by this encoder
    let arg = info;
    if (info === 24) arg = bytes[pos++]!;
    else if (info === 25) (arg = view.getUint16(pos)), (pos += 2);
    else if (info === 26) (arg = view.getUint32(pos)), (pos += 4);
    else if (info === 27) {
      if (major === 7) {
        const value = view.getFloat64(pos);
        if (Number.isSafeInteger(value) && value >= 0) {
          bytes[pos - 1] = 0x1b;
          view.setUint32(pos, Math.floor(value / 2 ** 32));
          view.setUint32(pos + 4, value >>> 0);
        }
      } else arg = view.getUint32(pos) * 2 ** 32 + view.getUint32(pos + 4);
      pos += 8;
    }
    if (major === 2 || major === 3) pos += arg;
    else if (major === 4) items += arg;
    else if (major === 5) items += 2 * arg;
    else if (major === 6) items += 1;
  }
  return bytes;
}

/**
 * Decodes one frame body into a CBOR map. Bytes that are not CBOR, or CBOR that is
 * not a map, mean the peer does not speak the protocol: the error is fatal.
 * Byte strings in the result may share memory with `payload`.
 */
export function decodeMap(payload: Uint8Array): Record<string, unknown> {
  // The common frames take the small decoder; anything it does not know, cbor-x.
  let value: unknown = readHotFrame(payload);
  if (value !== undefined) return value as Record<string, unknown>;
  try {
    value = decoder.decode(payload);
  } catch (err) {
    throw new MqError(Code.BadRequest, "frame is not valid CBOR", { fatal: true, cause: err });
  }
  // Only a plain map: tagged items (dates, typed arrays) and Map objects are not frames.
  if (value === null || typeof value !== "object" || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new MqError(Code.BadRequest, "frame is not a CBOR map", { fatal: true });
  }
  return value as Record<string, unknown>;
}

/**
 * Checks a decoded map against the schema of its op: field types, required fields,
 * no unknown fields. Throws BAD_REQUEST or UNKNOWN_OP naming the field (not fatal:
 * the framing is intact, so the connection can go on).
 */
export function validate(map: Record<string, unknown>): Frame {
  const op = map.op;
  if (typeof op !== "string") throw new MqError(Code.BadRequest, 'field "op" is missing or not a string');
  if (op === "ok" || op === "error") return checkReply(map);
  const schema = Object.hasOwn(schemas, op) ? schemas[op] : undefined;
  if (!schema) throw new MqError(Code.UnknownOp, `unknown op ${JSON.stringify(op.slice(0, 40))}`);
  for (const key of Object.keys(map)) {
    if (key !== "op" && !Object.hasOwn(schema, key)) throw new MqError(Code.BadRequest, `${op}: unexpected field ${JSON.stringify(key.slice(0, 40))}`);
  }
  for (const { key, type, optional } of fieldsOf(schema)) {
    const v = map[key];
    if (v === undefined) {
      if (optional) continue;
      throw new MqError(Code.BadRequest, `${op}: field "${key}" is missing`);
    }
    const problem = checkField(type, v);
    if (problem) throw new MqError(Code.BadRequest, `${op}: field "${key}" must be ${problem}`);
  }
  return map as unknown as Frame;
}

type FieldSpec = { key: string; type: Parameters<typeof checkField>[0]; optional: boolean };
/** Each schema's fields, parsed once: a frame's check makes no entries array and no type strings. */
const parsedSchemas = new WeakMap<object, FieldSpec[]>();
function fieldsOf(schema: Record<string, string>): FieldSpec[] {
  let fields = parsedSchemas.get(schema);
  if (!fields) {
    fields = Object.entries(schema).map(([key, spec]) => {
      const optional = spec.endsWith("?");
      return { key, type: (optional ? spec.slice(0, -1) : spec) as FieldSpec["type"], optional };
    });
    parsedSchemas.set(schema, fields);
  }
  return fields;
}

/** decodeMap + validate. */
export function decode(payload: Uint8Array): Frame {
  return validate(decodeMap(payload));
}

function checkReply(map: Record<string, unknown>): Frame {
  if (map.rid !== undefined && !Number.isSafeInteger(map.rid)) throw new MqError(Code.BadRequest, `${String(map.op)}: field "rid" must be an integer`);
  if (map.op === "error" && (typeof map.code !== "string" || typeof map.message !== "string")) {
    throw new MqError(Code.BadRequest, 'error: fields "code" and "message" must be strings');
  }
  if (map.op === "ok" && map.rid === undefined) throw new MqError(Code.BadRequest, 'ok: field "rid" is missing');
  return map as unknown as Frame;
}

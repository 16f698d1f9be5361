/** cbor-x ↔ typed frames. cbor-x only ever sees whole frames (framing is frame.ts). */
// The pure-JS entry points: the package root loads the native cbor-extract addon, which
// under Bun corrupts string decoding after a few thousand frames and can abort the process.
import { Decoder } from "cbor-x/decode";
import { Encoder } from "cbor-x/encode";
import { Code, MqError } from "../errors.ts";
import { checkField, schemas, type Frame } from "./messages.ts";

// Plain maps and byte strings on the wire: no records extension, no typed-array tags,
// so any CBOR implementation can speak the protocol.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true } as never);
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true } as never);

export function encode(frame: object): Uint8Array {
  return encoder.encode(frame);
}

/**
 * Decodes one frame body into a CBOR map. Bytes that are not CBOR, or CBOR that is
 * not a map, mean the peer does not speak the protocol: the error is fatal.
 * Byte strings in the result may share memory with `payload`.
 */
export function decodeMap(payload: Uint8Array): Record<string, unknown> {
  let value: unknown;
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
  for (const [key, spec] of Object.entries(schema)) {
    const optional = spec.endsWith("?");
    const v = map[key];
    if (v === undefined) {
      if (optional) continue;
      throw new MqError(Code.BadRequest, `${op}: field "${key}" is missing`);
    }
    const problem = checkField((optional ? spec.slice(0, -1) : spec) as Parameters<typeof checkField>[0], v);
    if (problem) throw new MqError(Code.BadRequest, `${op}: field "${key}" must be ${problem}`);
  }
  return map as unknown as Frame;
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

/**
 * The optional record fields of headers and TTL (segment.ts FIELD_HEADERS, FIELD_EXPIRES_AT):
 * their byte encoding, and reading them back. Headers as a field value:
 *   per header: u16 key length · key (UTF-8) · u16 value length · value (UTF-8)
 * Big-endian, in the order they were published.
 */
import type { Headers } from "../wire/headers.ts";
import { FIELD_EXPIRES_AT, FIELD_HEADER, FIELD_HEADERS, RECORD_HEADER, type ExtraFields } from "./segment.ts";

const encoder = new TextEncoder();
// A leading U+FEFF of a header key or value is kept, as the wire decoder keeps it.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** The field value of `headers` (which passed headersProblem, so it fits a u16 length). */
export function encodeHeaders(headers: Headers): Uint8Array {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (const key in headers) {
    const k = encoder.encode(key);
    const v = encoder.encode(headers[key]!);
    parts.push(k, v);
    size += 4 + k.length + v.length;
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let p = 0;
  for (const part of parts) {
    view.setUint16(p, part.length);
    out.set(part, p + 2);
    p += 2 + part.length;
  }
  return out;
}

/** The headers of a FIELD_HEADERS value; null when the bytes do not parse (then the field is ignored). */
export function decodeHeaders(bytes: Uint8Array): Headers | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Headers = {};
  let p = 0;
  while (p < bytes.length) {
    if (p + 2 > bytes.length) return null;
    const kl = view.getUint16(p);
    if (p + 2 + kl + 2 > bytes.length) return null;
    const key = decoder.decode(bytes.subarray(p + 2, p + 2 + kl));
    p += 2 + kl;
    const vl = view.getUint16(p);
    if (p + 2 + vl > bytes.length) return null;
    out[key] = decoder.decode(bytes.subarray(p + 2, p + 2 + vl));
    p += 2 + vl;
  }
  return out;
}

/** What a publish asks to store beside the payload, ready for writeRecord; undefined for a plain message. */
export function extraFieldsOf(headers: Headers | undefined, expiresAt: number | undefined): ExtraFields | undefined {
  if (headers === undefined && expiresAt === undefined) return undefined;
  return { headers: headers === undefined ? undefined : encodeHeaders(headers), expiresAt };
}

/**
 * The headers and expiry among the optional fields of the record at `p` (a view into `buf`);
 * null when it has neither. Only called for a record that has optional fields.
 */
export function readExtraFields(buf: Uint8Array, view: DataView, p: number): { headers?: Headers; expiresAt?: number } | null {
  let q = p + RECORD_HEADER;
  const end = q + view.getUint16(p + 14);
  let found: { headers?: Headers; expiresAt?: number } | null = null;
  while (q + FIELD_HEADER <= end) {
    const type = buf[q];
    const length = view.getUint16(q + 1);
    if (q + FIELD_HEADER + length > end) break;
    if (type === FIELD_HEADERS) {
      const headers = decodeHeaders(buf.subarray(q + FIELD_HEADER, q + FIELD_HEADER + length));
      if (headers) (found ??= {}).headers = headers;
    } else if (type === FIELD_EXPIRES_AT && length === 8) (found ??= {}).expiresAt = view.getFloat64(q + FIELD_HEADER);
    q += FIELD_HEADER + length;
  }
  return found;
}

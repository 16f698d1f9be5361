/**
 * Message headers: string keys to string values, published with a message and delivered with
 * it (docs/semantics.md, "Headers"). One set of rules, checked at every edge: the CLI, the
 * library, and the codec for frames that carry them.
 */

/**
 * The limits of a message's headers: the most headers, the longest key, and the most bytes
 * of UTF-8 all keys and values take together. Here, beside the rules, like the other limits
 * of the protocol (MAX_MSG_ID_BYTES): the wire layer does not import config.ts.
 */
export const MAX_HEADERS = 64;
export const MAX_HEADER_KEY_BYTES = 128;
export const MAX_HEADERS_BYTES = 16 * 1024;

export type Headers = Record<string, string>;

// C0 controls, DEL and C1 controls: invisible in a terminal and in logs.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Why `key` cannot be a header key, or null: 1 to MAX_HEADER_KEY_BYTES bytes, no "=", no control characters, no space at either end. */
export function headerKeyProblem(key: string): string | null {
  const bytes = Buffer.byteLength(key);
  if (bytes === 0) return "the key is empty";
  if (bytes > MAX_HEADER_KEY_BYTES) return `the key is ${bytes} bytes, above the limit of ${MAX_HEADER_KEY_BYTES}`;
  if (key.includes("=")) return 'the key holds "="';
  if (CONTROL.test(key)) return "the key holds a control character";
  if (key.trim() !== key) return "the key starts or ends with a space";
  if (!key.isWellFormed()) return "the key is not valid UTF-8";
  // A JavaScript object cannot hold it as a plain key, so it could not be delivered.
  if (key === "__proto__") return 'the key "__proto__" is reserved';
  return null;
}

/**
 * Why `value` is not a set of headers, or null: a plain object of at most MAX_HEADERS
 * entries, keys as headerKeyProblem says, string values (empty allowed), keys and values
 * together at most MAX_HEADERS_BYTES bytes of UTF-8.
 */
export function headersProblem(value: unknown): string | null {
  if (value === null || typeof value !== "object" || Object.getPrototypeOf(value) !== Object.prototype) return "a map of strings to strings";
  const keys = Object.keys(value);
  if (keys.length > MAX_HEADERS) return `at most ${MAX_HEADERS} headers, got ${keys.length}`;
  let total = 0;
  for (const key of keys) {
    const problem = headerKeyProblem(key);
    if (problem) return `a valid header key (${JSON.stringify(key.slice(0, 40))}: ${problem})`;
    const v = (value as Record<string, unknown>)[key];
    if (typeof v !== "string" || !v.isWellFormed()) return `a string value for header ${JSON.stringify(key)}`;
    total += Buffer.byteLength(key) + Buffer.byteLength(v);
  }
  if (total > MAX_HEADERS_BYTES) return `headers of at most ${MAX_HEADERS_BYTES} bytes in all, got ${total}`;
  return null;
}

/** True when `headers` holds at least one header (a message without any carries none). */
export function hasHeaders(headers: Headers | undefined): headers is Headers {
  if (headers === undefined) return false;
  for (const _ in headers) return true;
  return false;
}

/** About the bytes `headers` take in a frame (CBOR heads rounded up). */
export function headersSize(headers: Headers): number {
  let size = 0;
  for (const key in headers) size += Buffer.byteLength(key) + Buffer.byteLength(headers[key]!) + 6;
  return size;
}

/** `pubs`: `headers`, when given, has one map per payload (`{}` for a payload without). */
export function pubsHeadersProblem(frame: { payloads: unknown[]; headers?: unknown[] }): string | null {
  if (frame.headers !== undefined && frame.headers.length !== frame.payloads.length) {
    return `pubs: ${frame.headers.length} header maps for ${frame.payloads.length} payloads; give one per payload ({} for none)`;
  }
  return null;
}

/** Parses `k=v` as `mq pub --header` takes it: split at the first "="; the value may be empty and hold "=". Throws a RangeError naming the header. */
export function parseHeaderArg(arg: string): [string, string] {
  const eq = arg.indexOf("=");
  if (eq < 0) throw new RangeError(`--header ${JSON.stringify(arg)} has no "=": give it as KEY=VALUE`);
  const key = arg.slice(0, eq);
  const problem = headerKeyProblem(key);
  if (problem) throw new RangeError(`--header ${JSON.stringify(arg)}: ${problem}; a key is 1 to ${MAX_HEADER_KEY_BYTES} bytes without "=", control characters or spaces at either end`);
  return [key, arg.slice(eq + 1)];
}

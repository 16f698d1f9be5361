/**
 * What a `pub`/`pubs` stores beside the payloads: headers (one map per payload) and an expiry
 * from its TTL, turned into the fields of each append. A publish without either has none,
 * and its appends get exactly what they got before (the message id, if any).
 */
import type { AppendFields } from "../store/types.ts";
import { hasHeaders, type Headers } from "../wire/headers.ts";

export interface PubExtra {
  /** Per payload; `{}` for one without. */
  headers: Headers[] | undefined;
  /** ms since the epoch: the append time plus the TTL. */
  expiresAt: number | undefined;
}

/** The extra of a request with `headers` and `ttl` (either may be absent) published at `now`; undefined when it has neither. */
export function pubExtra(headers: Headers[] | undefined, ttl: number | undefined, now: number): PubExtra | undefined {
  if (headers === undefined && ttl === undefined) return undefined;
  return { headers, expiresAt: ttl === undefined ? undefined : now + ttl };
}

/** The fields of the append of payload `i`. */
export function appendFields(msgId: string | undefined, extra: PubExtra | undefined, i: number): AppendFields | undefined {
  if (!extra) return msgId === undefined ? undefined : { msgId };
  const fields: AppendFields = {};
  if (msgId !== undefined) fields.msgId = msgId;
  const headers = extra.headers?.[i];
  if (hasHeaders(headers)) fields.headers = headers;
  if (extra.expiresAt !== undefined) fields.expiresAt = extra.expiresAt;
  return fields;
}

/**
 * The optional record fields of headers and TTL (segment.ts types 1 and 2, record-fields.ts):
 * byte layout, round trip, and that readers of the message id and the CRC-checked scan see
 * records that carry them as they saw records before.
 */
import { describe, expect, test } from "bun:test";
import { decodeHeaders, encodeHeaders, extraFieldsOf, readExtraFields } from "../../lib/store/record-fields.ts";
import { FIELD_EXPIRES_AT, FIELD_HEADERS, FIELD_MSG_ID, RECORD_HEADER, extraFieldsSize, recordData, recordIntact, recordMsgId, recordSize, recordTotal, writeRecord } from "../../lib/store/segment.ts";

const enc = new TextEncoder();

/** One record in a buffer of its exact size. */
function record(data: Uint8Array, msgId?: string, headers?: Record<string, string>, expiresAt?: number) {
  const id = msgId === undefined ? undefined : enc.encode(msgId);
  const extra = extraFieldsOf(headers, expiresAt);
  const buf = new Uint8Array(recordSize(data.length, id?.length, extraFieldsSize(extra)));
  const view = new DataView(buf.buffer);
  const size = writeRecord(buf, view, 0, 7, 1234, data, id, extra);
  return { buf, view, size };
}

describe("header field encoding", () => {
  test("u16 key length, key, u16 value length, value, per header in order", () => {
    expect([...encodeHeaders({ ab: "c", d: "" })]).toEqual([0, 2, 97, 98, 0, 1, 99, 0, 1, 100, 0, 0]);
  });

  test("round trip keeps order, UTF-8, '=' and empty values", () => {
    const h = { a: "b=c=d", "ключ": "значение 😀", empty: "", "x-1": "\u0000 tab\t" };
    const back = decodeHeaders(encodeHeaders(h));
    expect(back).toEqual(h);
    expect(Object.keys(back!)).toEqual(Object.keys(h));
  });

  test("truncated bytes do not parse (the field is then ignored, never half read)", () => {
    const bytes = encodeHeaders({ key: "value" });
    for (let n = 1; n < bytes.length; n++) expect(decodeHeaders(bytes.subarray(0, n))).toBeNull();
  });
});

describe("records with headers and an expiry", () => {
  test("the types are those storage.md reserved: 1 headers, 2 expiry", () => {
    expect([FIELD_HEADERS, FIELD_EXPIRES_AT]).toEqual([1, 2]);
  });

  test("a plain record has no optional fields: its size and bytes are as before", () => {
    const { buf, view, size } = record(enc.encode("hi"));
    expect(size).toBe(RECORD_HEADER + 2);
    expect(view.getUint16(14)).toBe(0);
    expect(extraFieldsOf(undefined, undefined)).toBeUndefined();
    expect(buf.length).toBe(size);
  });

  test("type 4 (msgId), then 1 (headers), then 2 (expiry, f64): sizes add up, CRC holds, each reader finds its field", () => {
    const headers = { k: "v" };
    const { buf, view, size } = record(enc.encode("payload"), "id-1", headers, 1_700_000_000_123);
    const h = encodeHeaders(headers);
    expect(view.getUint16(14)).toBe(3 + 4 + 3 + h.length + 3 + 8);
    expect(size).toBe(buf.length);
    expect(recordTotal(view, 0)).toBe(size);
    expect(recordIntact(buf, view, 0, size)).toBe(true);
    let q = RECORD_HEADER;
    expect(buf[q]).toBe(FIELD_MSG_ID);
    q += 3 + 4;
    expect(buf[q]).toBe(FIELD_HEADERS);
    q += 3 + h.length;
    expect(buf[q]).toBe(FIELD_EXPIRES_AT);
    expect(view.getUint16(q + 1)).toBe(8);
    expect(new TextDecoder().decode(recordMsgId(buf, view, 0)!)).toBe("id-1");
    expect(new TextDecoder().decode(recordData(buf, view, 0, size))).toBe("payload");
    expect(readExtraFields(buf, view, 0)).toEqual({ headers, expiresAt: 1_700_000_000_123 });
  });

  test("headers alone, expiry alone, msgId alone", () => {
    const a = record(enc.encode("x"), undefined, { only: "headers" });
    expect(readExtraFields(a.buf, a.view, 0)).toEqual({ headers: { only: "headers" } });
    expect(recordMsgId(a.buf, a.view, 0)).toBeNull();
    const b = record(enc.encode("x"), undefined, undefined, 42);
    expect(readExtraFields(b.buf, b.view, 0)).toEqual({ expiresAt: 42 });
    const c = record(enc.encode("x"), "only-id");
    expect(readExtraFields(c.buf, c.view, 0)).toBeNull();
  });

  test("a flipped bit in the headers field fails the record's CRC", () => {
    const { buf, view, size } = record(enc.encode("x"), undefined, { k: "v" });
    buf[RECORD_HEADER + 5] = buf[RECORD_HEADER + 5]! ^ 1;
    expect(recordIntact(buf, view, 0, size)).toBe(false);
  });
});

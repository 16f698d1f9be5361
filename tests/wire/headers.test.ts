/** The header rules (lib/wire/headers.ts) and the codec's checks of `headers`, `ttl` and a push's `headers`/`expires`. */
import { describe, expect, test } from "bun:test";
import { parseHeaders } from "../../lib/cli/commands.ts";
import { parseTtl } from "../../lib/cli/parse.ts";
import { decode, encode } from "../../lib/wire/codec.ts";
import { addPushedExtra, pushedExtraProblem } from "../../lib/local/pushed-extra.ts";
import { headerKeyProblem, headersProblem, parseHeaderArg } from "../../lib/wire/headers.ts";
import type { Message, MsgsFrame } from "../../lib/wire/messages.ts";

describe("header rules", () => {
  test.each([
    ["k", null],
    ["x-trace-id", null],
    ["ключ 😀", null],
    ["k".repeat(128), null],
    ["", "the key is empty"],
    ["k".repeat(129), "the key is 129 bytes, above the limit of 128"],
    ["é".repeat(65), "the key is 130 bytes, above the limit of 128"],
    ["a=b", 'the key holds "="'],
    ["a\tb", "the key holds a control character"],
    ["a\u0085", "the key holds a control character"],
    [" a", "the key starts or ends with a space"],
    ["a ", "the key starts or ends with a space"],
    ["\ud800", "the key is not valid UTF-8"],
    ["__proto__", 'the key "__proto__" is reserved'],
  ])("key %p: %p", (key, problem) => {
    expect(headerKeyProblem(key)).toBe(problem);
  });

  test("maps: size limits, value types, plain objects only", () => {
    expect(headersProblem({})).toBeNull();
    expect(headersProblem({ a: "", b: "x=y" })).toBeNull();
    expect(headersProblem(Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, "v"])))).toBeNull();
    expect(headersProblem(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])))).toBe("at most 64 headers, got 65");
    expect(headersProblem({ k: "x".repeat(16 * 1024 - 1) })).toBeNull();
    expect(headersProblem({ k: "x".repeat(16 * 1024) })).toBe("headers of at most 16384 bytes in all, got 16385");
    expect(headersProblem({ k: 1 })).toBe('a string value for header "k"');
    expect(headersProblem(new Map([["k", "v"]]))).toBe("a map of strings to strings");
    expect(headersProblem(["k=v"])).toBe("a map of strings to strings");
    expect(headersProblem(null)).toBe("a map of strings to strings");
  });

  test("`--header` arguments split at the first '='", () => {
    expect(parseHeaderArg("a=b=c")).toEqual(["a", "b=c"]);
    expect(parseHeaderArg("a=")).toEqual(["a", ""]);
    expect(() => parseHeaderArg("ab")).toThrow('--header "ab" has no "="');
    expect(() => parseHeaderArg("=b")).toThrow("the key is empty");
    expect(parseHeaders(["a=1", "b=2=3"])).toEqual({ a: "1", b: "2=3" });
    expect(() => parseHeaders(["a=1", "a=2"])).toThrow('--header "a" is given twice');
  });

  test("`--ttl`: durations above zero", () => {
    expect(parseTtl("500ms")).toBe(500);
    expect(parseTtl("30s")).toBe(30_000);
    expect(parseTtl("2h")).toBe(7_200_000);
    expect(parseTtl("1d")).toBe(86_400_000);
    for (const bad of ["0", "0s", "-1s", "1y", "abc", ""]) expect(() => parseTtl(bad)).toThrow(/--ttl must be a duration/);
  });
});

describe("codec", () => {
  const data = new Uint8Array([1]);
  const payloads = [data, data];

  test("pub and pubs with headers and ttl pass; bad ones are BAD_REQUEST naming the field", () => {
    expect(decode(encode({ op: "pub", rid: 1, id: 1, topic: "t", data, headers: { k: "v" }, ttl: 1 }))).toMatchObject({ headers: { k: "v" }, ttl: 1 });
    expect(decode(encode({ op: "pubs", rid: 1, id: 1, topic: "t", payloads, headers: [{ k: "v" }, {}], ttl: 5 }))).toMatchObject({ headers: [{ k: "v" }, {}] });
    expect(() => decode(encode({ op: "pub", rid: 1, id: 1, topic: "t", data, ttl: 0 }))).toThrow('pub: field "ttl" must be a number of ms >= 1');
    expect(() => decode(encode({ op: "pub", rid: 1, id: 1, topic: "t", data, ttl: 1.5 }))).toThrow('field "ttl"');
    expect(() => decode(encode({ op: "pub", rid: 1, id: 1, topic: "t", data, headers: { "": "v" } }))).toThrow('pub: field "headers" must be a valid header key');
    expect(() => decode(encode({ op: "pubs", rid: 1, id: 1, topic: "t", payloads, headers: { k: "v" } }))).toThrow('pubs: field "headers" must be an array of up to 1024 header maps');
  });

  test("msgs with headers and expires pass; entries of the wrong kind are BAD_REQUEST", () => {
    const msgs = { op: "msgs", id: 1, topic: "t", seq: 1, times: [1, 2], payloads };
    expect(decode(encode({ ...msgs, headers: [{}, { k: "v" }], expires: [0, 123] }))).toMatchObject({ headers: [{}, { k: "v" }], expires: [0, 123] });
    expect(() => decode(encode({ ...msgs, headers: [{}, { k: 2 }] }))).toThrow('msgs: field "headers"');
    expect(() => decode(encode({ ...msgs, expires: [-1, 0] }))).toThrow('msgs: field "expires"');
  });
});

describe("a push's headers and expiries on the local broker", () => {
  const frame = (extra: Partial<MsgsFrame>): MsgsFrame => ({ op: "msgs", id: 1, topic: "t", seq: 1, times: [1, 2], payloads: [new Uint8Array([1]), new Uint8Array([2])], ...extra });

  test("lists that do not have one entry per payload are refused", () => {
    expect(pushedExtraProblem(frame({}))).toBeNull();
    expect(pushedExtraProblem(frame({ headers: [{}] }))).toBe("msgs: 1 header maps for 2 payloads");
    expect(pushedExtraProblem(frame({ expires: [1, 2, 3] }))).toBe("msgs: 3 expiries for 2 payloads");
  });

  test("`{}` and 0 mean none: the message gets no field", () => {
    const f = frame({ headers: [{}, { k: "v" }], expires: [0, 99] });
    const first: Message = { topic: "t", seq: 1, time: 1, data: new Uint8Array([1]) };
    const second: Message = { topic: "t", seq: 2, time: 2, data: new Uint8Array([2]) };
    addPushedExtra(first, f, 0);
    addPushedExtra(second, f, 1);
    expect(Object.keys(first).sort()).toEqual(["data", "seq", "time", "topic"]);
    expect(second).toMatchObject({ headers: { k: "v" }, expiresAt: 99 });
  });
});

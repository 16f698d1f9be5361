/** splitLines, the reader of `mq pub --lines`, fed in awkward chunks. */
import { describe, expect, test } from "bun:test";
import { splitLines } from "../../lib/cli/commands.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function lines(chunks: string[], maxLine?: number): Promise<string[]> {
  const out: string[] = [];
  for await (const line of splitLines(chunks.map(bytes), maxLine)) out.push(text(line));
  return out;
}

describe("splitLines", () => {
  test("LF and CRLF ends, fed a byte at a time or whole, give the same lines; no empty line for a final newline", async () => {
    const input = "one\r\ntwo\n\nthree\r\n";
    expect(await lines([input])).toEqual(["one", "two", "", "three"]);
    expect(await lines([...input])).toEqual(["one", "two", "", "three"]);
  });

  test("a final \\r with no newline after it is kept: it is data", async () => {
    expect(await lines(["a\r\nb\r"])).toEqual(["a", "b\r"]);
    expect(await lines(["a\r\n", "b", "\r"])).toEqual(["a", "b\r"]);
  });

  test("a line longer than maxLine ends the lines with its first maxLine + 1 bytes; one of maxLine bytes with CRLF passes", async () => {
    expect(await lines(["abc\n", "0123456789", "0123456789", "\nnot read\n"], 4)).toEqual(["abc", "01234"]);
    expect(await lines(["abcd", "\r", "\nnext\n"], 4)).toEqual(["abcd", "next"]);
  });
});

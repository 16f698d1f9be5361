/**
 * FileClientRegistry on damaged files: one bad bit or a cut `clients` loses nothing (the copy
 * has it); damage in both copies loses only those ids, which then answer as lost; and no id
 * is ever handed out twice, whatever records are lost.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FileClientRegistry } from "../../lib/store/client-registry.ts";
import { HEADER_BYTES } from "../../lib/store/record-file.ts";
import { captureLog, copiesOf, flipBitInRecord, legacyBytes, level } from "./damage-kit.ts";

let dir: string;
let opened: FileClientRegistry[];
const file = () => path.join(dir, "clients");

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-clients-"));
  opened = [];
});

afterEach(async () => {
  for (const o of opened) await o.close().catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
});

async function open(): Promise<{ reg: FileClientRegistry; errors: string[]; lines: string[] }> {
  const { result: reg, lines } = await captureLog(() => new FileClientRegistry(file()));
  opened.push(reg);
  return { reg, errors: level(lines, "error"), lines };
}

/** Ids 1 and 2 for broker "A", 3 for "B", 4 for "A" destroyed again. */
async function fourIds(): Promise<void> {
  const { reg } = await open();
  expect([await reg.create("A"), await reg.create("A"), await reg.create("B"), await reg.create("A")]).toEqual([1, 2, 3, 4]);
  await reg.destroy(4);
  await reg.close();
}

const owners = (reg: FileClientRegistry) => [1, 2, 3, 4].map((id) => reg.owner(id) ?? null);

describe("ClientRegistry damage", () => {
  test("ClientRegistry keeps every id and reissues none when one bit of the first record of `clients` flips", async () => {
    await fourIds();
    flipBitInRecord(file(), 0);
    const { reg, errors } = await open();
    expect(owners(reg)).toEqual(["A", "A", "B", null]);
    expect(errors).toEqual([expect.stringContaining(`${file()}: damaged bytes at 32..`)]);
    expect(errors[0]).toContain(`record 0 of 5 recovered from ${file()}.mirror ({"c":1,"o":"A"})`);
    expect(await reg.create("C")).toBe(5);
    expect(reg.lost()).toEqual([]);
  });

  test("ClientRegistry keeps every id and reissues none when `clients` is truncated to 0 bytes", async () => {
    await fourIds();
    fs.truncateSync(file(), 0);
    const { reg, errors } = await open();
    expect(owners(reg)).toEqual(["A", "A", "B", null]);
    expect(errors).toEqual([expect.stringContaining(`${file()}: empty (0 bytes); records 0-4 of 5 recovered from ${file()}.mirror`)]);
    expect(await reg.create("C")).toBe(5);
  });

  test("ClientRegistry loses only the id whose record is damaged in both copies; it answers as lost and is never reissued", async () => {
    await fourIds();
    for (const f of copiesOf(file())) flipBitInRecord(f, 0); // {c: 1, o: "A"}
    const { reg, errors } = await open();
    expect(owners(reg)).toEqual([null, "A", "B", null]);
    expect([1, 2, 3, 4].map((id) => reg.isLost(id))).toEqual([true, false, false, false]);
    expect(reg.lost()).toEqual([1, 1]);
    expect(reg.ownedBy("A")).toEqual([2]);
    expect(errors).toContainEqual(expect.stringContaining("record 0 of 5 damaged in both copies: what they recorded is lost"));
    expect(errors).toContainEqual(expect.stringContaining("1 ids neither live nor known destroyed (1) are marked lost"));
    expect(await reg.create("C")).toBe(5);
    await reg.close();
    // Remembered: the next open is clean and id 1 is still lost.
    const again = await open();
    expect(again.lines).toEqual([]);
    expect(again.reg.isLost(1)).toBe(true);
    expect(owners(again.reg)).toEqual([null, "A", "B", null]);
    expect(await again.reg.create("C")).toBe(6);
  });

  test("ClientRegistry reissues no id when every record is lost (both copies cut back to their headers)", async () => {
    await fourIds();
    for (const f of copiesOf(file())) fs.truncateSync(f, HEADER_BYTES);
    const { reg, errors } = await open();
    // Cut at record boundaries, both copies look whole: no loss can be seen, but the mark holds.
    expect(errors).toEqual([]);
    expect(reg.size).toBe(0);
    expect(await reg.create("C")).toBe(5);
  });

  test("ClientRegistry moves past an id named by a subscriber index when both copies are gone, headers included", async () => {
    await fourIds();
    for (const f of copiesOf(file())) fs.truncateSync(f, 0);
    const { reg, errors } = await open();
    expect(errors).toContainEqual(expect.stringContaining("neither copy ends cleanly"));
    const witnessed = await captureLog(() => reg.witness(3));
    expect(level(witnessed.lines, "error")).toEqual([expect.stringContaining("ids 1-3 are marked lost and ids are handed out from 4 on")]);
    expect(await reg.create("C")).toBe(4);
    await reg.witness(2); // below the next id: nothing to do
    await reg.close();
    const again = await open();
    expect([1, 2, 3, 4].map((id) => again.reg.isLost(id))).toEqual([true, true, true, false]);
    expect(again.reg.owner(4)).toBe("C");
    expect(await again.reg.create("C")).toBe(5);
  });

  test("ClientRegistry does not call a destroyed id lost when nothing was damaged", async () => {
    await fourIds();
    const { reg, lines } = await open();
    expect(lines).toEqual([]);
    expect(reg.isLost(4)).toBe(false);
    expect(reg.lost()).toEqual([]);
  });

  test("ClientRegistry reads a `clients` file of the previous format and converts it", async () => {
    // A compacted file as the previous version wrote it (next 10), then events.
    fs.writeFileSync(file(), legacyBytes([{ n: 10 }, { c: 2, o: "A" }, { c: 7, o: "B" }, { c: 10, o: "A" }, { d: 7 }]));
    const { reg, errors, lines } = await open();
    expect(errors).toEqual([]);
    expect(level(lines, "info")).toEqual([expect.stringContaining("converted from the previous format")]);
    expect([2, 7, 10].map((id) => reg.owner(id) ?? null)).toEqual(["A", null, "A"]);
    expect(await reg.create("B")).toBe(11);
    await reg.close();
    const again = await open();
    expect(again.lines).toEqual([]);
    expect([2, 7, 10, 11].map((id) => again.reg.owner(id) ?? null)).toEqual(["A", null, "A", "B"]);
    expect(await again.reg.create("B")).toBe(12);
    await again.reg.close();
    // The converted headers carry the mark too: losing every record reissues nothing.
    for (const f of copiesOf(file())) fs.truncateSync(f, HEADER_BYTES);
    expect(await (await open()).reg.create("B")).toBe(13);
  });
});

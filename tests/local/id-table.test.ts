/**
 * IdTable (the local broker's `ids`) on damaged files: one bad bit or a cut `ids` loses
 * nothing (the copy has it); damage in both copies loses only those local ids, which then
 * answer as lost; and no local id is ever handed out twice.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { IdTable } from "../../lib/local/id-table.ts";
import { HEADER_BYTES } from "../../lib/store/record-file.ts";
import { captureLog, copiesOf, flipBitInRecord, legacyBytes, level } from "../store/damage-kit.ts";

let dir: string;
let opened: IdTable[];
const file = () => path.join(dir, "ids");

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-ids-"));
  opened = [];
});

afterEach(async () => {
  for (const o of opened) await o.close().catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
});

async function open(): Promise<{ ids: IdTable; errors: string[]; lines: string[] }> {
  const { result: ids, lines } = await captureLog(() => new IdTable(file()));
  opened.push(ids);
  return { ids, errors: level(lines, "error"), lines };
}

/** Local 1 → global 11, 2 → 12, 3 → 13 (removed again). */
async function threeIds(): Promise<void> {
  const { ids } = await open();
  expect([await ids.add(11), await ids.add(12), await ids.add(13)]).toEqual([1, 2, 3]);
  await ids.remove(3);
  await ids.close();
}

const globals = (ids: IdTable) => [1, 2, 3].map((l) => ids.global(l) ?? null);

describe("IdTable damage", () => {
  test("IdTable keeps every id and reissues none when one bit of the first record of `ids` flips", async () => {
    await threeIds();
    flipBitInRecord(file(), 0);
    const { ids, errors } = await open();
    expect(globals(ids)).toEqual([11, 12, null]);
    expect(ids.local(11)).toBe(1);
    expect(errors).toEqual([expect.stringContaining(`${file()}: damaged bytes at 32..`)]);
    expect(errors[0]).toContain(`record 0 of 4 recovered from ${file()}.mirror ({"l":1,"g":11})`);
    expect(await ids.add(14)).toBe(4);
  });

  test("IdTable keeps every id and reissues none when `ids` is truncated to 0 bytes", async () => {
    await threeIds();
    fs.truncateSync(file(), 0);
    const { ids, errors } = await open();
    expect(globals(ids)).toEqual([11, 12, null]);
    expect(errors).toEqual([expect.stringContaining(`${file()}: empty (0 bytes); records 0-3 of 4 recovered from ${file()}.mirror`)]);
    expect(await ids.add(14)).toBe(4);
  });

  test("IdTable loses only the id whose record is damaged in both copies; it answers as lost and is never reissued", async () => {
    await threeIds();
    for (const f of copiesOf(file())) flipBitInRecord(f, 0); // {l: 1, g: 11}
    const { ids, errors } = await open();
    expect(globals(ids)).toEqual([null, 12, null]);
    expect([1, 2, 3].map((l) => ids.isLost(l))).toEqual([true, false, false]);
    expect(errors).toContainEqual(expect.stringContaining("record 0 of 4 damaged in both copies: what they recorded is lost"));
    expect(errors).toContainEqual(expect.stringContaining("1 local ids neither mapped nor known destroyed (1) are marked lost"));
    expect(await ids.add(14)).toBe(4);
    await ids.close();
    const again = await open();
    expect(again.lines).toEqual([]);
    expect(again.ids.isLost(1)).toBe(true);
    expect(await again.ids.add(15)).toBe(5);
  });

  test("IdTable reissues no local id when every record is lost (both copies cut back to their headers)", async () => {
    await threeIds();
    for (const f of copiesOf(file())) fs.truncateSync(f, HEADER_BYTES);
    const { ids } = await open();
    expect(ids.size).toBe(0);
    expect(await ids.add(14)).toBe(4);
  });

  test("IdTable reads an `ids` file of the previous format and converts it", async () => {
    fs.writeFileSync(file(), legacyBytes([{ l: 1, g: 11 }, { l: 2, g: 12 }, { d: 1 }, { l: 3, g: 40 }]));
    const { ids, errors, lines } = await open();
    expect(errors).toEqual([]);
    expect(level(lines, "info")).toEqual([expect.stringContaining("converted from the previous format")]);
    expect(globals(ids)).toEqual([null, 12, 40]);
    expect(ids.isLost(1)).toBe(false);
    expect(await ids.add(41)).toBe(4);
    await ids.close();
    const again = await open();
    expect(again.lines).toEqual([]);
    expect([...globals(again.ids), again.ids.global(4)]).toEqual([null, 12, 40, 41]);
  });
});

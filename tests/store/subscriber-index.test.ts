import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MemorySubscriberIndex } from "../../lib/store/memory-store.ts";
import { OpenFiles } from "../../lib/store/open-files.ts";
import { FileSubscriberIndex } from "../../lib/store/subscriber-index.ts";
import type { SubscriberIndex } from "../../lib/store/types.ts";
import { captureLog, copiesOf, flipBitInRecord, legacyBytes, level } from "./damage-kit.ts";
import { runSubscriberIndexSuite } from "./subscriber-index.contract.ts";

runSubscriberIndexSuite("FileSubscriberIndex", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-subscribers-"));
  const file = path.join(dir, "subscribers");
  let current: SubscriberIndex = new FileSubscriberIndex(file);
  return {
    index: current,
    reopen: async () => {
      await current.close();
      current = new FileSubscriberIndex(file);
      return current;
    },
    cleanup: async () => {
      await current.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}, { persistent: true });

// Both copies in a pool of one open file: every write closes one copy to open the other.
runSubscriberIndexSuite("FileSubscriberIndex, 1 open file", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-subscribers-"));
  const file = path.join(dir, "subscribers");
  const files = new OpenFiles(1);
  let current: SubscriberIndex = new FileSubscriberIndex(file, files);
  return {
    index: current,
    reopen: async () => {
      await current.close();
      current = new FileSubscriberIndex(file, files);
      return current;
    },
    cleanup: async () => {
      await current.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}, { persistent: true });

runSubscriberIndexSuite("MemorySubscriberIndex", async () => {
  const index = new MemorySubscriberIndex();
  return { index, cleanup: () => index.close() };
}, { persistent: false });

// ---------------------------------------------------------------------------------------
// FileSubscriberIndex on damaged files (one bad bit, a cut file, the previous format)

describe("FileSubscriberIndex damage", () => {
  let dir: string;
  let opened: SubscriberIndex[];
  const file = () => path.join(dir, "subscribers");

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-subscribers-damage-"));
    opened = [];
  });

  afterEach(async () => {
    for (const o of opened) await o.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function open(): Promise<{ index: FileSubscriberIndex; errors: string[]; lines: string[] }> {
    const { result: index, lines } = await captureLog(() => new FileSubscriberIndex(file()));
    opened.push(index);
    return { index, errors: level(lines, "error"), lines };
  }

  /** Subscribers 1 (cursor 40), 2 (5) and 3 (9, subscribed and moved). */
  async function threeSubscribers(): Promise<void> {
    const { index } = await open();
    await index.add(1, 1);
    await index.add(2, 5);
    await index.add(3, 9);
    index.advance(1, 40);
    await index.close();
  }

  const entries = (index: SubscriberIndex) => [...index.cursors].sort((a, b) => a[0] - b[0]);

  test("FileSubscriberIndex keeps every subscriber when one bit of the first record of `subscribers` flips (from the copy)", async () => {
    await threeSubscribers();
    flipBitInRecord(file(), 0);
    const { index, errors } = await open();
    expect(entries(index)).toEqual([[1, 40], [2, 5], [3, 9]]);
    expect(errors).toEqual([`[error] [store] ${file()}: damaged bytes at 32..59; record 0 of 4 recovered from ${file()}.mirror ({"s":1,"c":1})`]);
  });

  test("FileSubscriberIndex keeps every subscriber when `subscribers` is truncated to 0 bytes", async () => {
    await threeSubscribers();
    fs.truncateSync(file(), 0);
    const { index, errors } = await open();
    expect(entries(index)).toEqual([[1, 40], [2, 5], [3, 9]]);
    expect(errors).toEqual([expect.stringContaining(`${file()}: empty (0 bytes); records 0-3 of 4 recovered from ${file()}.mirror`)]);
  });

  test("FileSubscriberIndex loses only the subscriber whose record is damaged in both copies, and logs what is left", async () => {
    await threeSubscribers();
    for (const f of copiesOf(file())) flipBitInRecord(f, 1); // {s: 2, c: 5}
    const { index, errors } = await open();
    expect(entries(index)).toEqual([[1, 40], [3, 9]]);
    expect(errors).toContainEqual(expect.stringContaining("record 1 of 4 damaged in both copies: what they recorded is lost"));
    expect(errors).toContainEqual(expect.stringContaining(`${file()}: after the loss`));
    expect(errors[errors.length - 1]).toEndWith("subscribers now: id 1 at 40, id 3 at 9");
    // The survivors are written back: the next open is clean and keeps them.
    await index.close();
    const again = await open();
    expect(entries(again.index)).toEqual([[1, 40], [3, 9]]);
    expect(again.lines).toEqual([]);
  });

  test("FileSubscriberIndex reads a `subscribers` file of the previous format and converts it", async () => {
    // Written as the previous version did: events from byte 0, one copy.
    fs.writeFileSync(file(), legacyBytes([{ s: 1, c: 1 }, { s: 2, c: 1 }, { a: 1, c: 12 }, { s: 3, c: 4 }, { u: 2 }, { a: 3, c: 6 }]));
    const { index, errors, lines } = await open();
    expect(entries(index)).toEqual([[1, 12], [3, 6]]);
    expect(errors).toEqual([]);
    expect(level(lines, "info")).toEqual([expect.stringContaining(`${file()}: converted from the previous format`)]);
    expect(fs.readFileSync(file()).equals(fs.readFileSync(`${file()}.mirror`))).toBe(true);
    await index.add(4, 2);
    await index.close();
    const again = await open();
    expect(entries(again.index)).toEqual([[1, 12], [3, 6], [4, 2]]);
    expect(again.lines).toEqual([]);
  });
});

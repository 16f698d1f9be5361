import { describe, expect, spyOn, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { expandMsgIdRuns } from "../../lib/store/id-run.ts";
import { MemoryTopicLog } from "../../lib/store/memory-store.ts";
import { OpenFiles } from "../../lib/store/open-files.ts";
import { FileTopicLog, tailCacheBytes, type TopicLogOptions } from "../../lib/store/topic-log.ts";
import type { TopicLog } from "../../lib/store/types.ts";
import { FILE_HEADER, recordSize } from "../../lib/store/segment.ts";
import { runTopicLogSuite, type TopicLogFixture, type TopicLogTraits } from "./topic-log.contract.ts";

function fileLog(options: Partial<TopicLogOptions>): () => Promise<TopicLogFixture> {
  const opts: TopicLogOptions = {
    fsync: "never",
    fsyncIntervalMs: 1000,
    maxSegmentBytes: 64 * 1024 * 1024,
    ...options,
  };
  return async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-topic-log-"));
    let current: TopicLog = FileTopicLog.open(dir, opts);
    return {
      log: current,
      reopen: async () => {
        await current.close();
        current = FileTopicLog.open(dir, opts);
        return current;
      },
      cleanup: async () => {
        await current.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

/**
 * A file log deletes whole segments below `before`, never the newest: with 100-byte payloads
 * a segment holds the records that fit before it reaches `maxSegmentBytes` (one more may pass it).
 */
function fileTraits(maxSegmentBytes: number): TopicLogTraits {
  const perSegment = Math.ceil((maxSegmentBytes - FILE_HEADER) / recordSize(100));
  return {
    persistent: true,
    trimmed: (before, total) => {
      const segments = Math.ceil(total / perSegment);
      return Math.min(Math.floor((before - 1) / perSegment), segments - 1) * perSegment;
    },
  };
}

runTopicLogSuite("FileTopicLog fsync always", fileLog({ fsync: "always" }), fileTraits(64 * 1024 * 1024));
runTopicLogSuite("FileTopicLog fsync never", fileLog({ fsync: "never" }), fileTraits(64 * 1024 * 1024));
// Small segments: every test also crosses segment boundaries.
runTopicLogSuite("FileTopicLog fsync never, 1 KiB segments", fileLog({ fsync: "never", maxSegmentBytes: 1024 }), fileTraits(1024));
// One open file for segments and head together: nearly every append and read closes a file and opens another.
runTopicLogSuite("FileTopicLog fsync always, 1 KiB segments, 1 open file", fileLog({ fsync: "always", maxSegmentBytes: 1024, files: new OpenFiles(1) }), fileTraits(1024));
runTopicLogSuite("FileTopicLog fsync interval, 1 KiB segments, 2 open files", fileLog({ fsync: "interval", fsyncIntervalMs: 5, maxSegmentBytes: 1024, files: new OpenFiles(2) }), fileTraits(1024));

runTopicLogSuite(
  "MemoryTopicLog",
  async () => {
    const log = new MemoryTopicLog();
    return { log, cleanup: () => log.close() };
  },
  { persistent: false, trimmed: (before, total) => Math.min(before - 1, total) },
);

describe("FileTopicLog tail cache", () => {
  const payloadOf = (seq: number, size: number) => Buffer.alloc(size, seq % 251);

  test("FileTopicLog serves the right bytes when one commit is bigger than the cache, and after more small ones", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-tail-"));
    const log = FileTopicLog.open(dir, { fsync: "never", fsyncIntervalMs: 1000, maxSegmentBytes: 64 * 1024 * 1024 });
    try {
      // One commit of ~10 MiB (more than a topic's 8 MiB tail): only its newest part can be cached.
      const big = 10_000;
      await Promise.all(Array.from({ length: big }, (_, i) => log.append(payloadOf(i + 1, 1024), i)));
      // Then small commits, one at a time.
      for (let i = big + 1; i <= big + 100; i++) await log.append(payloadOf(i, 10), i);
      const check = async (from: number, count: number) => {
        const got = await log.read(from, count, Number.MAX_SAFE_INTEGER);
        expect(got.map((m) => m.seq)).toEqual(Array.from({ length: count }, (_, k) => from + k));
        for (const m of got) expect(Buffer.from(m.data).equals(payloadOf(m.seq, m.seq <= big ? 1024 : 10))).toBe(true);
      };
      await check(1, 50); // from disk
      await check(big - 50, 100); // across the big commit's end and the small ones
      await check(big + 90, 11); // newest
      await check(1500, big - 1500 + 101); // a long run across disk and cache
    } finally {
      await log.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("FileTopicLog tail cache size", () => {
  test("a reader 20,000 messages of 128 B behind the newest (a client's window, bench-peers s1) is served from memory, not the segment", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-tail-"));
    const opts = { fsync: "never" as const, fsyncIntervalMs: 1000, maxSegmentBytes: 64 * 1024 * 1024 };
    const log = FileTopicLog.open(dir, opts);
    try {
      const payload = (seq: number) => Buffer.alloc(128, seq % 251);
      for (let from = 1; from <= 20_000; from += 500) {
        await log.appendBatch(Array.from({ length: 500 }, (_, k) => payload(from + k)), from, new Array(500));
      }
      // Every payload byte on disk flipped: a read from the segment would find no intact record.
      const file = path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith(".log"))!);
      const bytes = fs.readFileSync(file);
      for (let seq = 1; seq <= 20_000; seq++) {
        const at = FILE_HEADER + seq * recordSize(128) - 1;
        bytes[at] = bytes[at]! ^ 0xff;
      }
      fs.writeFileSync(file, bytes);
      const got = await log.read(1, 20_000, Number.MAX_SAFE_INTEGER);
      expect(got.length).toBe(20_000);
      for (const m of got) if (!Buffer.from(m.data).equals(payload(m.seq))) throw new Error(`seq ${m.seq}: not the payload appended`);
    } finally {
      await log.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("FileTopicLog tail cache: the readers' floor", () => {
  test("what every reader has read leaves the cache once 64 KiB more is cached; a read below the floor comes from the segment", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-tail-"));
    const log = FileTopicLog.open(dir, { fsync: "never", fsyncIntervalMs: 1000, maxSegmentBytes: 64 * 1024 * 1024 });
    const entry = 128 + 64; // payload + the cache's count per message
    const payload = (seq: number) => Buffer.alloc(128, seq % 251);
    const append = (from: number, count: number) => log.appendBatch(Array.from({ length: count }, (_, k) => payload(from + k)), from, new Array(count));
    const before = tailCacheBytes();
    try {
      let floor = 1;
      log.readFloor = () => floor;
      await append(1, 500); // 96,000 B cached: the floor is asked, and keeps them all
      await append(501, 500);
      expect(tailCacheBytes() - before).toBe(1000 * entry);
      floor = 901; // every reader has read up to 900
      await append(1001, 512); // 98,304 B more: asked again
      expect(tailCacheBytes() - before).toBe((1512 - 900) * entry);
      floor = 1400;
      await append(1513, 10); // 1,920 B: not asked until 64 KiB more
      expect(tailCacheBytes() - before).toBe((1522 - 900) * entry);
      // Every seq is still read back, those below the floor from the segment.
      const got = await log.read(1, 2000, Number.MAX_SAFE_INTEGER);
      expect(got.map((m) => m.seq)).toEqual(Array.from({ length: 1522 }, (_, k) => k + 1));
      for (const m of got) if (!Buffer.from(m.data).equals(payload(m.seq))) throw new Error(`seq ${m.seq}: not the payload appended`);
      // Without a floor (no server set one) the cache keeps what its bounds allow.
      log.readFloor = undefined;
      await append(1523, 500);
      expect(tailCacheBytes() - before).toBe((2022 - 900) * entry);
    } finally {
      await log.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(tailCacheBytes()).toBe(before); // a closed log holds nothing
  });
});

describe("FileTopicLog.recentMsgIds", () => {
  const ID_BYTES = 7; // "id-0001"
  const idOf = (seq: number) => `id-${String(seq).padStart(4, "0")}`;

  /** 3000 messages of 100 bytes (about 420 KiB: several sparse-index entries), each with a msg-id and `time` = seq. */
  async function filled(dir: string): Promise<FileTopicLog> {
    const log = FileTopicLog.open(dir, { fsync: "never", fsyncIntervalMs: 1000, maxSegmentBytes: 64 * 1024 * 1024 });
    await Promise.all(Array.from({ length: 3000 }, (_, i) => log.append(Buffer.alloc(100, i % 251), i + 1, { msgId: idOf(i + 1) })));
    return log;
  }

  test("FileTopicLog.recentMsgIds starts at the right place of a segment for any `since`", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-msgids-"));
    let log = await filled(dir);
    try {
      await log.close();
      log = FileTopicLog.open(dir, { fsync: "never", fsyncIntervalMs: 1000, maxSegmentBytes: 64 * 1024 * 1024 });
      for (const since of [0, 1, 2, 600, 1024, 2047, 2500, 2999, 3000, 3001]) {
        const got = await log.recentMsgIds(since, Number.MAX_SAFE_INTEGER);
        const first = Math.max(since, 1);
        expect({ since, n: got.length, first: got[0]?.seq, last: got.at(-1)?.seq }).toEqual({ since, n: Math.max(0, 3001 - first), first: first <= 3000 ? first : undefined, last: first <= 3000 ? 3000 : undefined });
        for (const r of got) if (r.msgId !== idOf(r.seq) || r.time !== r.seq) throw new Error(`record ${JSON.stringify(r)}`);
      }
    } finally {
      await log.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  /** A log in a fresh directory (`fsync: "never"`), closed and removed when the test's `await using` ends; `reopen` reads its files again. */
  function freshLog(maxSegmentBytes = 64 * 1024 * 1024) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-msgids-"));
    const open = () => FileTopicLog.open(dir, { fsync: "never", fsyncIntervalMs: 1000, maxSegmentBytes });
    const fresh = {
      dir,
      log: open(),
      async reopen(): Promise<FileTopicLog> {
        await fresh.log.close();
        return (fresh.log = open());
      },
      async [Symbol.asyncDispose]() {
        await fresh.log.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
    return fresh;
  }
  const messages = (n: number) => Array.from({ length: n }, () => Buffer.from("m"));

  test("FileTopicLog.recentMsgIds reads records bigger than its read chunk and small ones across segments, the same on every call", async () => {
    // Every 7th message is 300 KiB (above the 256 KiB chunk the scan reuses); 1 MiB segments.
    const sizeOf = (seq: number) => (seq % 7 === 0 ? 300 * 1024 : 100 + (seq % 50));
    await using fresh = freshLog(1024 * 1024);
    for (let seq = 1; seq <= 60; seq++) await fresh.log.append(Buffer.alloc(sizeOf(seq), seq), seq, { msgId: idOf(seq) });
    await fresh.log.close();
    expect(fs.readdirSync(fresh.dir).filter((n) => n.endsWith(".log")).length).toBeGreaterThan(2);
    const log = await fresh.reopen();
    const all = Array.from({ length: 60 }, (_, i) => ({ msgId: idOf(i + 1), seq: i + 1, time: i + 1 }));
    expect(await log.recentMsgIds(0, Number.MAX_SAFE_INTEGER)).toEqual(all);
    expect(await log.recentMsgIds(0, Number.MAX_SAFE_INTEGER)).toEqual(all);
    expect(await log.recentMsgIds(30, Number.MAX_SAFE_INTEGER)).toEqual(all.slice(29));
  });

  test("FileTopicLog.recentMsgIdRuns: the ids of one append that follow each other are one run; another id, a gap or another append start the next; `limit` counts ids", async () => {
    await using fresh = freshLog();
    const log = fresh.log;
    await log.appendBatch(messages(4), 100, [], { prefix: "P:", from: 1 }); // seqs 1-4: P:1..P:4
    await log.appendBatch(messages(2), 200, [], { prefix: "P:", from: 5 }); // seqs 5-6, another append: P:5, P:6
    await log.appendBatch(messages(3), 300, [{ msgId: "Q:1" }, { msgId: "Q:3" }, { msgId: "x" }]); // seqs 7-9: a gap, then not a run id
    await log.appendBatch(messages(2), 400, [{ msgId: "R:09" }, { msgId: "R:10" }]); // seqs 10-11: "R:09" is not a run id (leading zero)
    await log.append(Buffer.from("none"), 500); // seq 12: no id
    await log.appendBatch(messages(3), 600, [], { prefix: "日本:", from: 7 }); // seqs 13-15
    const runs = await log.recentMsgIdRuns(0, Number.MAX_SAFE_INTEGER);
    expect(runs).toEqual([
      { msgId: "P:1", seq: 1, time: 100, count: 4 },
      { msgId: "P:5", seq: 5, time: 200, count: 2 },
      { msgId: "Q:1", seq: 7, time: 300, count: 1 },
      { msgId: "Q:3", seq: 8, time: 300, count: 1 },
      { msgId: "x", seq: 9, time: 300, count: 1 },
      { msgId: "R:09", seq: 10, time: 400, count: 1 },
      { msgId: "R:10", seq: 11, time: 400, count: 1 },
      { msgId: "日本:7", seq: 13, time: 600, count: 3 },
    ]);
    // recentMsgIds is the same ids one by one.
    expect(await log.recentMsgIds(0, Number.MAX_SAFE_INTEGER)).toEqual(expandMsgIdRuns(runs));
    // 14 ids. The newest 12: P:1 and P:2 dropped from the first run; the newest 10: all of it.
    expect((await log.recentMsgIdRuns(0, 12))[0]).toEqual({ msgId: "P:3", seq: 3, time: 100, count: 2 });
    expect((await log.recentMsgIdRuns(0, 10))[0]).toEqual({ msgId: "P:5", seq: 5, time: 200, count: 2 });
    expect((await log.recentMsgIdRuns(0, 3)).map((r) => [r.msgId, r.count])).toEqual([["日本:7", 3]]);
    expect((await log.recentMsgIds(0, 5)).map((r) => r.msgId)).toEqual(["R:09", "R:10", "日本:7", "日本:8", "日本:9"]);
  });

  test("FileTopicLog.recentMsgIdRuns merges only the next id of the same prefix at the next seq: not across a message without an id, nor across prefixes whose numbers follow", async () => {
    await using fresh = freshLog();
    await fresh.log.appendBatch(messages(3), 700, [{ msgId: "P:1" }, undefined, { msgId: "P:2" }]); // seqs 1-3
    await fresh.log.appendBatch(messages(2), 700, [{ msgId: "A:5" }, { msgId: "B:6" }]); // seqs 4-5, the same time
    expect(await fresh.log.recentMsgIdRuns(0, Number.MAX_SAFE_INTEGER)).toEqual([
      { msgId: "P:1", seq: 1, time: 700, count: 1 },
      { msgId: "P:2", seq: 3, time: 700, count: 1 },
      { msgId: "A:5", seq: 4, time: 700, count: 1 },
      { msgId: "B:6", seq: 5, time: 700, count: 1 },
    ]);
  });

  test("FileTopicLog.recentMsgIdRuns: a run longer than the scan's read chunk stays one run (its prefix is a copy, not a view of the chunk)", async () => {
    await using fresh = freshLog();
    // A message without an id first, so that the run starts inside a chunk (every chunk starts at
    // a record); then 3,000 records of 100–136 B payloads, ~450 KiB, across the 256 KiB chunk.
    await fresh.log.append(Buffer.alloc(1000, 1), 700);
    await fresh.log.appendBatch(Array.from({ length: 3000 }, (_, i) => Buffer.alloc(100 + (i % 37), i % 251)), 800, [], { prefix: "producer-7:", from: 1 });
    await fresh.log.appendBatch(Array.from({ length: 3 }, () => Buffer.alloc(100, 9)), 900, [], { prefix: "producer-7:", from: 3001 });
    expect(await fresh.log.recentMsgIdRuns(0, Number.MAX_SAFE_INTEGER)).toEqual([
      { msgId: "producer-7:1", seq: 2, time: 800, count: 3000 },
      { msgId: "producer-7:3001", seq: 3002, time: 900, count: 3 },
    ]);
  });

  test("FileTopicLog.recentMsgIds keeps a leading U+FEFF of an id (the wire keeps it: it is not a byte order mark to drop)", async () => {
    await using fresh = freshLog();
    await fresh.log.append(Buffer.from("a"), 1, { msgId: "\uFEFFabc", headers: { "\uFEFFkey": "\uFEFFvalue" } });
    await fresh.log.appendBatch([Buffer.from("b"), Buffer.from("c")], 2, [], { prefix: "\uFEFFP:", from: 1 });
    // Read from the file, not from what the log kept of its newest messages.
    const log = await fresh.reopen();
    expect((await log.recentMsgIds(0, Number.MAX_SAFE_INTEGER)).map((r) => r.msgId)).toEqual(["\uFEFFabc", "\uFEFFP:1", "\uFEFFP:2"]);
    expect((await log.read(1, 1, 1 << 20))[0]!.headers).toEqual({ "\uFEFFkey": "\uFEFFvalue" });
  });

  test("FileTopicLog.recentMsgIds skips a damaged record and gives every intact one", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-msgids-"));
    let log = await filled(dir);
    try {
      await log.close();
      // A flipped payload byte of seq 1500: its CRC fails; the records around it are intact.
      const file = path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith(".log"))!);
      const fd = fs.openSync(file, "r+");
      const at = FILE_HEADER + 1499 * recordSize(100, ID_BYTES) + recordSize(50, ID_BYTES);
      fs.writeSync(fd, Buffer.from([0xff ^ (1499 % 251)]), 0, 1, at);
      fs.closeSync(fd);
      log = FileTopicLog.open(dir, { fsync: "never", fsyncIntervalMs: 1000, maxSegmentBytes: 64 * 1024 * 1024 });
      const seqs = (await log.recentMsgIds(0, Number.MAX_SAFE_INTEGER)).map((r) => r.seq);
      expect(seqs).toEqual(Array.from({ length: 3000 }, (_, i) => i + 1).filter((s) => s !== 1500));
    } finally {
      await log.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("FileTopicLog read-ahead (a backlog read in order)", () => {
  const payloadOf = (seq: number, size: number) => Buffer.alloc(size, seq % 251);
  /** Bytes this process has read so far (the kernel's count of read syscalls, /proc/self/io). */
  const bytesRead = () => Number(/^rchar: (\d+)$/m.exec(fs.readFileSync("/proc/self/io", "utf8"))![1]);

  test.skipIf(process.platform !== "linux")("a backlog read 64 messages at a time (the server's push step) reads each byte of its segment about once", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-readahead-"));
    const opts = { fsync: "never" as const, fsyncIntervalMs: 1000, maxSegmentBytes: 64 * 1024 * 1024 };
    let log = FileTopicLog.open(dir, opts);
    try {
      const total = 30_000;
      for (let from = 1; from <= total; from += 500) await log.appendBatch(Array.from({ length: 500 }, (_, k) => payloadOf(from + k, 128)), from, new Array(500));
      await log.close();
      log = FileTopicLog.open(dir, opts); // an empty tail cache: every read goes to the segment
      const fileBytes = fs.statSync(path.join(dir, fs.readdirSync(dir).find((n) => n.endsWith(".log"))!)).size;
      const before = bytesRead();
      let next = 1;
      for (let reads = 0; next <= total && reads < 2 * total; reads++) {
        const got = await log.read(next, 64, Number.MAX_SAFE_INTEGER);
        expect(got.length).toBeGreaterThan(0);
        for (const m of got) {
          if (m.seq !== next) throw new Error(`seq ${m.seq} where ${next} was next`);
          if (!Buffer.from(m.data).equals(payloadOf(m.seq, 128))) throw new Error(`seq ${m.seq}: not the payload appended`);
          next++;
        }
      }
      expect(next).toBe(total + 1);
      // Each read from the sparse index entry before it (up to 64 KiB back) took ~13 times the segment.
      expect(bytesRead() - before).toBeLessThan(1.5 * fileBytes);
    } finally {
      await log.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("--deliver-after fsync: bytes read ahead while a commit synced are not served once that commit failed and its seqs were written again", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mq-readahead-"));
    const opts = { fsync: "always" as const, deliverAfter: "fsync" as const, fsyncIntervalMs: 1000, maxSegmentBytes: 64 * 1024 * 1024 };
    let log = FileTopicLog.open(dir, opts);
    try {
      await log.appendBatch(Array.from({ length: 100 }, (_, k) => payloadOf(k + 1, 128)), 1, new Array(100));
      await log.close();
      log = FileTopicLog.open(dir, opts); // the tail cache is empty: reads go to the segment
      // Seq 101 written, its fdatasync failing later: a read meanwhile takes its bytes too.
      const sync = spyOn(fs, "fdatasync").mockImplementation(((_fd: number, cb: (err: Error | null) => void) => void setTimeout(() => cb(new Error("EIO: simulated")), 50)) as typeof fs.fdatasync);
      let failed: Promise<unknown>;
      try {
        failed = log.append(Buffer.from("never acknowledged"), 101).catch((err: Error) => err.message);
        await Bun.sleep(10);
        expect((await log.read(90, 64, Number.MAX_SAFE_INTEGER)).map((m) => m.seq)).toEqual(Array.from({ length: 11 }, (_, k) => 90 + k));
        expect(await failed).toContain("EIO");
      } finally {
        sync.mockRestore();
      }
      // Seq 101 again, in a commit bigger than the tail cache (8 MiB): its first messages are served from the segment.
      const again = Array.from({ length: 9 }, (_, k) => payloadOf(101 + k, 1024 * 1024));
      expect((await log.appendBatch(again, 102, new Array(9)))[0]).toBe(101);
      const got = await log.read(101, 2, Number.MAX_SAFE_INTEGER);
      expect(got.map((m) => m.seq)).toEqual([101, 102]);
      for (const m of got) expect(Buffer.from(m.data).equals(payloadOf(m.seq, 1024 * 1024))).toBe(true);
    } finally {
      await log.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

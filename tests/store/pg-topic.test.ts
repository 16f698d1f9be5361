/**
 * The PostgreSQL topic store (lib/store/pg/): the TopicLog, SubscriberIndex and TopicStore
 * contracts on a real PostgreSQL (one cluster for the file, a fresh database per fixture;
 * `reopen` is a new PgTopicStore on a new pool on the same database), then what only a
 * shared store does: two stores ("servers") on one database, the events on mq_events,
 * cursors that never move back, dedupe lookups, a PostgreSQL that dies and comes back.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { MemoryTopicLog } from "../../lib/store/memory-store.ts";
import { decodeEvent } from "../../lib/store/pg/events.ts";
import { EVENTS_CHANNEL, migrate } from "../../lib/store/pg/schema.ts";
import { MAX_STATEMENT_BYTES } from "../../lib/store/pg/topic-log.ts";
import { PgTopicStore } from "../../lib/store/pg/topic-store.ts";
import type { StoreEvent, SubscriberIndex, TopicLog, TopicStore } from "../../lib/store/types.ts";
import { noPostgres, startPostgres, type PostgresHandle } from "../pg-kit.ts";
import { payload, runTopicLogSuite } from "./topic-log.contract.ts";
import { runSubscriberIndexSuite } from "./subscriber-index.contract.ts";
import { runTopicStoreSuite } from "./topic-store.contract.ts";

const ALL = Number.MAX_SAFE_INTEGER;
let pg: PostgresHandle | undefined;
/** Pools opened by a test, closed in afterAll when the test did not. */
const pools = new Set<SQL>();

function pool(url: string): SQL {
  const sql = new SQL(url, { max: 4 });
  pools.add(sql);
  return sql;
}

async function closePool(sql: SQL): Promise<void> {
  pools.delete(sql);
  await sql.close();
}

/** A pool of its own (for LISTEN or raw statements), closed when the test's scope ends. */
function ownPool(url: string): SQL & AsyncDisposable {
  const sql = pool(url);
  return Object.assign(sql, { [Symbol.asyncDispose]: () => closePool(sql) });
}

/** A migrated fresh database and a store on it; `reopen` closes the store and its pool and opens new ones. */
async function storeFixture(serverId = "s1", options = { synchronousCommit: true }) {
  const url = await pg!.database();
  let sql = pool(url);
  await migrate(sql);
  let store = new PgTopicStore(sql, serverId, options);
  const cleanup = async () => {
    await store.close();
    await closePool(sql);
  };
  return {
    url,
    store: () => store,
    reopen: async () => {
      await store.close();
      await closePool(sql);
      sql = pool(url);
      store = new PgTopicStore(sql, serverId, options);
      return store;
    },
    cleanup,
    [Symbol.asyncDispose]: cleanup,
  };
}

/** Every event on mq_events from now until the scope ends, decoded, in arrival order. */
async function storeEvents(url: string): Promise<Array<{ from: string; event: StoreEvent }> & AsyncDisposable> {
  const listener = pool(url);
  const events: Array<{ from: string; event: StoreEvent }> = [];
  await listener.listen(EVENTS_CHANNEL, (text) => {
    const decoded = decodeEvent(text);
    if (decoded) events.push(decoded);
  });
  return Object.assign(events, { [Symbol.asyncDispose]: () => closePool(listener) });
}

/** Another server on the same database: its own pool and store. */
function secondStore(url: string, serverId = "s2") {
  const sql = pool(url);
  const store = new PgTopicStore(sql, serverId, { synchronousCommit: true });
  const close = async () => (await store.close(), await closePool(sql));
  return { sql, store, close, [Symbol.asyncDispose]: close };
}

async function openLog(store: TopicStore, topic = "t"): Promise<{ log: TopicLog; subscribers: SubscriberIndex }> {
  return (await store.open(topic, true))!;
}

/** Waits (at most 10 s, in 20 ms steps) until `done()`; false when it never is. */
async function until(done: () => boolean): Promise<boolean> {
  for (let i = 0; i < 500 && !done(); i++) await Bun.sleep(20);
  return done();
}

if (noPostgres) {
  test.skip(`PostgreSQL topic store${noPostgres}`, () => {});
} else {
  beforeAll(async () => {
    pg = await startPostgres();
  });

  afterAll(async () => {
    for (const sql of pools) await sql.close().catch(() => {});
    await pg?.[Symbol.asyncDispose]();
  });

  runTopicLogSuite(
    "PgTopicLog",
    async () => {
      const fx = await storeFixture();
      return {
        log: (await openLog(fx.store())).log,
        reopen: async () => (await openLog(await fx.reopen())).log,
        cleanup: fx.cleanup,
      };
    },
    // Rows are deleted one by one: everything below `before`.
    { persistent: true, trimmed: (before, total) => Math.min(before - 1, total) },
  );

  runSubscriberIndexSuite(
    "PgSubscriberIndex",
    async () => {
      const fx = await storeFixture();
      return {
        index: (await openLog(fx.store())).subscribers,
        reopen: async () => (await openLog(await fx.reopen())).subscribers,
        cleanup: fx.cleanup,
      };
    },
    { persistent: true },
  );

  runTopicStoreSuite(
    "PgTopicStore",
    async () => {
      const fx = await storeFixture();
      return { store: fx.store(), reopen: fx.reopen, cleanup: fx.cleanup };
    },
    { persistent: true },
  );

  describe("PgTopicStore shared by two servers", () => {
    test("two stores appending to one topic concurrently get seqs 1..N each once, every message under its seq, and refresh shows the other's appends", async () => {
      await using fx = await storeFixture("s1");
      await using other = secondStore(fx.url, "s2");
      const a = (await openLog(fx.store())).log;
      const b = (await openLog(other.store)).log;
      // Payload = server byte, index: each appender can check that its seq holds its message.
      const body = (server: number, i: number) => Uint8Array.of(server, i >> 8, i & 0xff, ...payload(20, i));
      const seqsA: number[] = [];
      const seqsB: number[] = [];
      for (let wave = 0; wave < 10; wave++) {
        const [wa, wb] = await Promise.all([
          Promise.all(Array.from({ length: 30 }, (_, k) => a.append(body(1, wave * 30 + k), 1000 + wave))),
          Promise.all(Array.from({ length: 30 }, (_, k) => b.append(body(2, wave * 30 + k), 1000 + wave))),
        ]);
        seqsA.push(...wa);
        seqsB.push(...wb);
      }
      expect([...seqsA, ...seqsB].sort((x, y) => x - y)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
      // Each server's own seqs rise in its call order.
      for (const seqs of [seqsA, seqsB]) for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
      const all = await a.read(1, ALL, ALL);
      expect(all.map((m) => m.seq)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
      for (const [server, seqs] of [[1, seqsA], [2, seqsB]] as const) {
        for (const [i, seq] of seqs.entries()) expect(all[seq - 1]!.data).toEqual(body(server, i));
      }
      await a.refresh!();
      await b.refresh!();
      for (const log of [a, b]) expect([log.firstSeq, log.nextSeq, log.lastSeq, log.count]).toEqual([1, 601, 600, 600]);
    });

    test("a topic created by one store is opened, not created, by the other, and its messages read there", async () => {
      await using fx = await storeFixture("s1");
      await using other = secondStore(fx.url, "s2");
      const made = await fx.store().open("shared", true);
      await made!.log.append(payload(5, 1), 10);
      const found = await other.store.open("shared", false);
      expect(found?.created).toBe(false);
      expect([found!.log.nextSeq, found!.log.count]).toEqual([2, 1]);
      expect((await found!.log.read(1, 10, ALL)).map((m) => m.seq)).toEqual([1]);
      expect(await other.store.topics()).toEqual(["shared"]);
      // Appends of the first are found there before any refresh: seqAtTime past the end is the stored next seq.
      await made!.log.append(payload(5, 2), 20);
      expect(await found!.log.seqAtTime(15)).toBe(2);
      expect(await found!.log.seqAtTime(1000)).toBe(3);
    });

    test("refresh shows another store's trim: firstSeq rises, nextSeq stays", async () => {
      await using fx = await storeFixture("s1");
      await using other = secondStore(fx.url, "s2");
      const a = (await openLog(fx.store())).log;
      const b = (await openLog(other.store)).log;
      for (let i = 0; i < 10; i++) await a.append(payload(10, i), 1000 + i);
      await b.refresh!();
      expect(await b.trim(6, { maxAgeMs: 0, maxBytes: Infinity }, 1_000_000)).toBe(5);
      expect([a.firstSeq, a.count]).toEqual([1, 10]);
      await a.refresh!();
      expect([a.firstSeq, a.nextSeq, a.lastSeq, a.count]).toEqual([6, 11, 10, 5]);
      expect((await a.read(1, ALL, ALL)).map((m) => m.seq)).toEqual([6, 7, 8, 9, 10]);
    });

    test("a cursor never moves back: a stale write of one store leaves the other's larger cursor, and reload takes the larger", async () => {
      await using fx = await storeFixture("s1");
      await using other = secondStore(fx.url, "s2");
      const a = (await openLog(fx.store())).subscribers;
      const b = (await openLog(other.store)).subscribers;
      await a.add(7, 1);
      await b.reload!();
      expect([...b.cursors]).toEqual([[7, 1]]);
      b.advance(7, 50);
      await b.flush();
      a.advance(7, 20); // this server has not seen the acks up to 50
      await a.flush();
      await a.reload!();
      expect(a.cursors.get(7)).toBe(50);
      await using fresh = secondStore(fx.url, "s3");
      expect([...(await openLog(fresh.store)).subscribers.cursors]).toEqual([[7, 50]]);
    });

    test("reload shows subscribers added and removed by another store, and keeps one added here meanwhile", async () => {
      await using fx = await storeFixture("s1");
      await using other = secondStore(fx.url, "s2");
      const a = (await openLog(fx.store())).subscribers;
      const b = (await openLog(other.store)).subscribers;
      await a.add(1, 1);
      await a.add(2, 1);
      await b.reload!();
      await b.remove(1);
      await b.add(3, 4);
      const adding = a.add(4, 9); // queued before the reload: the reload must not drop it
      await a.reload!();
      await adding;
      expect([...a.cursors].sort((x, y) => x[0] - y[0])).toEqual([
        [2, 1],
        [3, 4],
        [4, 9],
      ]);
    });
  });

  describe("PgTopicStore events and lookups", () => {
    test("events on mq_events: topic at creation, one appended per batch with its lastSeq, subscribers at add and remove", async () => {
      await using fx = await storeFixture("s1");
      await using events = await storeEvents(fx.url);
      const { log, subscribers } = await openLog(fx.store(), "ev");
      await log.append(payload(3, 0), 1);
      // Appended in one tick: one batch, one event.
      await Promise.all([1, 2, 3, 4].map((i) => log.append(payload(3, i), 1)));
      await subscribers.add(9, 1);
      await subscribers.remove(9);
      await subscribers.remove(9); // not there: no event
      expect(await until(() => events.length >= 5)).toBe(true);
      await Bun.sleep(100); // any stray event would arrive meanwhile
      expect([...events]).toEqual([
        { from: "s1", event: { kind: "topic", topic: "ev" } },
        { from: "s1", event: { kind: "appended", topic: "ev", lastSeq: 1 } },
        { from: "s1", event: { kind: "appended", topic: "ev", lastSeq: 5 } },
        { from: "s1", event: { kind: "subscribers", topic: "ev", id: 9 } },
        { from: "s1", event: { kind: "subscribers", topic: "ev", id: 9 } },
      ]);
      await fx.store().open("ev", true); // opening a topic that exists sends nothing
      await Bun.sleep(100);
      expect(events).toHaveLength(5);
    });

    test("a batch of more than MAX_STATEMENT_BYTES of payloads goes as several statements: seqs dense, payloads right, one appended event each", async () => {
      await using fx = await storeFixture("s1");
      await using events = await storeEvents(fx.url);
      const lastSeqs = () => events.flatMap(({ event }) => (event.kind === "appended" ? [event.lastSeq] : []));
      const { log } = await openLog(fx.store());
      const size = 1 << 20;
      const perStatement = MAX_STATEMENT_BYTES / size;
      const count = perStatement + 4;
      const seqs = await Promise.all(Array.from({ length: count }, (_, i) => log.append(payload(size, i), i)));
      expect(seqs).toEqual(Array.from({ length: count }, (_, i) => i + 1));
      for (let seq = 1; seq <= count; seq++) {
        const [m] = await log.read(seq, 1, 1);
        expect({ seq: m!.seq, same: Buffer.from(m!.data).equals(Buffer.from(payload(size, seq - 1))) }).toEqual({ seq, same: true });
      }
      expect(await until(() => lastSeqs().length >= 2)).toBe(true);
      expect(lastSeqs()).toEqual([perStatement, count]);
    });

    test("appendBatch: a publish batch is one group-commit entry (one appended event); one above MAX_STATEMENT_BYTES is split and gets all its seqs", async () => {
      await using fx = await storeFixture("s1");
      await using events = await storeEvents(fx.url);
      const lastSeqs = () => events.flatMap(({ event }) => (event.kind === "appended" ? [event.lastSeq] : []));
      const { log } = await openLog(fx.store());
      expect(typeof log.appendBatch).toBe("function");
      const small = Array.from({ length: 1000 }, (_, i) => payload(16, i));
      const fields = small.map((_, i) => (i % 2 === 0 ? { msgId: `m${i}` } : undefined));
      expect(await log.appendBatch!(small, 5, fields)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
      expect((await log.findMsgIds!(["m0", "m998", "m1"])).map((r) => [r.msgId, r.seq]).sort()).toEqual([["m0", 1], ["m998", 999]]);
      const size = 1 << 20;
      const perStatement = MAX_STATEMENT_BYTES / size;
      const big = Array.from({ length: perStatement + 2 }, (_, i) => payload(size, i));
      expect(await log.appendBatch!(big, 6, big.map(() => undefined))).toEqual(big.map((_, i) => 1001 + i));
      const [last] = await log.read(1000 + big.length, 1, 1);
      expect(Buffer.from(last!.data).equals(Buffer.from(big.at(-1)!))).toBe(true);
      expect(await until(() => lastSeqs().length >= 3)).toBe(true);
      expect(lastSeqs()).toEqual([1000, 1000 + perStatement, 1000 + big.length]);
    });

    test("findMsgIds gives the stored messages with these ids, one record each (the newest), none for unknown ids", async () => {
      await using fx = await storeFixture();
      const { log } = await openLog(fx.store());
      await log.append(payload(1, 1), 100, { msgId: "a" });
      await log.append(payload(1, 2), 101);
      await log.append(payload(1, 3), 102, { msgId: "b" });
      await log.append(payload(1, 4), 103, { msgId: "a" });
      expect(await log.findMsgIds!([])).toEqual([]);
      const found = await log.findMsgIds!(["a", "b", "missing"]);
      expect(found.sort((x, y) => x.seq - y.seq)).toEqual([
        { msgId: "b", seq: 3, time: 102 },
        { msgId: "a", seq: 4, time: 103 },
      ]);
      // An id asked twice is one record.
      expect(await log.findMsgIds!(["a", "a"])).toEqual([{ msgId: "a", seq: 4, time: 103 }]);
      // Another topic's ids are not this one's.
      expect(await (await openLog(fx.store(), "other")).log.findMsgIds!(["a"])).toEqual([]);
    });

    test("headers holding U+0000 (which jsonb refuses), '=' lookalikes and backslashes round-trip exactly, and do not fail their batch", async () => {
      await using fx = await storeFixture();
      const { log } = await openLog(fx.store());
      const odd: Array<Record<string, string>> = [{ a: "x\u0000y" }, { b: "\\u0000" }, { "=x": "=" }, { c: "plain" }];
      const seqs = await Promise.all(odd.map((headers, i) => log.append(payload(3, i), i, { headers })));
      expect(seqs).toEqual([1, 2, 3, 4]);
      const again = (await openLog(await fx.reopen())).log;
      expect((await again.read(1, ALL, ALL)).map((m) => m.headers)).toEqual(odd);
    });

    test("trim by maxBytes and by age deletes exactly what the memory log deletes", async () => {
      await using fx = await storeFixture();
      const { log } = await openLog(fx.store());
      const cases = [
        { before: 41, policy: { maxAgeMs: Infinity, maxBytes: 1000 } },
        { before: 25, policy: { maxAgeMs: Infinity, maxBytes: 0 } },
        { before: 100, policy: { maxAgeMs: 5, maxBytes: Infinity } },
        { before: 100, policy: { maxAgeMs: 1000, maxBytes: 950 } },
      ];
      for (const { before, policy } of cases) {
        const memory = new MemoryTopicLog();
        for (let i = 0; i < 40; i++) {
          const p = payload(50 + (i % 7) * 10, i);
          await memory.append(p, 1000 + i);
          await log.append(p, 1000 + i);
        }
        // The pg log goes on from where the last case left it: `before` counts from its firstSeq.
        expect(await log.trim(before + log.firstSeq - 1, policy, 1030)).toBe(await memory.trim(before, policy, 1030));
        expect(log.count).toBe(memory.count);
        await log.trim(ALL, { maxAgeMs: 0, maxBytes: Infinity }, 1_000_000);
        expect(log.count).toBe(0);
      }
    });

    test("appends with synchronous_commit off are stored like the others", async () => {
      await using fx = await storeFixture("s1", { synchronousCommit: false });
      const { log } = await openLog(fx.store());
      expect(await Promise.all([1, 2, 3].map((i) => log.append(payload(4, i), i)))).toEqual([1, 2, 3]);
      const again = (await openLog(await fx.reopen())).log;
      expect((await again.read(1, 10, ALL)).map((m) => m.seq)).toEqual([1, 2, 3]);
    });

    test("migrate refuses a database of another schema version, naming both versions", async () => {
      await using fx = await storeFixture();
      await using sql = ownPool(fx.url);
      await sql`update mq_meta set value = '999' where key = 'schema'`;
      await expect(migrate(sql)).rejects.toThrow(/schema version 999, this mq uses 1/);
    });
  });

  describe("PgTopicStore when PostgreSQL dies", () => {
    test("a subscriber add or remove that fails while PostgreSQL is down leaves the index as stored, and the retry after it is back is stored", async () => {
      await using fx = await storeFixture();
      const { subscribers } = await openLog(fx.store());
      await subscribers.add(1, 3);
      await pg!.kill();
      await expect(subscribers.add(2, 1)).rejects.toThrow();
      await expect(subscribers.remove(1)).rejects.toThrow();
      await subscribers.flush().catch(() => {});
      expect([...subscribers.cursors]).toEqual([[1, 3]]);
      await pg!.start();
      let done = false;
      for (let i = 0; i < 100 && !done; i++) {
        try {
          await subscribers.add(2, 1);
          await subscribers.remove(1);
          done = true;
        } catch {
          await Bun.sleep(100);
        }
      }
      expect(done).toBe(true);
      expect([...(await openLog(await fx.reopen())).subscribers.cursors]).toEqual([[2, 1]]);
    });

    test("append rejects while PostgreSQL is down; after it is back appends work again and every acknowledged message is there", async () => {
      await using fx = await storeFixture();
      const { log } = await openLog(fx.store());
      const acked = new Map<number, Uint8Array>();
      for (let i = 0; i < 20; i++) {
        const p = payload(30, i);
        acked.set(await log.append(p, 1000 + i), p);
      }
      await pg!.kill();
      let rejected = false;
      try {
        await log.append(payload(30, 99), 2000);
      } catch {
        rejected = true;
      }
      expect(rejected).toBe(true);
      await pg!.start();
      let seq: number | null = null;
      for (let i = 0; i < 100 && seq === null; i++) {
        const p = payload(30, 100 + i);
        try {
          seq = await log.append(p, 3000 + i);
          acked.set(seq, p);
        } catch {
          await Bun.sleep(100);
        }
      }
      expect(seq).not.toBeNull();
      const stored = new Map((await log.read(1, ALL, ALL)).map((m) => [m.seq, m.data]));
      for (const [s, p] of acked) expect({ seq: s, data: stored.get(s) }).toEqual({ seq: s, data: p });
      // Seqs stay dense across the outage, and a new store sees the same.
      const again = (await openLog(await fx.reopen())).log;
      expect(again.count).toBe(again.nextSeq - 1);
      expect((await again.read(1, ALL, ALL)).map((m) => m.seq)).toEqual(Array.from({ length: again.count }, (_, i) => i + 1));
    });
  });
}

/**
 * Queue group claims shared by servers on one PostgreSQL (lib/store/pg/group-claims.ts),
 * against a real PostgreSQL (tests/pg-kit.ts): two servers claiming one group at once get
 * disjoint seqs; acks move the floor; a nak lets the other server deliver it again, counted;
 * --max-deliver is reached across servers once; a dead server's claims pass to the other.
 */
import { expect, test } from "bun:test";
import { connectPostgres } from "../../lib/store/pg/connect.ts";
import { PgGroupClaims } from "../../lib/store/pg/group-claims.ts";
import { PgShared } from "../../lib/store/pg/shared.ts";
import { noPostgres, postgresForTests } from "../pg-kit.ts";

const pgTest = test.skipIf(noPostgres !== "");
const postgres = postgresForTests();

/** One server's claims: its own pool and liveness lock. */
async function server(url: string) {
  const sql = await connectPostgres(url, true);
  const shared = await PgShared.open(sql);
  const claims = await PgGroupClaims.open(sql, shared);
  return {
    claims,
    close: async () => {
      await shared.close();
      await sql.close();
    },
  };
}

pgTest(`two servers claiming one group at once get each seq once${noPostgres}`, async () => {
  const url = await postgres.current().database();
  const a = await server(url);
  const b = await server(url);
  try {
    const seen: number[] = [];
    // 40 claims of 5 over 100 seqs, half from each server, all at once.
    const all = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).claims.claim("t", "g", 5, 1, 100)));
    for (const batch of all) for (const c of batch) seen.push(c.seq);
    expect(seen.sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(await a.claims.claim("t", "g", 5, 1, 100)).toEqual([]);
    expect(await a.claims.floor("t", "g", 1)).toBe(1);
    // Each server acks only what it holds.
    const aHeld = all.filter((_, i) => i % 2).flat().map((c) => c.seq);
    const bHeld = all.filter((_, i) => i % 2 === 0).flat().map((c) => c.seq);
    expect(await b.claims.ack("t", "g", aHeld)).toEqual([]);
    expect((await a.claims.ack("t", "g", aHeld)).length).toBe(aHeld.length);
    expect((await b.claims.ack("t", "g", bHeld)).length).toBe(bHeld.length);
    expect(await a.claims.floor("t", "g", 1)).toBe(101);
    // A new message: claimed once, from the floor.
    expect(await b.claims.claim("t", "g", 5, 1, 101)).toEqual([{ seq: 101, deliveries: 1 }]);
  } finally {
    await a.close();
    await b.close();
  }
}, 60_000);

pgTest(`a nak goes to the other server, counted, and --max-deliver dead-letters once${noPostgres}`, async () => {
  const url = await postgres.current().database();
  const a = await server(url);
  const b = await server(url);
  try {
    expect(await a.claims.claim("t", "g", 1, 1, 1)).toEqual([{ seq: 1, deliveries: 1 }]);
    expect(await a.claims.giveBack("t", "g", [1], true, 3)).toEqual([]);
    expect(await b.claims.claim("t", "g", 1, 1, 1)).toEqual([{ seq: 1, deliveries: 2 }]);
    // A session close (not counted) does not move the count.
    expect(await b.claims.giveBack("t", "g", [1], false, 3)).toEqual([]);
    expect(await a.claims.claim("t", "g", 1, 1, 1)).toEqual([{ seq: 1, deliveries: 2 }]);
    expect(await a.claims.giveBack("t", "g", [1], true, 3)).toEqual([]);
    expect(await b.claims.claim("t", "g", 1, 1, 1)).toEqual([{ seq: 1, deliveries: 3 }]);
    // The third counted nak: b keeps it to dead-letter it; nobody else gets it.
    expect(await b.claims.giveBack("t", "g", [1], true, 3)).toEqual([{ seq: 1, deliveries: 3 }]);
    expect(await a.claims.claim("t", "g", 1, 1, 1)).toEqual([]);
    expect(await b.claims.ack("t", "g", [1])).toEqual([1]);
    expect(await a.claims.floor("t", "g", 1)).toBe(2);
  } finally {
    await a.close();
    await b.close();
  }
}, 60_000);

pgTest(`the claims of a server that died are claimed again by another; a live server's are not${noPostgres}`, async () => {
  const url = await postgres.current().database();
  const a = await server(url);
  const b = await server(url);
  try {
    expect((await a.claims.claim("t", "g", 3, 1, 3)).map((c) => c.seq)).toEqual([1, 2, 3]);
    expect(await b.claims.claim("t", "g", 3, 1, 3)).toEqual([]); // a is alive
    expect(await a.claims.ack("t", "g", [2])).toEqual([2]);
    await a.close(); // its session and liveness lock end, as when the process dies
    expect(await b.claims.claim("t", "g", 3, 1, 3)).toEqual([
      { seq: 1, deliveries: 2 },
      { seq: 3, deliveries: 2 },
    ]);
    expect(await b.claims.floor("t", "g", 1)).toBe(1);
  } finally {
    await a.close();
    await b.close();
  }
}, 60_000);

pgTest(`a claim with again = false takes only new seqs; the given-back ones wait for a claim that asks${noPostgres}`, async () => {
  const url = await postgres.current().database();
  const a = await server(url);
  try {
    expect((await a.claims.claim("t", "g", 2, 1, 2)).map((c) => c.seq)).toEqual([1, 2]);
    expect(await a.claims.giveBack("t", "g", [1], true, undefined)).toEqual([]);
    expect(await a.claims.claim("t", "g", 5, 1, 3, false)).toEqual([{ seq: 3, deliveries: 1 }]);
    expect(await a.claims.claim("t", "g", 5, 1, 3)).toEqual([{ seq: 1, deliveries: 2 }]);
  } finally {
    await a.close();
  }
}, 60_000);

pgTest(`a claim count that is not a positive integer is refused, naming it${noPostgres}`, async () => {
  const url = await postgres.current().database();
  const a = await server(url);
  try {
    await expect(a.claims.claim("t", "g", 0, 1, 3)).rejects.toThrow("count must be a positive integer, got 0");
  } finally {
    await a.close();
  }
}, 60_000);

/**
 * The PostgreSQL store's parts other than the topics (lib/store/pg/): the client registry and
 * broker credentials contracts, the consumers, the schedule and the groups, against a real
 * PostgreSQL (tests/pg-kit.ts); then what two servers on one database see of each other:
 * ids made by one known to the other (reload and `client` event), one binding for two first
 * hellos at once, a singleton job held by one server at a time and passed on when it closes.
 * Skipped (the reason in the test names) where PostgreSQL is not installed.
 */
import { describe, expect, test } from "bun:test";
import type { SQL } from "bun";
import { openStorage } from "../../lib/store/backend.ts";
import { connectPostgres } from "../../lib/store/pg/connect.ts";
import { maskPassword, postgresLocation } from "../../lib/store/pg/url.ts";
import { PgConsumerStore } from "../../lib/store/pg/consumers.ts";
import { PgBrokerCredentials } from "../../lib/store/pg/credentials.ts";
import { PgGroupStore } from "../../lib/store/pg/groups.ts";
import { PgClientRegistry } from "../../lib/store/pg/registry.ts";
import { PgSchedule } from "../../lib/store/pg/schedule.ts";
import { PgShared } from "../../lib/store/pg/shared.ts";
import type { Storage, StoreEvent } from "../../lib/store/types.ts";
import { noPostgres, postgresForTests } from "../pg-kit.ts";
import { runBrokerCredentialsSuite, runClientRegistrySuite, type RegistryFixture } from "./client-registry.contract.ts";

const pgTest = test.skipIf(noPostgres !== "");
const postgres = postgresForTests();

/** What one server opens on the database at `url` (the parts backend.ts builds, topics aside). */
async function openServerParts(url: string) {
  const sql = await connectPostgres(url, true);
  const shared = await PgShared.open(sql);
  const parts = {
    sql,
    shared,
    clients: await PgClientRegistry.open(sql, shared.serverId),
    credentials: await PgBrokerCredentials.open(sql),
    consumers: new PgConsumerStore(sql, shared.serverId),
    schedule: await PgSchedule.open(sql),
    groups: new PgGroupStore(sql, shared.serverId, postgresLocation(url)),
  };
  let closed: Promise<void> | null = null;
  return {
    ...parts,
    close: () =>
      (closed ??= (async () => {
        for (const part of [parts.shared, parts.clients, parts.credentials, parts.consumers, parts.schedule, parts.groups]) await part.close();
        await sql.close();
      })()),
  };
}
type ServerParts = Awaited<ReturnType<typeof openServerParts>>;

async function registryFixture(): Promise<RegistryFixture> {
  const url = await postgres.current().database();
  let current = await openServerParts(url);
  return {
    clients: current.clients,
    credentials: current.credentials,
    reopen: async () => {
      await current.close();
      current = await openServerParts(url);
      return { clients: current.clients, credentials: current.credentials };
    },
    cleanup: () => current.close(),
  };
}

if (noPostgres) {
  test(`PostgreSQL store contracts${noPostgres}`, () => {});
} else {
  runClientRegistrySuite("postgres store", registryFixture, { persistent: true, losesNothing: true });
  runBrokerCredentialsSuite("postgres store", registryFixture, { persistent: true });
}

/**
 * `holds(job)`, asked again (every 20 ms, at most 5 s) until true: PostgreSQL frees a closed
 * session's advisory locks when its backend exits, a moment after the client closed.
 */
async function heldSoon(storage: { shared?: Pick<NonNullable<Storage["shared"]>, "holds"> }, job: string): Promise<boolean> {
  for (let i = 0; i < 250; i++) {
    if (await storage.shared!.holds(job)) return true;
    await Bun.sleep(20);
  }
  return storage.shared!.holds(job);
}

function openPg(url: string): Promise<Storage> {
  return openStorage({ kind: "postgres", url, dataDir: "/nonexistent/unused", fsync: "always", fsyncIntervalMs: 50, owner: "mq test" });
}

describe(`openStorage postgres${noPostgres}`, () => {
  pgTest("makes a Storage with every part and a shared store; two on one database see one another's topics and ids; close ends the pool and gives up the jobs", async () => {
    const url = await postgres.current().database();
    const a = await openPg(url);
    const other = await openPg(url);
    try {
      expect([a.kind, typeof a.shared?.serverId, a.shared?.serverId === other.shared?.serverId]).toEqual(["postgres", "string", false]);
      const created = await a.topics.open("shared.topic", true);
      expect(await created!.log.append(b("x"), Date.now())).toBe(1);
      const id = await a.clients.create("host-a");
      expect(await other.topics.topics()).toContain("shared.topic");
      await other.clients.reload!();
      expect(other.clients.owner(id)).toBe("host-a");
      expect(await a.shared!.holds("retention")).toBe(true);
      expect(await other.shared!.holds("retention")).toBe(false);
      await a.close();
      await a.close(); // closing twice is one close
      expect(await heldSoon(other, "retention")).toBe(true);
      await expect(a.clients.create("host-a")).rejects.toThrow();
    } finally {
      await a.close();
      await other.close();
    }
  });

  pgTest("without a URL, or with a database that does not exist, openStorage fails saying so", async () => {
    await expect(openStorage({ kind: "postgres", dataDir: "", fsync: "always", fsyncIntervalMs: 50, owner: "mq test" })).rejects.toThrow("the postgres store needs a URL: --store postgres://USER@HOST:PORT/DB");
    const missing = postgres.current().url.replace(/\/postgres$/, "/no_such_db");
    await expect(openPg(missing)).rejects.toThrow(`Cannot open the PostgreSQL store postgres 127.0.0.1:${postgres.current().port}/no_such_db: database "no_such_db" does not exist`);
  });
});

/** Opens `n` servers' parts on one fresh database; all closed after `body`. */
async function withServers(n: number, body: (servers: ServerParts[], url: string) => Promise<void>): Promise<void> {
  const url = await postgres.current().database();
  const servers: ServerParts[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await openServerParts(url));
    await body(servers, url);
  } finally {
    for (const s of servers) await s.close();
  }
}

/** Resolves with the first event `matches` accepts (bounded: rejects after `withinMs`). */
function nextEvent(shared: PgShared, matches: (e: StoreEvent) => boolean, withinMs = 10_000): Promise<StoreEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no such event within ${withinMs / 1000} s`)), withinMs);
    shared.onEvent((e) => {
      if (!matches(e)) return;
      clearTimeout(timer);
      resolve(e);
    });
  });
}

const b = (s: string) => new TextEncoder().encode(s);

describe(`PostgreSQL store parts${noPostgres}`, () => {
  pgTest("the consumer store puts, replaces and removes (id, filter) records, which a reopen reads back whole", async () => {
    await withServers(1, async ([s], url) => {
      await s!.consumers.put({ id: 1, filter: "a.*" });
      await s!.consumers.put({ id: 1, filter: "a.>", from: { since: 5 }, createdAt: 7 });
      await s!.consumers.put({ id: 2, filter: "a.*", group: "g" });
      await s!.consumers.put({ id: 2, filter: "a.*", group: "h", ackPolicy: "explicit", maxDeliver: 3, deadLetter: "dl" });
      await s!.consumers.remove(1, "a.*");
      await s!.consumers.remove(9, "nothing");
      const again = await openServerParts(url);
      try {
        expect(await again.consumers.list()).toEqual([
          { id: 1, filter: "a.>", from: { since: 5 }, createdAt: 7 },
          { id: 2, filter: "a.*", group: "h", ackPolicy: "explicit", maxDeliver: 3, deadLetter: "dl" },
        ]);
      } finally {
        await again.close();
      }
    });
  });

  pgTest("the schedule numbers what it adds in the order given, keeps payload, msg id, headers and TTL, and a reopen finds only what was not removed", async () => {
    await withServers(1, async ([s], url) => {
      const added = await s!.schedule.add([
        { topic: "t", due: 30, data: b("first"), msgId: "m1", headers: { k: "v" }, ttlMs: 500 },
        { topic: "t", due: 10, data: new Uint8Array([0, 255, 1]) },
        { topic: "u", due: 20, data: b("third") },
      ]);
      expect(added.map((m) => m.n)).toEqual([added[0]!.n, added[0]!.n + 1, added[0]!.n + 2]);
      expect((await s!.schedule.add([{ topic: "t", due: 1, data: b("later") }]))[0]!.n).toBe(added[2]!.n + 1);
      expect(await s!.schedule.add([])).toEqual([]);
      await s!.schedule.remove([added[2]!.n, 999_999]);
      expect(s!.schedule.pending().map((m) => m.n)).toEqual([added[0]!.n, added[1]!.n, added[2]!.n + 1]);
      const again = await openServerParts(url);
      try {
        expect(again.schedule.pending()).toEqual([
          { n: added[0]!.n, topic: "t", due: 30, data: b("first"), msgId: "m1", headers: { k: "v" }, ttlMs: 500 },
          { n: added[1]!.n, topic: "t", due: 10, data: new Uint8Array([0, 255, 1]) },
          { n: added[2]!.n + 1, topic: "t", due: 1, data: b("later") },
        ]);
        // Numbers go on above every one handed out, also the removed ones.
        expect((await again.schedule.add([{ topic: "t", due: 1, data: b("x") }]))[0]!.n).toBe(added[2]!.n + 2);
      } finally {
        await again.close();
      }
    });
  });

  pgTest("the group store keeps the last records saved (saves in call order), drops invalid ones at load, and another server hears a `groups` event", async () => {
    await withServers(2, async ([a, other]) => {
      expect(await a!.groups.load()).toEqual([]);
      const heard = nextEvent(other!.shared, (e) => e.kind === "groups");
      const one = { topic: "t", group: "g", floor: 3, members: [1, 2] };
      const two = { topic: "u", group: null, floor: 0, maxDeliver: 2, deadLetter: "u.dlq", members: [5] };
      await Promise.all([a!.groups.save([one]), a!.groups.save([one, two])]);
      expect(await heard).toEqual({ kind: "groups" });
      expect(await other!.groups.load()).toEqual([one, two]);
      await a!.groups.save([]);
      expect(await other!.groups.load()).toEqual([]);
      await a!.sql`update mq_groups set records = ${{ r: [one, { topic: "t", floor: -1, members: [] }] }}::jsonb -> 'r'`;
      expect(await other!.groups.load()).toEqual([one]);
      expect(a!.groups.describe()).toContain("mq_groups");
    });
  });

  pgTest("joins and leaves of two servers apply one membership each: what the other stored stays", async () => {
    await withServers(2, async ([a, b]) => {
      const g = (members: number[]) => ({ topic: "t", group: "g", floor: 1, members });
      const own = { topic: "t", group: null, floor: 1, maxDeliver: 2, members: [3] };
      await Promise.all([a!.groups.join!(g([1])), b!.groups.join!(g([2])), b!.groups.join!(own)]);
      const joined = await a!.groups.load();
      expect(joined.map((r) => ({ ...r, members: [...r.members].sort() })).sort((x, y) => x.members[0]! - y.members[0]!)).toEqual([g([1, 2]), own]);
      // A second private group on the topic is another member's own; joining twice changes nothing.
      await a!.groups.join!({ ...own, members: [4] });
      await a!.groups.join!(g([1]));
      expect((await b!.groups.load()).length).toBe(3);
      // Member 1 leaves through a; b's private member 3 leaves: their groups keep the others.
      await a!.groups.leave!("t", "g", 1);
      await b!.groups.leave!("t", null, 3);
      expect(await b!.groups.load()).toEqual([g([2]), { ...own, members: [4] }]);
      // The last member of a group leaves: the group goes.
      await b!.groups.leave!("t", "g", 2);
      expect(await a!.groups.load()).toEqual([{ ...own, members: [4] }]);
    });
  });

  pgTest("another server hears `consumers` when one puts or removes a consumer, and never its own events", async () => {
    await withServers(2, async ([a, other]) => {
      const own: StoreEvent[] = [];
      a!.shared.onEvent((e) => own.push(e));
      const put = nextEvent(other!.shared, (e) => e.kind === "consumers");
      await a!.consumers.put({ id: 4, filter: "x.*" });
      expect(await put).toEqual({ kind: "consumers", id: 4 });
      const removed = nextEvent(other!.shared, (e) => e.kind === "consumers");
      await a!.consumers.remove(4, "x.*");
      expect(await removed).toEqual({ kind: "consumers", id: 4 });
      // The other server's own event (sent after a's) arriving at a means a's would have too.
      const marker = nextEvent(a!.shared, (e) => e.kind === "groups");
      await other!.groups.save([]);
      await marker;
      expect(own.filter((e) => e.kind === "consumers")).toEqual([]);
    });
  });
});

describe(`two servers on one PostgreSQL database${noPostgres}`, () => {
  pgTest("an id made on one server is known to the other after reload(), announced by a `client` event; a destroy by a `destroyed` event", async () => {
    await withServers(2, async ([a, bServer]) => {
      const heard = nextEvent(bServer!.shared, (e) => e.kind === "client");
      const id = await a!.clients.create("host-a");
      expect(await heard).toEqual({ kind: "client", id, owner: "host-a" });
      expect(bServer!.clients.owner(id)).toBeUndefined(); // not before a reload
      await bServer!.clients.reload();
      expect([bServer!.clients.owner(id), bServer!.clients.ownedBy("host-a"), bServer!.clients.nextId > id]).toEqual(["host-a", [id], true]);
      // Ids come from one sequence: the other server's next id is not one handed out.
      const mine = await bServer!.clients.create("host-b");
      expect(mine).toBeGreaterThan(id);
      const gone = nextEvent(a!.shared, (e) => e.kind === "destroyed");
      await bServer!.clients.destroy(id); // made by a, destroyed by b
      expect(await gone).toEqual({ kind: "destroyed", id });
      await a!.clients.reload();
      expect([a!.clients.owner(id), a!.clients.owner(mine), a!.clients.size]).toEqual([undefined, "host-b", 1]);
    });
  });

  pgTest("witness of an id another server made (not reloaded yet) hands out no id twice", async () => {
    await withServers(2, async ([a, other]) => {
      const made = [await a!.clients.create("A"), await a!.clients.create("A")];
      await other!.clients.witness(made[1]!);
      expect(other!.clients.lost()).toEqual([]);
      const next = await other!.clients.create("B");
      expect(next).toBeGreaterThan(made[1]!);
      expect(await a!.clients.create("A")).toBeGreaterThan(next);
    });
  });

  pgTest("two servers seeing first hellos of one identity with different secrets at once bind exactly one; both then agree", async () => {
    await withServers(2, async ([a, other]) => {
      for (let round = 0; round < 5; round++) {
        const identity = `host-${round}`;
        const verdicts = await Promise.all([a!.credentials.check(identity, "secret-a"), other!.credentials.check(identity, "secret-b")]);
        expect(verdicts.filter((v) => v === "bound").length).toBe(1);
        expect(verdicts.filter((v) => v === "mismatch").length).toBe(1);
        const winner = verdicts[0] === "bound" ? "secret-a" : "secret-b";
        const loser = winner === "secret-a" ? "secret-b" : "secret-a";
        expect([await a!.credentials.check(identity, winner), await other!.credentials.check(identity, winner), await other!.credentials.check(identity, loser)]).toEqual(["match", "match", "mismatch"]);
      }
    });
  });

  pgTest("holds(job): one of two servers holds it; the other does not, until the holder's store is closed", async () => {
    await withServers(2, async ([a, other]) => {
      const first = await Promise.all([a!.shared.holds("scheduler"), other!.shared.holds("scheduler")]);
      expect(first.filter(Boolean).length).toBe(1);
      const [holder, waiter] = first[0] ? [a!, other!] : [other!, a!];
      expect([await holder.shared.holds("scheduler"), await waiter.shared.holds("scheduler")]).toEqual([true, false]);
      // Jobs are apart: the waiter may take another one.
      expect(await waiter.shared.holds("retention")).toBe(true);
      expect(await holder.shared.holds("retention")).toBe(false);
      await holder.close();
      expect(await heldSoon(waiter, "scheduler")).toBe(true);
    });
  });

  pgTest("holds(job): when the holding connection dies (PostgreSQL restarted) the lock is gone and is taken again, and the listener reports `resync`", async () => {
    await withServers(1, async ([a]) => {
      expect(await a!.shared.holds("scheduler")).toBe(true);
      // A restart of PostgreSQL (recovery, then the listener's reconnect) takes tens of seconds on a loaded 2-core box.
      const resync = nextEvent(a!.shared, (e) => e.kind === "resync", 90_000);
      await postgres.current().kill();
      await postgres.current().start();
      // The first call after the restart finds the connection dead; a later one takes the lock anew.
      let held = false;
      for (let i = 0; i < 300 && !held; i++) {
        held = await a!.shared.holds("scheduler");
        if (!held) await Bun.sleep(100);
      }
      expect(held).toBe(true);
      expect(await resync).toEqual({ kind: "resync" });
    });
  }, 150_000);
});

describe("postgres URLs in messages", () => {
  test("postgresLocation names HOST:PORT/DB, never the user or password; maskPassword hides the password as written and decoded", () => {
    expect(postgresLocation("postgres://mq:s3cret@db.example:6432/queue")).toBe("db.example:6432/queue");
    expect(postgresLocation("postgresql://mq@localhost/queue")).toBe("localhost:5432/queue");
    expect(maskPassword("could not log in to postgres://mq:p%40ss@h/db with p@ss", "postgres://mq:p%40ss@h/db")).toBe("could not log in to postgres://mq:***@h/db with ***");
    expect(maskPassword("nothing to hide", "postgres://mq@h/db")).toBe("nothing to hide");
  });

  pgTest("connecting to a port where nothing listens is UNAVAILABLE, naming HOST:PORT/DB and not the password", async () => {
    const err = (await connectPostgres("postgres://mq:hunter2@127.0.0.1:1/x", true).then(
      () => null,
      (e) => e,
    )) as (Error & { code?: string }) | null;
    expect(err).toBeInstanceOf(Error);
    expect([err!.code, err!.message.includes("127.0.0.1:1/x"), err!.message.includes("hunter2")]).toEqual(["UNAVAILABLE", true, false]);
  });

  pgTest("--fsync always opens sessions with synchronous_commit on; interval/never with it off", async () => {
    const url = await postgres.current().database();
    for (const on of [true, false]) {
      const sql: SQL = await connectPostgres(url, on);
      try {
        const [row] = await sql`show synchronous_commit`;
        expect(row.synchronous_commit).toBe(on ? "on" : "off");
      } finally {
        await sql.close();
      }
    }
  });
});

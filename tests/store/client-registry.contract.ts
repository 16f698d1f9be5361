/**
 * The ClientRegistry and BrokerCredentials contracts: every backend runs them (see
 * backends.test.ts, which opens each through `openStorage`). A persistent backend passes
 * `reopen`, which closes the storage and opens the same again; the suite then also checks
 * what survives. A volatile one passes `restart`, which opens a fresh one as a restarted
 * server would: it must still hand out no id of the run before.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { BrokerCredentials, ClientRegistry } from "../../lib/store/types.ts";

export interface RegistryFixture {
  clients: ClientRegistry;
  credentials: BrokerCredentials;
  /** Closes both and opens the same storage again (persistent backends). */
  reopen?: () => Promise<{ clients: ClientRegistry; credentials: BrokerCredentials }>;
  /** Closes both and opens empty ones, as a restart of a volatile backend (memory). */
  restart?: () => Promise<{ clients: ClientRegistry; credentials: BrokerCredentials }>;
  cleanup: () => Promise<void>;
}

/** `losesNothing`: a backend that never loses a record (postgres): witness raises nextId and marks nothing lost. */
export function runClientRegistrySuite(name: string, newFixture: () => Promise<RegistryFixture>, options: { persistent: boolean; losesNothing?: boolean }): void {
  const persistentOnly = test.skipIf(!options.persistent);
  const volatileOnly = test.skipIf(options.persistent);

  describe(`ClientRegistry contract: ${name}`, () => {
    let fx: RegistryFixture;
    let reg: ClientRegistry;

    beforeEach(async () => {
      fx = await newFixture();
      reg = fx.clients;
    });

    afterEach(async () => {
      await fx.cleanup();
    });

    test("ClientRegistry starts empty: no id, none lost", () => {
      expect([reg.size, reg.owner(1), reg.ownedBy("A"), reg.countOwnedBy("A"), reg.lost(), reg.isLost(1)]).toEqual([0, undefined, [], 0, [], false]);
      expect(reg.nextId).toBeGreaterThanOrEqual(1);
    });

    test("ClientRegistry.create hands out ascending ids from nextId, each owned by its broker", async () => {
      const first = reg.nextId;
      const ids = [await reg.create("A"), await reg.create("B"), await reg.create("A")];
      expect(ids).toEqual([first, first + 1, first + 2]);
      expect(reg.nextId).toBe(first + 3);
      expect(ids.map((id) => reg.owner(id))).toEqual(["A", "B", "A"]);
      expect([reg.size, reg.countOwnedBy("A"), reg.countOwnedBy("B")]).toEqual([3, 2, 1]);
      expect(reg.ownedBy("A").sort((a, b) => a - b)).toEqual([ids[0]!, ids[2]!]);
    });

    test("ClientRegistry.create called concurrently gives distinct ids", async () => {
      const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => reg.create(`b${i % 3}`)));
      expect(new Set(ids).size).toBe(50);
      expect(reg.size).toBe(50);
      for (const id of ids) expect(reg.nextId).toBeGreaterThan(id);
    });

    test("ClientRegistry.destroy removes the id, which is never handed out again; destroying an unknown id is a no-op", async () => {
      const a = await reg.create("A");
      const b = await reg.create("A");
      await reg.destroy(a);
      await reg.destroy(a);
      await reg.destroy(b + 1000);
      expect([reg.owner(a), reg.owner(b), reg.size, reg.ownedBy("A"), reg.isLost(a)]).toEqual([undefined, "A", 1, [b], false]);
      expect(await reg.create("A")).toBeGreaterThan(b);
      await reg.destroy(b);
      expect([reg.countOwnedBy("A"), reg.ownedBy("B")]).toEqual([1, []]);
    });

    test("ClientRegistry.ownedBy returns a copy, safe to hold while ids come and go", async () => {
      const a = await reg.create("A");
      const held = reg.ownedBy("A");
      await reg.create("A");
      await reg.destroy(a);
      expect(held).toEqual([a]);
    });

    test("ClientRegistry.witness of an id at or above nextId moves nextId past it and marks the ids up to it lost (where records can be lost)", async () => {
      const live = await reg.create("A");
      await reg.witness(live);
      expect([reg.lost(), reg.isLost(live)]).toEqual([[], false]);
      const from = reg.nextId;
      await reg.witness(from + 4);
      expect(reg.nextId).toBe(from + 5);
      const lost = !options.losesNothing;
      expect(reg.lost()).toEqual(lost ? [from, from + 4] : []);
      expect([reg.isLost(from), reg.isLost(from + 4), reg.isLost(from + 5), reg.owner(from + 2)]).toEqual([lost, lost, false, undefined]);
      expect(await reg.create("A")).toBe(from + 5);
    });

    persistentOnly("ClientRegistry keeps ids, owners, destroys, lost ids and nextId across reopen (persistent backends)", async () => {
      const a = await reg.create("A");
      const b = await reg.create("B");
      const c = await reg.create("A");
      await reg.destroy(b);
      await reg.witness(reg.nextId + 1);
      const next = reg.nextId;
      const lost = reg.lost();
      reg = (await fx.reopen!()).clients;
      expect([reg.owner(a), reg.owner(b), reg.owner(c), reg.size, reg.nextId, reg.lost()]).toEqual(["A", undefined, "A", 2, next, lost]);
      expect(await reg.create("B")).toBe(next);
    });

    volatileOnly("ClientRegistry after a restart knows no id, and hands out none of the ids of the run before (volatile backends)", async () => {
      const before = await Promise.all([reg.create("A"), reg.create("A"), reg.create("B")]);
      // A restart takes longer than this; the memory registry starts above what a run made per ms.
      await Bun.sleep(2);
      reg = (await fx.restart!()).clients;
      expect([reg.size, ...before.map((id) => reg.owner(id))]).toEqual([0, undefined, undefined, undefined]);
      for (const id of before) expect(reg.nextId).toBeGreaterThan(id);
    });
  });
}

export function runBrokerCredentialsSuite(name: string, newFixture: () => Promise<RegistryFixture>, options: { persistent: boolean }): void {
  const persistentOnly = test.skipIf(!options.persistent);

  describe(`BrokerCredentials contract: ${name}`, () => {
    let fx: RegistryFixture;
    let creds: BrokerCredentials;

    beforeEach(async () => {
      fx = await newFixture();
      creds = fx.credentials;
    });

    afterEach(async () => {
      await fx.cleanup();
    });

    test("BrokerCredentials binds an identity to the secret it first comes with; that secret matches, another does not", async () => {
      expect(creds.size).toBe(0);
      expect(await creds.check("host-a", "secret-1")).toBe("bound");
      expect(await creds.check("host-a", "secret-1")).toBe("match");
      expect(await creds.check("host-a", "secret-2")).toBe("mismatch");
      expect(await creds.check("host-a", "")).toBe("mismatch");
      expect(creds.size).toBe(1);
    });

    test("BrokerCredentials keeps identities apart: one secret may open two identities, each bound on its own", async () => {
      expect(await creds.check("host-a", "s")).toBe("bound");
      expect(await creds.check("host-b", "s")).toBe("bound");
      expect(await creds.check("host-b", "t")).toBe("mismatch");
      expect(await creds.check("host-a", "s")).toBe("match");
      expect(creds.size).toBe(2);
    });

    test("BrokerCredentials: two first hellos of one identity at once bind one secret; the other is refused", async () => {
      const verdicts = await Promise.all([creds.check("host-a", "first"), creds.check("host-a", "second"), creds.check("host-a", "first")]);
      expect(verdicts).toEqual(["bound", "mismatch", "match"]);
      expect(creds.size).toBe(1);
    });

    persistentOnly("BrokerCredentials keeps its bindings across reopen (persistent backends)", async () => {
      await creds.check("host-a", "s");
      await creds.check("host-b", "t");
      creds = (await fx.reopen!()).credentials;
      expect([creds.size, await creds.check("host-a", "s"), await creds.check("host-b", "s"), await creds.check("host-c", "u")]).toEqual([2, "match", "mismatch", "bound"]);
    });
  });
}

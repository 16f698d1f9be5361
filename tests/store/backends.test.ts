/**
 * The storage factory (lib/store/backend.ts) and the contracts of what it makes, run on
 * every backend: the topic store, the client registry and the broker credentials. The
 * TopicLog and SubscriberIndex contracts run on both backends in topic-log.test.ts and
 * subscriber-index.test.ts. The postgres backend, which needs a PostgreSQL, runs them in
 * pg-backends.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { openStorage, STORE_KINDS, type StorageOptions } from "../../lib/store/backend.ts";
import type { Storage, StoreKind } from "../../lib/store/types.ts";
import { runBrokerCredentialsSuite, runClientRegistrySuite, type RegistryFixture } from "./client-registry.contract.ts";
import { runTopicStoreSuite } from "./topic-store.contract.ts";

function options(kind: StoreKind, dataDir: string): StorageOptions {
  return { kind, dataDir, fsync: "never", fsyncIntervalMs: 50, owner: "mq test" };
}

/** A Storage of `kind` in a fresh directory; `reopen` (file) or `restart` (memory) closes it and opens the next one. */
async function storageFixture(kind: StoreKind) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `mq-backend-${kind}-`));
  let current: Storage = await openStorage(options(kind, dir));
  const next = async () => {
    await current.close();
    current = await openStorage(options(kind, dir));
    return current;
  };
  return {
    current: () => current,
    next,
    cleanup: async () => {
      await current.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function registryFixture(kind: StoreKind): Promise<RegistryFixture> {
  const s = await storageFixture(kind);
  const again = async () => {
    const opened = await s.next();
    return { clients: opened.clients, credentials: opened.credentials };
  };
  return {
    clients: s.current().clients,
    credentials: s.current().credentials,
    ...(kind === "file" ? { reopen: again } : { restart: again }),
    cleanup: s.cleanup,
  };
}

for (const kind of STORE_KINDS.filter((k) => k !== "postgres")) {
  const persistent = kind === "file";
  runTopicStoreSuite(
    `${kind} store`,
    async () => {
      const s = await storageFixture(kind);
      return { store: s.current().topics, ...(persistent ? { reopen: async () => (await s.next()).topics } : {}), cleanup: s.cleanup };
    },
    { persistent },
  );
  runClientRegistrySuite(`${kind} store`, () => registryFixture(kind), { persistent });
  runBrokerCredentialsSuite(`${kind} store`, () => registryFixture(kind), { persistent });
}

describe("openStorage", () => {
  const dirs: string[] = [];
  const dir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "mq-open-storage-"));
    dirs.push(d);
    return d;
  };

  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  test("openStorage file makes the data directory and locks it: a second one is refused, naming who holds it, until the first closes", async () => {
    const data = path.join(dir(), "nested", "data");
    const first = await openStorage(options("file", data));
    expect(first.kind).toBe("file");
    expect(["lock", "topics", "clients", "brokers"].filter((f) => !fs.existsSync(path.join(data, f)))).toEqual([]);
    await expect(openStorage(options("file", data))).rejects.toThrow(`another mq test (pid ${process.pid}) is using it`);
    await first.close();
    await first.close(); // closing twice is one close
    const second = await openStorage(options("file", data));
    await second.close();
  });

  test("openStorage memory writes nothing and locks nothing: two on one directory, each with its own topics and ids", async () => {
    const data = dir();
    const a = await openStorage(options("memory", data));
    const b = await openStorage(options("memory", data));
    try {
      expect(a.kind).toBe("memory");
      await a.topics.open("only.in.a", true);
      expect(await a.clients.create("A")).toBeGreaterThan(0);
      expect([await b.topics.topics(), b.clients.size]).toEqual([[], 0]);
      expect(fs.readdirSync(data)).toEqual([]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("openStorage of an unknown kind throws naming the kinds there are", async () => {
    await expect(openStorage(options("disk" as StoreKind, dir()))).rejects.toThrow('unknown store "disk": use file, memory, postgres');
  });
});

/**
 * The storage factory (lib/store/backend.ts) and the contracts of what it makes, run on
 * every backend: the topic store, the client registry and the broker credentials. The
 * TopicLog and SubscriberIndex contracts run on both backends in topic-log.test.ts and
 * subscriber-index.test.ts. The postgres backend, which needs a PostgreSQL, runs them in
 * pg-backends.test.ts.
 */
import { afterEach, describe, expect, spyOn, test } from "bun:test";
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

// A state file deleted while the server was down lost its state with no log line: empty
// copies were made, and groups.json absent read as no groups.
describe("openStorage file: a state file missing at a start is logged at ERROR, naming it and what was lost", () => {
  async function withStderr<T>(run: () => Promise<T>): Promise<{ result: T; errors: string[] }> {
    let text = "";
    const spy = spyOn(process.stderr, "write").mockImplementation(((chunk: string | Uint8Array) => {
      text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
      return true;
    }) as typeof process.stderr.write);
    try {
      const result = await run();
      return { result, errors: text.split("\n").filter((l) => / ERROR |\[error\]/.test(l)) };
    } finally {
      spy.mockRestore();
    }
  }

  test("subscribers of a topic that has messages, consumers, scheduled/schedule and groups.json: each deleted is one ERROR; a clean start and a fresh directory log none", async () => {
    const data = fs.mkdtempSync(path.join(os.tmpdir(), "mq-state-files-"));
    try {
      const first = await withStderr(async () => {
        const s = await openStorage(options("file", data));
        const t = (await s.topics.open("t", true))!;
        await t.subscribers.add(7, 1);
        await t.log.append(new TextEncoder().encode("hello"), 5);
        await s.topics.open("empty", true);
        await s.close();
      });
      expect(first.errors).toEqual([]);
      const again = await withStderr(async () => (await openStorage(options("file", data))).close());
      expect(again.errors).toEqual([]);
      for (const f of ["topics/t/subscribers", "topics/empty/subscribers", "consumers", "scheduled/schedule"]) {
        fs.rmSync(path.join(data, f));
        fs.rmSync(path.join(data, `${f}.mirror`));
      }
      fs.rmSync(path.join(data, "groups.json"));
      const after = await withStderr(async () => {
        const s = await openStorage(options("file", data));
        const t = (await s.topics.open("t", false))!;
        await s.topics.open("empty", false);
        await s.close();
        return [...t.subscribers.cursors];
      });
      expect(after.result).toEqual([]);
      const has = (what: string) => after.errors.filter((l) => l.includes(what)).length;
      expect(after.errors).toHaveLength(4);
      expect(has(`${path.join(data, "topics/t/subscribers")} and its copy`)).toBe(1);
      expect(has("every subscription to it and its cursor are lost")).toBe(1);
      expect(has(`${path.join(data, "consumers")} and its copy`)).toBe(1);
      expect(has(`${path.join(data, "scheduled/schedule")} and its copy`)).toBe(1);
      expect(has(`${path.join(data, "groups.json")} is missing`)).toBe(1);
      // Reported once: the files were made again.
      expect((await withStderr(async () => (await openStorage(options("file", data))).close())).errors).toEqual([]);
    } finally {
      fs.rmSync(data, { recursive: true, force: true });
    }
  });
});

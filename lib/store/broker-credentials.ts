/**
 * The credentials of the local brokers (the BrokerCredentials interface of types.ts):
 * MemoryBrokerCredentials keeps the bindings in memory, FileBrokerCredentials also in a file.
 *
 * `DATA/brokers`: the credential each local broker identity proved at first contact, as a
 * RecordFile of `{b: identity, h: hex SHA-256 of the secret}`. The identity is public (it is
 * in logs and `mq stats`); the secret never leaves the local broker's data directory except
 * in its hello, and only its hash is kept here. Trust on first use: an identity the server
 * has never seen is bound to the secret it first comes with; from then on only that secret
 * opens it. Records are only ever added, so the file needs no compaction.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { RecordFile } from "./record-file.ts";
import type { BrokerCredentials, CredentialCheck } from "./types.ts";

export type { CredentialCheck };

/** The bindings in memory: the credentials of a memory store (forgotten at a restart: each identity is bound anew). */
export class MemoryBrokerCredentials implements BrokerCredentials {
  protected readonly hashes = new Map<string, Buffer>();

  get size(): number {
    return this.hashes.size;
  }

  async check(identity: string, secret: string): Promise<CredentialCheck> {
    const hash = digest(secret);
    const known = this.hashes.get(identity);
    if (known) return timingSafeEqual(known, hash) ? "match" : "mismatch";
    this.hashes.set(identity, hash);
    return "bound";
  }

  async close(): Promise<void> {}
}

/** The bindings kept in `DATA/brokers` (see the top of this file). */
export class FileBrokerCredentials extends MemoryBrokerCredentials {
  /** First-contact bindings being written: a second hello of the identity waits for the first. */
  private readonly binding = new Map<string, Promise<void>>();
  private readonly file: RecordFile;

  constructor(file: string) {
    super();
    this.file = RecordFile.open(file, {
      apply: (r) => {
        if (typeof r.b === "string" && typeof r.h === "string" && /^[0-9a-f]{64}$/.test(r.h)) this.hashes.set(r.b, Buffer.from(r.h, "hex"));
      },
      // A repair (after damage) rewrites every binding still known.
      snapshot: () => [...this.hashes].map(([b, h]) => ({ b, h: h.toString("hex") })),
    });
  }

  /**
   * Compares `secret` with the one bound to `identity` (in constant time, over hashes), or
   * binds it if the identity is new. A binding is durable before `bound` is returned.
   */
  override async check(identity: string, secret: string): Promise<CredentialCheck> {
    const pending = this.binding.get(identity);
    if (pending) {
      await pending;
      return this.check(identity, secret);
    }
    // From here to the append, nothing awaits: a binding is either durable or pending.
    const hash = digest(secret);
    const known = this.hashes.get(identity);
    if (known) return timingSafeEqual(known, hash) ? "match" : "mismatch";
    // Visible at once, so a concurrent hello of the same identity compares against it
    // (after waiting for the write below) instead of binding a second secret.
    this.hashes.set(identity, hash);
    const write = this.file.append({ b: identity, h: hash.toString("hex") }, true);
    const settled = write.then(
      () => {},
      () => {},
    );
    this.binding.set(identity, settled);
    try {
      await write;
    } catch (err) {
      this.hashes.delete(identity); // not durable: not bound
      throw err;
    } finally {
      if (this.binding.get(identity) === settled) this.binding.delete(identity);
    }
    return "bound";
  }

  override async close(): Promise<void> {
    await this.file.close();
  }
}

/**
 * The secret is 256 random bits made by the local broker, not a password a person chose, so
 * one fast hash is as strong as a slow one; the prefix keeps these hashes apart from any
 * other use of SHA-256 over the same bytes.
 */
export function digest(secret: string): Buffer {
  return createHash("sha256").update("mq broker secret v1\0").update(secret).digest();
}

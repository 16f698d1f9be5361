/**
 * The local brokers' credentials on PostgreSQL (types.ts BrokerCredentials): `mq_brokers`,
 * identity → hex SHA-256 of the secret (the digest of broker-credentials.ts). Trust on first
 * use across servers: the first binding is an insert that does nothing when the identity is
 * there already, then every server compares against the row that won, so two servers seeing
 * two first hellos of one identity bind exactly one secret. Bindings never change, so each
 * one read is kept in memory and compared there.
 */
import type { SQL } from "bun";
import { timingSafeEqual } from "node:crypto";
import { digest } from "../broker-credentials.ts";
import type { BrokerCredentials, CredentialCheck } from "../types.ts";

const HASH = /^[0-9a-f]{64}$/;

export class PgBrokerCredentials implements BrokerCredentials {
  private readonly hashes = new Map<string, Buffer>();
  /** First contacts being looked up or bound: another hello of the identity waits for it. */
  private readonly binding = new Map<string, Promise<void>>();

  private constructor(private readonly sql: SQL) {}

  static async open(sql: SQL): Promise<PgBrokerCredentials> {
    const credentials = new PgBrokerCredentials(sql);
    for (const row of await sql`select identity, secret from mq_brokers`) credentials.remember(row.identity, row.secret);
    return credentials;
  }

  /** Identities bound that this server has seen (at open, or checked since). */
  get size(): number {
    return this.hashes.size;
  }

  async check(identity: string, secret: string): Promise<CredentialCheck> {
    for (let pending = this.binding.get(identity); pending; pending = this.binding.get(identity)) await pending;
    const hash = digest(secret);
    const known = this.hashes.get(identity);
    if (known) return timingSafeEqual(known, hash) ? "match" : "mismatch";
    const bind = this.bind(identity, hash);
    const settled = bind.then(
      () => {},
      () => {},
    );
    this.binding.set(identity, settled);
    try {
      if (await bind) return "bound";
    } finally {
      if (this.binding.get(identity) === settled) this.binding.delete(identity);
    }
    return timingSafeEqual(this.hashes.get(identity)!, hash) ? "match" : "mismatch";
  }

  /** Binds `hash` to `identity` unless another server bound one first; true when this one did. Either way the binding is remembered. */
  private async bind(identity: string, hash: Buffer): Promise<boolean> {
    const hex = hash.toString("hex");
    const inserted = await this.sql`insert into mq_brokers (identity, secret) values (${identity}, ${hex}) on conflict (identity) do nothing returning identity`;
    if (inserted.length > 0) {
      this.hashes.set(identity, hash);
      return true;
    }
    const [row] = await this.sql`select secret from mq_brokers where identity = ${identity}`;
    if (!row || !HASH.test(row.secret)) throw new Error(`mq_brokers: the binding of local broker ${JSON.stringify(identity)} is missing or not a hex SHA-256: was the table changed by hand?`);
    this.remember(identity, row.secret);
    return false;
  }

  private remember(identity: string, hex: string): void {
    if (HASH.test(hex)) this.hashes.set(identity, Buffer.from(hex, "hex"));
  }

  async close(): Promise<void> {}
}

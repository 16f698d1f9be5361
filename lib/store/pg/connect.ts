/**
 * Opening the PostgreSQL store's pool (`--store postgres://USER[:PASSWORD]@HOST:PORT/DB`):
 * the URL's password never appears in a log line or an error, which name the database as
 * HOST:PORT/DB (url.ts).
 */
import { SQL } from "bun";
import { Code, MqError } from "../../errors.ts";
import { migrate } from "./schema.ts";
import { maskPassword, postgresLocation } from "./url.ts";

/** Connections in the pool: appends of several topics commit side by side. */
const POOL_SIZE = 8;
/** Seconds to wait for a connection before a store call fails (and with it a start). */
const CONNECT_TIMEOUT_S = 10;

/**
 * The pool, with the tables made (schema.ts). `synchronousCommit` false: a commit returns
 * before PostgreSQL has flushed it (`--fsync interval|never`). A database that cannot be
 * reached is UNAVAILABLE (the start fails with exit 4); the pool is closed on any failure.
 */
export async function connectPostgres(url: string, synchronousCommit: boolean): Promise<SQL> {
  const where = postgresLocation(url);
  let sql: SQL;
  try {
    sql = new SQL(url, { max: POOL_SIZE, connectionTimeout: CONNECT_TIMEOUT_S, connection: { synchronous_commit: synchronousCommit ? "on" : "off" } });
  } catch (err) {
    throw new Error(`--store: cannot use ${maskPassword(url, url)}: ${maskPassword((err as Error).message, url)}`);
  }
  try {
    await migrate(sql);
    return sql;
  } catch (err) {
    await sql.close().catch(() => {});
    const message = maskPassword((err as Error).message, url);
    const code = String((err as { code?: unknown }).code ?? "");
    if (code.startsWith("ERR_POSTGRES_CONNECTION") || code === "ERR_POSTGRES_CONNECTION_TIMEOUT") {
      throw new MqError(Code.Unavailable, `Cannot reach the PostgreSQL store postgres ${where}: ${message}; is PostgreSQL running there? Check --store (or MQ_STORE)`);
    }
    throw new Error(`Cannot open the PostgreSQL store postgres ${where}: ${message}`);
  }
}

/**
 * The database URL of `--store postgres://USER[:PASSWORD]@HOST:PORT/DB` in messages: named as
 * HOST:PORT/DB, the password never shown. No imports: the CLI's argument checks load it at
 * every start (tests/startup-imports.test.ts).
 */

/** `HOST:PORT/DB` of a postgres:// URL, for log lines: no user, no password. */
export function postgresLocation(url: string): string {
  try {
    const u = new URL(url);
    const db = decodeURIComponent(u.pathname.replace(/^\//, "")) || decodeURIComponent(u.username) || "postgres";
    return `${u.hostname || "localhost"}:${u.port || "5432"}/${db}`;
  } catch {
    return "(a URL that does not parse)";
  }
}

/** `text` with the URL's password (as written and decoded) replaced by `***`. */
export function maskPassword(text: string, url: string): string {
  let password = "";
  try {
    password = new URL(url).password;
  } catch {
    const m = /^[a-z]+:\/\/[^:@/]*:([^@/]*)@/i.exec(url);
    password = m?.[1] ?? "";
  }
  if (!password) return text;
  let masked = text.split(password).join("***");
  const decoded = safeDecode(password);
  if (decoded) masked = masked.split(decoded).join("***");
  return masked;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return "";
  }
}

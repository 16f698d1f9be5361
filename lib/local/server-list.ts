/**
 * The servers a local broker may connect to (`mq local --server A,B,…`): which one it tries
 * now, which one next, and how long it waits before an attempt. With one address this is the
 * reconnect backoff the broker always had; with several, a lost or unreachable server is
 * followed at once by the next in the list, and the broker only sleeps once it has tried
 * them all. A server that refused the hello (token, secret, version, identity in use) is
 * skipped for a while of its own, growing with each refusal, so it is not asked in a loop.
 */
import { parseHostPort } from "../config.ts";

export interface ServerAddress {
  hostname: string;
  port: number;
}

/** Between failed rounds (every address tried once): capped exponential backoff with jitter. */
export const BACKOFF_MIN_MS = 100;
export const BACKOFF_MAX_MS = 2000;
/**
 * After a server refused this broker: retrying fast would change nothing, and a copied data
 * directory retrying fast would keep probing the original's session.
 */
export const REFUSED_BACKOFF_MIN_MS = 1000;
export const REFUSED_BACKOFF_MAX_MS = 15_000;

/** `HOST:PORT`, IPv6 in brackets (as `--server` takes it). */
export function formatAddress(a: ServerAddress): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/**
 * Parses `HOST:PORT,HOST:PORT,…` (spaces around entries allowed). Throws a RangeError naming
 * the entry that is empty, not an address, port 0, or given twice.
 */
export function parseServerList(value: string): ServerAddress[] {
  const entries = value.split(",").map((e) => e.trim());
  const seen = new Set<string>();
  const out: ServerAddress[] = [];
  for (const [i, entry] of entries.entries()) {
    if (entry === "") {
      throw new RangeError(`Cannot parse the server list ${JSON.stringify(value)}: entry ${i + 1} is empty; give HOST:PORT addresses separated by commas, e.g. 10.0.0.1:7600,10.0.0.2:7600`);
    }
    const address = parseHostPort(entry);
    if (address.port === 0) throw new RangeError(`Cannot connect to ${JSON.stringify(entry)}: port 0 is not a server's port; give the port the server listens on, e.g. ${address.hostname}:7600`);
    const key = formatAddress(address).toLowerCase();
    if (seen.has(key)) throw new RangeError(`The server list ${JSON.stringify(value)} names ${JSON.stringify(entry)} twice; give each server once`);
    seen.add(key);
    out.push(address);
  }
  return out;
}

export class ServerList {
  readonly addresses: readonly ServerAddress[];
  private index = 0;
  private backoff = BACKOFF_MIN_MS;
  /** Addresses attempted since the last backoff sleep: coming back to one ends a round. */
  private readonly tried = new Set<number>();
  /** Per address: not attempted before this time (it refused us), and its next refusal wait. */
  private readonly refusedUntil: number[];
  private readonly refusedBackoff: number[];
  /** Per address: its last attempt was refused (not merely unreachable). */
  private readonly lastRefused: boolean[];

  /** `random`: a number in [0, 1) for the jitter (Math.random; tests pass their own). */
  constructor(
    addresses: readonly ServerAddress[],
    private readonly random: () => number = Math.random,
  ) {
    if (addresses.length === 0) throw new RangeError("a local broker needs at least one server address");
    this.addresses = [...addresses];
    this.refusedUntil = addresses.map(() => 0);
    this.refusedBackoff = addresses.map(() => REFUSED_BACKOFF_MIN_MS);
    this.lastRefused = addresses.map(() => false);
  }

  /** Every address refused at its last attempt: the refusal is the answer to give, not "unreachable". */
  get allRefused(): boolean {
    return this.lastRefused.every(Boolean);
  }

  get size(): number {
    return this.addresses.length;
  }

  /** The address to attempt now (or connected to). */
  get current(): ServerAddress {
    return this.addresses[this.index]!;
  }

  get currentText(): string {
    return formatAddress(this.current);
  }

  /** The whole list as `--server` takes it. */
  toString(): string {
    return this.addresses.map(formatAddress).join(",");
  }

  /** The current server answered the hello: its refusals are forgotten, the backoff starts over. */
  connected(): void {
    this.lastRefused[this.index] = false;
    this.refusedUntil[this.index] = 0;
    this.refusedBackoff[this.index] = REFUSED_BACKOFF_MIN_MS;
    this.backoff = BACKOFF_MIN_MS;
    this.tried.clear();
  }

  /** The connection to the current server was lost: the first attempt goes to the next one in the list (the same one when it is alone). */
  lost(): void {
    this.index = (this.index + 1) % this.addresses.length;
  }

  /**
   * An attempt on the current server failed (`refused`: it answered the hello with a
   * refusal). Moves on to the next address in turn that is not waiting out a refusal, and
   * returns how long to wait before attempting it: 0 while the round has addresses not yet
   * tried, the backoff once it comes back to one, the shortest refusal wait when all refused.
   */
  failed(now: number, refused: boolean): number {
    const i = this.index;
    this.tried.add(i);
    this.lastRefused[i] = refused;
    if (refused) {
      const wait = this.refusedBackoff[i]!;
      this.refusedUntil[i] = now + wait / 2 + this.random() * wait;
      this.refusedBackoff[i] = Math.min(wait * 2, REFUSED_BACKOFF_MAX_MS);
    } else {
      // Unreachable is not a refusal: when it answers again, its refusal wait starts over.
      this.refusedBackoff[i] = REFUSED_BACKOFF_MIN_MS;
    }
    // The next address in turn that may be attempted now; else the one whose wait ends first.
    let next = -1;
    let soonest = -1;
    for (let k = 1; k <= this.addresses.length; k++) {
      const j = (i + k) % this.addresses.length;
      if (this.refusedUntil[j]! <= now) {
        next = j;
        break;
      }
      if (soonest < 0 || this.refusedUntil[j]! < this.refusedUntil[soonest]!) soonest = j;
    }
    if (next < 0) {
      this.index = soonest;
      this.tried.clear();
      return this.refusedUntil[soonest]! - now;
    }
    this.index = next;
    if (!this.tried.has(next)) return 0;
    // Back to an address tried in this round: all have failed; sleep before the next round.
    this.tried.clear();
    const wait = this.backoff / 2 + this.random() * this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    return wait;
  }
}

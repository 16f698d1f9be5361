/**
 * Reading a backlog in order. A subscriber behind the tail cache is served 64 messages a read
 * (lib/server/topic.ts); each read used to start at the sparse index entry before it (up to
 * 64 KiB back), read that plus 1 KiB per message asked for, and check the CRC of every record
 * on the way: ~128 KiB read and ~450 records checked for 64 messages of 128 B, the same bytes
 * again for the next 64 (docs/benchmarks.md, "draining a backlog").
 *
 * Two things make the next read of the same reader cheap:
 * - `ReadHints`, per log: where each of its last few reads stopped (the record after the last
 *   one it returned), so a read from there starts there;
 * - `readAhead` (ReadAheadChunks), per process: the bytes a read took past what it was asked for, so the next
 *   reads of that reader (and of others near it) are cut out of them without a syscall.
 *   At most `MAX_CHUNKS` chunks over all topics: a reader's new chunk replaces the one it goes on
 *   from, else the oldest goes.
 *
 * Cached bytes were below the log's end when read: bytes there change only when a failed
 * commit is cut off (a record not acknowledged, whose seq is written again) or damage is found
 * and skipped, and both drop what is kept of that segment (`forget`).
 */

/** How much a read takes from a segment when what it needs is not kept already. */
export const READ_AHEAD_BYTES = 64 * 1024;
/** Chunks kept over all topics: of 64–256 KiB each (READ_CHUNK), so 4–16 MiB beside what messages in flight hold anyway. */
const MAX_CHUNKS = 64;

interface Chunk {
  /** The segment (its object in the log): identity, never a file name that may be reused. */
  owner: object;
  pos: number;
  bytes: Uint8Array;
}

/** The process's chunks (every log's segments share the budget). */
class ReadAheadChunks {
  private readonly chunks: Array<Chunk | undefined> = new Array(MAX_CHUNKS).fill(undefined);
  private next = 0;

  /** The kept bytes of `owner` from `pos` to the end of the chunk holding it, or undefined. */
  from(owner: object, pos: number): Uint8Array | undefined {
    for (const c of this.chunks) {
      if (c !== undefined && c.owner === owner && pos >= c.pos && pos < c.pos + c.bytes.length) return c.bytes.subarray(pos - c.pos);
    }
    return undefined;
  }

  /** Keeps bytes read at `pos`: in place of the chunk they go on from (a reader moving on needs that one no more), else of the oldest. */
  keep(owner: object, pos: number, bytes: Uint8Array): void {
    for (let i = 0; i < this.chunks.length; i++) {
      const c = this.chunks[i];
      if (c !== undefined && c.owner === owner && c.pos < pos && pos <= c.pos + c.bytes.length) {
        this.chunks[i] = { owner, pos, bytes };
        return;
      }
    }
    this.chunks[this.next] = { owner, pos, bytes };
    this.next = (this.next + 1) % MAX_CHUNKS;
  }

  /** Drops every chunk of `owner` (its bytes changed, or it is gone). */
  forget(owner: object): void {
    for (let i = 0; i < this.chunks.length; i++) if (this.chunks[i]?.owner === owner) this.chunks[i] = undefined;
  }
}

export const readAhead = new ReadAheadChunks();

/** Where a read stopped in a segment: the record after seq `prevSeq` (at `prevPos`) starts at `nextPos`. */
export interface ReadHint {
  owner: object;
  prevSeq: number;
  prevPos: number;
  nextPos: number;
}

/** Hints kept per log: a few readers at different places (ids of a fan-out catching up). */
const MAX_HINTS = 4;

export class ReadHints {
  private readonly hints: ReadHint[] = [];

  /** The hint of a read that ended right before `from` in `owner`, if kept. */
  at(owner: object, from: number): ReadHint | undefined {
    for (const h of this.hints) if (h.owner === owner && h.prevSeq + 1 === from) return h;
    return undefined;
  }

  /** Records where a read stopped; replaces the hint it went on from, else the oldest. */
  set(used: ReadHint | undefined, hint: ReadHint): void {
    const k = used === undefined ? -1 : this.hints.indexOf(used);
    if (k >= 0) this.hints.splice(k, 1);
    else if (this.hints.length >= MAX_HINTS) this.hints.shift();
    this.hints.push(hint);
  }

  /** Drops the hints into `owner` (its records moved), or all of them. */
  forget(owner?: object): void {
    for (let i = this.hints.length - 1; i >= 0; i--) if (owner === undefined || this.hints[i]!.owner === owner) this.hints.splice(i, 1);
  }
}

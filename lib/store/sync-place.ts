/**
 * Where a commit's fdatasync runs under `--fsync always`: on the thread pool (the event loop
 * goes on meanwhile; the pool thread's start and its wake-up of the loop cost ~15–60 µs of a
 * publish in `mq up`), or on the event loop itself (`fdatasyncSync`: no thread hop, but the
 * process waits for the disk).
 *
 * On the loop only for a lone publisher: a commit of one request (one publish, or one batch of
 * at most `maxMessages`, as a library sends the publishes of one tick) to one file, that did
 * not wait behind the previous commit (nothing was queued while that one ran on the pool; a
 * commit on the loop lets nothing in meanwhile, so after one, other publishers show only as
 * several requests in one commit), of the same topic as the previous commit and no commit of another topic for
 * `quietMs` (so no other topic's sync is in flight on the pool either, unless a stalling disk
 * holds it longer than that). Everything else in the process waits while the loop syncs, so
 * as soon as several topics are written, or requests queue up behind a commit (several
 * publishers, many in flight), the pool is used, as it always was: there syncs of different
 * topics overlap and the loop reads the next requests while the disk works
 * (docs/benchmarks.md, "one publish in flight: the sync on the event loop", and "a single
 * publish: the sync on the loop widened"). A sync on the loop that took longer than `slowMs`
 * (a disk stalling: then the thread hop is nothing beside it, and the whole process waited)
 * sends the syncs back to the pool for `quietMs`, so the loop waits on a stalling disk at
 * most once per `quietMs`. A commit whose messages are being pushed before its sync
 * (`--deliver-after write`, to a consumer that keeps up) is not lone: the loop is
 * what pushes them to the subscribers, and a sync on it would hold them back for the disk's time.
 *
 * A lone request of more than `maxMessages` (one producer with many publishes in flight, each
 * tick's refill one request) syncs on the loop too once the pool has shown that the loop has
 * nothing else to do meanwhile: `quietSyncsBeforeLoop` pool syncs in a row of lone commits,
 * each quicker than `slowMs`, during which no frame came in on any connection of the process
 * (lib/wire/frames-in.ts) and after which the next commit had not waited. A sync on the loop
 * hides that (nothing comes in while it runs), so after one, more than one frame before the
 * next commit (a lone producer sends just its next request) sends them back to the pool, and
 * every `probeEvery`-th goes to the pool anyway to look. Where anything else goes on (a second
 * batch in flight, a consumer's requests and acks, other clients), the pool lets the loop do it
 * while the disk works; a lone producer that waits for each reply went 6–21 % faster without
 * the thread hops here (docs/benchmarks.md, "a lone producer's big batches").
 */
import { commitSyncs, type FileSystemRef } from "./commit-syncs.ts";
import type { PooledFile } from "./open-files.ts";
import { framesIn } from "../wire/frames-in.ts";

/** What one commit holds, as far as the rule cares. */
export interface CommitShape {
  /** Requests (group-commit entries) in the commit. */
  requests: number;
  messages: number;
  /** Files it wrote, each to be synced. */
  files: number;
  /** Some of it was queued while the previous commit ran. */
  waited: boolean;
  /** Readers were told of its messages before the sync (`--deliver-after write`): the loop must stay free to push them. */
  readers?: boolean;
}

export class SyncPlace {
  /** No commit of another topic for this long before a sync may run on the loop. */
  quietMs = 100;
  /** A sync on the loop longer than this sends the syncs back to the pool for `quietMs`. */
  slowMs = 20;
  /** The most messages a lone request's commit may hold and sync on the loop without the pool's say (below). */
  maxMessages = 32;
  /** Quiet pool syncs in a row (below) before a bigger lone request syncs on the loop. */
  quietSyncsBeforeLoop = 2;
  /** Of the bigger lone requests that could sync on the loop, every this many-th goes to the pool to look. */
  probeEvery = 16;
  private lastTopic: object | null = null;
  /** When the topic of the commits last changed (performance.now()). */
  private topicChangedAt = -Infinity;
  /** Where the previous commit synced. */
  private last: "loop" | "pool" | null = null;
  /** The previous commit was lone: one request, to one file, that had not waited. */
  private lastLone = false;
  /** The last pool sync was quiet: of a lone commit, quicker than slowMs, no frame came in while it ran. */
  private poolQuiet = false;
  /** framesIn when the previous commit was placed. */
  private framesAtLast = 0;
  /** Quiet pool syncs in a row, each followed by a commit that had not waited. */
  private quietPoolSyncs = 0;
  /** Bigger lone requests since the last one sent to the pool to look. */
  private sinceProbe = 0;

  constructor(
    private readonly now: () => number = () => performance.now(),
    private readonly frames: () => number = () => framesIn.count,
  ) {}

  /** Called once per commit that syncs: true to sync on the event loop, false on the pool. */
  onLoop(topic: object, commit: CommitShape): boolean {
    const frames = this.frames();
    if (this.last === "pool") this.quietPoolSyncs = this.poolQuiet && !commit.waited ? this.quietPoolSyncs + 1 : 0;
    // After a sync on the loop a lone producer has sent its next request, one frame, and nothing else came.
    else if (this.last === "loop" && frames - this.framesAtLast > 1) this.quietPoolSyncs = 0;
    this.framesAtLast = frames;
    // Messages on their way to readers: the pool, so that the loop pushes them while the disk works.
    const lone = commit.requests === 1 && commit.files === 1 && !commit.waited && !commit.readers;
    const onLoop = this.place(topic, commit.messages, lone);
    this.last = onLoop ? "loop" : "pool";
    this.lastLone = lone;
    this.poolQuiet = false;
    return onLoop;
  }

  private place(topic: object, messages: number, lone: boolean): boolean {
    if (topic !== this.lastTopic) {
      this.lastTopic = topic;
      this.topicChangedAt = this.now();
      this.quietPoolSyncs = 0;
      this.sinceProbe = 0;
      return false;
    }
    if (!lone || this.now() - this.topicChangedAt < this.quietMs) return false;
    if (messages <= this.maxMessages) return true;
    if (this.quietPoolSyncs < this.quietSyncsBeforeLoop) return false;
    if (++this.sinceProbe < this.probeEvery) return true;
    this.sinceProbe = 0;
    return false;
  }

  /** A sync on the loop took `ms`. */
  loopSyncTook(ms: number): void {
    if (ms > this.slowMs) {
      this.topicChangedAt = this.now();
      this.quietPoolSyncs = 0;
    }
  }

  /** `sync`, the pool's sync of the commit `onLoop` just placed there, noting whether it was quiet. */
  onPool<T>(sync: Promise<T>): Promise<T> {
    const frames = this.frames();
    const started = this.now();
    const lone = this.lastLone;
    // Also when it failed: the next commit is judged by this one.
    return sync.finally(() => {
      this.poolQuiet = lone && this.frames() === frames && this.now() - started <= this.slowMs;
    });
  }
}

/** The process's rule: all topics of all file stores share the one event loop. */
export const syncPlace = new SyncPlace();

/**
 * Makes a commit's `files` durable, `syncPlace` choosing where; `owner` is the topic's log,
 * `fileSystem` the one its files are on.
 * Returns undefined when done already (synced on the loop), else the pool's promise.
 */
export function syncCommit(owner: object, commit: CommitShape, files: PooledFile[], fileSystem: FileSystemRef | undefined): Promise<unknown> | undefined {
  if (syncPlace.onLoop(owner, commit)) {
    syncPlace.loopSyncTook(files[0]!.syncOnLoop());
    return undefined;
  }
  // With other topics' commits: lib/store/commit-syncs.ts.
  return syncPlace.onPool(commitSyncs.sync(files, fileSystem));
}

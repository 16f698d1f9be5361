/**
 * Group commit: items added in the same tick, and all those added while a commit is
 * running, go to disk together in the next call of `commit` — one write and one fsync for
 * many publishes, so durable throughput grows with concurrency. A commit may `release` the
 * queue before it returns (its write is done, its fsync runs): the next batch is then written
 * while that fsync runs, and only their answers wait for it.
 */
interface Queued<T, R> {
  item: T;
  resolve(result: R): void;
  reject(err: unknown): void;
}
/** Several items added at once (`addMany`): one promise for them all, their results in order. */
interface QueuedMany<T, R> {
  items: T[];
  resolve(results: R[]): void;
  reject(err: unknown): void;
}

export class GroupCommit<T, R> {
  private queue: Array<Queued<T, R> | QueuedMany<T, R>> = [];
  private running = false;
  /** Commits that released the queue and have not returned yet. */
  private released = 0;
  private scheduled = false;
  /** Items were added while a commit ran: the next batch waited behind it (others are publishing). */
  private addedWhileRunning = false;
  private idleWaiters: Array<() => void> = [];

  /**
   * `commit` writes a batch and returns one result per item; a throw fails the whole batch.
   * `waited`: some of the batch was added while the previous commit ran. `release()`: the next
   * batch may start now, before this commit returns.
   */
  constructor(private readonly commit: (items: T[], waited: boolean, release: () => void) => Promise<R[]>) {}

  /** True while a commit runs or items wait for one. */
  get busy(): boolean {
    return this.running || this.released > 0 || this.queue.length > 0;
  }

  add(item: T): Promise<R> {
    const { promise, resolve, reject } = Promise.withResolvers<R>();
    this.queue.push({ item, resolve, reject });
    this.schedule();
    return promise;
  }

  /** Adds `items` to the same commit (consecutive in it), with one promise for their results, in order. */
  addMany(items: T[]): Promise<R[]> {
    if (items.length === 0) return Promise.resolve([]);
    const { promise, resolve, reject } = Promise.withResolvers<R[]>();
    this.queue.push({ items, resolve, reject });
    this.schedule();
    return promise;
  }

  private schedule(): void {
    if (this.running) this.addedWhileRunning = true;
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => void this.run());
  }

  /** Resolves once nothing is queued or running. */
  idle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.idleWaiters.push(resolve);
    return promise;
  }

  private async run(): Promise<void> {
    this.scheduled = false;
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    const batch = this.queue;
    this.queue = [];
    const waited = this.addedWhileRunning;
    this.addedWhileRunning = false;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.released++;
      this.running = false;
      if (this.queue.length > 0) void this.run();
    };
    try {
      const items: T[] = [];
      for (const q of batch) {
        if ("items" in q) for (const item of q.items) items.push(item);
        else items.push(q.item);
      }
      const results = await this.commit(items, waited, release);
      let k = 0;
      for (const q of batch) {
        if ("items" in q) {
          q.resolve(results.slice(k, k + q.items.length));
          k += q.items.length;
        } else q.resolve(results[k++]!);
      }
    } catch (err) {
      for (const q of batch) q.reject(err);
    } finally {
      if (released) this.released--;
      else this.running = false;
      if (!released && this.queue.length > 0) void this.run();
      else if (!this.busy) for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}

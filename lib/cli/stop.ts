/**
 * Why a long-running command must end (a signal, the reader of stdout gone), raced against
 * each wait. `Promise.race([wait, stopPromise])` would leave a reaction on the long-lived
 * stop promise per wait, holding that wait's result: `recv --follow` and `pub --lines` kept
 * every batch and chunk they ever handled until they exited.
 */
export class Stop<R extends string> {
  /** Set once, by the first `fire`. */
  reason: R | undefined;
  private readonly waiters = new Set<(reason: R) => void>();

  fire(reason: R): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    for (const w of this.waiters) w(reason);
    this.waiters.clear();
  }

  /** `wait`'s value, or the reason, whichever comes first; nothing of `wait` is kept once it settles. */
  race<T>(wait: Promise<T>): Promise<T | R> {
    if (this.reason !== undefined) return Promise.resolve(this.reason);
    return new Promise<T | R>((resolve, reject) => {
      this.waiters.add(resolve);
      wait.then(
        (value) => {
          this.waiters.delete(resolve);
          resolve(value);
        },
        (err: unknown) => {
          this.waiters.delete(resolve);
          reject(err);
        },
      );
    });
  }
}

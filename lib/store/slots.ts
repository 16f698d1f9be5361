/**
 * Slots: at most `size` async jobs at once, the others wait their turn in order. The store
 * bounds with it the work that holds file descriptors of its own (outside OpenFiles) while
 * it waits for the disk, so that a burst of requests cannot take thousands of fds.
 */
export class Slots {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly size: number) {}

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await job();
    } finally {
      // The slot goes straight to the next waiter, if any.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

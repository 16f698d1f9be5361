/**
 * One call in flight, shared by everyone who asks meanwhile. A caller who comes while a call
 * is running joins the next one, which starts when that one ends: an answer is never older
 * than the question (a `topics` asked after a publish sees its topic), and however many ask
 * at once, at most two calls are made.
 *
 * The local broker's `topics` goes through one: its answer grows with the server's topics
 * (300 KB for 3,000), and 200 clients asking at once made the server queue more than a
 * connection then held (16 MiB), so it cut the whole host's session as a slow consumer.
 */
export class SharedCall<T> {
  private running: Promise<T> | null = null;
  private next: Promise<T> | null = null;

  constructor(private readonly run: () => Promise<T>) {}

  call(): Promise<T> {
    if (this.next) return this.next;
    if (!this.running) return this.start();
    const settled = this.running.then(
      () => undefined,
      () => undefined,
    );
    this.next = settled.then(() => {
      this.next = null;
      return this.start();
    });
    return this.next;
  }

  private start(): Promise<T> {
    const p = this.run();
    this.running = p;
    const done = () => {
      if (this.running === p) this.running = null;
    };
    p.then(done, done);
    return p;
  }
}

/**
 * Opens of one name, one at a time: an open asked for while another of the same name is under
 * way waits for it, then asks again (and finds what that one opened, or tries anew after its
 * failure). The topic stores (file and PostgreSQL) create a topic on their storage this way,
 * so that two subscribes or publishes to a new topic never create it twice.
 */
export class OneOpenAtATime {
  private readonly opening = new Map<string, Promise<unknown>>();

  /** `open()` unless one of `name` is under way; after that one, `again()`. */
  async run<T>(name: string, open: () => Promise<NoInfer<T>>, again: () => Promise<T>): Promise<T> {
    const pending = this.opening.get(name);
    if (pending) {
      await pending.catch(() => {});
      return again();
    }
    const opening = open();
    this.opening.set(name, opening);
    try {
      return await opening;
    } finally {
      this.opening.delete(name);
    }
  }
}

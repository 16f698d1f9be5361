/**
 * A queue with a moving head: taking the oldest is O(1), with no per-item allocation, and the
 * array is compacted now and then. A plain array's shift or splice(0, 1) moves every element:
 * with tens of thousands of seqs in flight (an inbox's unacked seqs, lib/server/window.ts)
 * that was a cost per message growing with the window. Used by the local inbox (seqs acked
 * almost always in order) and the server's credits (subscriptions waiting for budget).
 */
export class Fifo<T> {
  private items = emptyItems<T>();
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  /** The oldest item, undefined when empty. */
  get first(): T | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** Takes the oldest item; undefined when empty. */
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined; // let it be collected
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Removes `item`: O(1) when it is the oldest, else a search; false when it is not held. */
  remove(item: T): boolean {
    if (this.head < this.items.length && this.items[this.head] === item) {
      this.shift();
      return true;
    }
    const i = this.items.indexOf(item, this.head);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }
}

/**
 * An empty array that holds any value (JSC's "contiguous" kind) from the start: a `[]` first
 * holds ints and changes kind at the first `undefined` written by `shift`, and the JIT's code
 * for one kind was thrown away when it met the other (docs/benchmarks.md). One kind for every
 * Fifo: the code compiled for one fits all.
 */
function emptyItems<T>(): Array<T | undefined> {
  const items: Array<T | undefined> = [undefined];
  items.length = 0;
  return items;
}

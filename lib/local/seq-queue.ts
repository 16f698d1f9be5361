/**
 * Ascending seqs with removal of any of them, O(1) when it is the oldest (acks come in
 * order, almost always). A plain array's splice(0, 1) moves every element: with a window of
 * tens of thousands of messages in flight (lib/server/window.ts) that was a cost per message
 * growing with the window.
 */
export class SeqQueue {
  private items: number[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  /** The oldest seq, undefined when empty. */
  get first(): number | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  /** Appends `seq` (larger than every seq held). */
  push(seq: number): void {
    this.items.push(seq);
  }

  /** Removes `seq`; false when it is not held. */
  remove(seq: number): boolean {
    if (this.items[this.head] === seq) {
      this.head++;
      if (this.head === this.items.length) {
        this.items.length = 0;
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      return true;
    }
    const i = this.items.indexOf(seq, this.head);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }
}

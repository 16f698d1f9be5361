/**
 * The delivery state of an explicitly acknowledged subscription (a queue group, or a
 * subscription with --max-deliver): an ack floor (every seq below it is done) and, above it,
 * the messages in flight (which member holds each, how often it was delivered) and those
 * waiting to be delivered again. Held in memory; persisted (lib/server/group.ts) as the
 * floor, `next` and the seqs not done between them (`undone`): what the members
 * acknowledged above a floor one member holds down is not delivered again after a restart.
 */

export interface InFlight {
  /** The id of the member it was last delivered to. */
  member: number;
  /** Deliveries so far, this one included. */
  deliveries: number;
  /** Payload bytes, for the member's window and its broker's budgets; -1 while claimed and being read, not yet sent. */
  bytes: number;
  /** Its member's local broker said it still buffers it, never handed to a client (before an unsub or destroy): should the member leave with it, the delivery does not count. */
  buffered?: boolean;
}

export class PendingSet {
  /** Next seq never delivered since the floor was loaded. */
  next: number;
  private readonly inFlight = new Map<number, InFlight>();
  /** Seqs to deliver again, ascending, and their delivery counts so far. */
  private redeliveries: number[] = [];
  private readonly redeliveryCounts = new Map<number, number>();
  /** Seqs handed to the dead-letter topic, not yet stored there: not done, not deliverable. */
  private readonly dying = new Set<number>();
  /**
   * The seqs sent and perhaps not done, ascending (new seqs come in order), from `head` on:
   * those before `head` are done. The floor is the first still tracked, found by moving
   * `head` past the done ones: each ack costs O(1) amortized, not a scan of what is in
   * flight. Seqs done above the floor (one member holds it down, the others go on) are
   * dropped from it when they outnumber the tracked ones: it stays within the members'
   * windows, not everything sent since the floor.
   */
  private order: number[] = [];
  private head = 0;
  private cachedFloor: number;

  /**
   * From `floor`; or as saved (`saved`, from `state()`): every seq in [floor, next) not in
   * `undone` is done, and those in `undone` wait to be delivered again, counted from 0.
   */
  constructor(floor: number, saved?: { next: number; undone: readonly number[] }) {
    this.next = saved ? Math.max(floor, saved.next) : floor;
    for (const seq of saved?.undone ?? []) {
      if (seq < floor || seq >= this.next || this.redeliveryCounts.has(seq)) continue;
      this.redeliveryCounts.set(seq, 0);
      this.redeliveries.push(seq);
    }
    this.redeliveries.sort((a, b) => a - b);
    this.order = this.redeliveries.slice();
    this.cachedFloor = this.order[0] ?? this.next;
  }

  /** What a restart needs to deliver nothing done again: the floor, `next`, and the seqs in between not done (ascending). */
  state(): { floor: number; next: number; undone: number[] } {
    const undone: number[] = [];
    for (let i = this.head; i < this.order.length; i++) if (this.tracked(this.order[i]!)) undone.push(this.order[i]!);
    return { floor: this.floor, next: this.next, undone };
  }

  /** Entries held (the tracked seqs, and the done ones not yet dropped from `order`): bounded by the windows, whatever the floor. */
  get entries(): number {
    return this.order.length + this.inFlight.size + this.redeliveries.length + this.redeliveryCounts.size + this.dying.size;
  }

  /** Every seq below it is done (acknowledged or dead-lettered). */
  get floor(): number {
    return this.cachedFloor;
  }

  /** Messages waiting to be delivered again. */
  get redeliverable(): number {
    return this.redeliveries.length;
  }

  /** The lowest seq the group reads from the log next: the first to deliver again, else `next`. */
  get nextRead(): number {
    const again = this.redeliveries[0];
    return again !== undefined && again < this.next ? again : this.next;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** The next seq to deliver again and its delivery count so far, taken off the queue. */
  takeRedelivery(): { seq: number; deliveries: number } | undefined {
    const seq = this.redeliveries.shift();
    if (seq === undefined) return undefined;
    const deliveries = this.redeliveryCounts.get(seq) ?? 0;
    this.redeliveryCounts.delete(seq);
    return { seq, deliveries };
  }

  /** Records a delivery of `seq` to `member` (`deliveries`: this one included). */
  sent(seq: number, member: number, deliveries: number, bytes: number): void {
    this.inFlight.set(seq, { member, deliveries, bytes });
    if (seq >= this.next) {
      this.next = seq + 1;
      this.order.push(seq);
    }
  }

  /** True while `seq` is on its way to the dead-letter topic. */
  isDying(seq: number): boolean {
    return this.dying.has(seq);
  }

  get(seq: number): InFlight | undefined {
    return this.inFlight.get(seq);
  }

  /** The seqs in flight to `member`, ascending. */
  heldBy(member: number): number[] {
    const out: number[] = [];
    for (const [seq, f] of this.inFlight) if (f.member === member) out.push(seq);
    return out.sort((a, b) => a - b);
  }

  /**
   * `seq` is done (acknowledged, dead-lettered, or gone from the log): forgotten wherever it
   * is. Returns what was in flight for it, if it was. The floor moves past what is done.
   */
  done(seq: number): InFlight | undefined {
    const f = this.inFlight.get(seq);
    this.inFlight.delete(seq);
    this.dying.delete(seq);
    if (this.redeliveryCounts.delete(seq)) this.redeliveries.splice(this.redeliveries.indexOf(seq), 1);
    this.updateFloor();
    return f;
  }

  /** Takes `seq` out of flight for redelivery; returns its delivery count, or undefined when it was not in flight. */
  release(seq: number): number | undefined {
    const f = this.inFlight.get(seq);
    if (!f) return undefined;
    this.inFlight.delete(seq);
    insertSorted(this.redeliveries, seq);
    this.redeliveryCounts.set(seq, f.deliveries);
    return f.deliveries;
  }

  /** A claimed `seq` that was not sent after all (its read stopped short): back to the front, this delivery not counted. */
  unsend(seq: number): void {
    const f = this.inFlight.get(seq);
    if (!f) return;
    this.inFlight.delete(seq);
    insertSorted(this.redeliveries, seq);
    this.redeliveryCounts.set(seq, f.deliveries - 1);
  }

  /** Takes `seq` out of flight for the dead-letter topic: the floor stays below it until `done`. */
  retire(seq: number): void {
    this.inFlight.delete(seq);
    this.dying.add(seq);
  }

  private tracked(seq: number): boolean {
    return this.inFlight.has(seq) || this.dying.has(seq) || this.redeliveryCounts.has(seq);
  }

  private updateFloor(): void {
    while (this.head < this.order.length && !this.tracked(this.order[this.head]!)) this.head++;
    // Mostly done entries (before `head`, or above a floor held down): keep the tracked ones only.
    const tracked = this.inFlight.size + this.dying.size + this.redeliveryCounts.size;
    if (this.order.length > 2 * tracked + 1024) {
      this.order = this.order.slice(this.head).filter((seq) => this.tracked(seq));
      this.head = 0;
    }
    this.cachedFloor = this.head < this.order.length ? this.order[this.head]! : this.next;
  }
}

function insertSorted(list: number[], value: number): void {
  let i = list.length;
  while (i > 0 && list[i - 1]! > value) i--;
  list.splice(i, 0, value);
}

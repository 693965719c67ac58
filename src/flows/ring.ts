// The agent's bounded ring of recent flows (Hubble keeps 4095 per node). Every item has a
// sequence number; a reader that falls more than the capacity behind learns how many items it
// missed, so loss is reported, never hidden. Lost-event markers (kernel ring full, ztunnel records
// dropped) travel in the same ring so readers see them in order.
import type { Flow, LostEvent } from './types.ts';

export type RingItem = { seq: number; flow: Flow } | { seq: number; lost: LostEvent; timeUnixNano: number };

export const DEFAULT_RING_CAPACITY = 4095;

export class FlowRing {
  readonly capacity: number;
  private readonly items: (RingItem | undefined)[];
  private next = 0;
  private flows = 0;
  private readonly listeners = new Set<() => void>();
  /** Called with each flow as it is read (to fill in what was not known when it was made). */
  onRead: ((f: Flow) => void) | undefined;
  /** Flow times of the last minute, for the rate. */
  private readonly recent: number[] = [];

  constructor(capacity = DEFAULT_RING_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`flow ring capacity must be a positive integer, not ${capacity}`);
    this.capacity = capacity;
    this.items = new Array<RingItem | undefined>(capacity);
  }

  /** Sequence number the next item will get. */
  get nextSeq(): number {
    return this.next;
  }

  /** Oldest sequence number still kept. */
  get oldestSeq(): number {
    return Math.max(0, this.next - this.capacity);
  }

  /** Items kept now. */
  get size(): number {
    return this.next - this.oldestSeq;
  }

  /** Flows (not lost markers) ever written. */
  get seenFlows(): number {
    return this.flows;
  }

  /** Items pushed out of the ring by newer ones. */
  get overwritten(): number {
    return this.oldestSeq;
  }

  /** Flows per second over the last minute. */
  rate(nowMs = Date.now()): number {
    while (this.recent.length && this.recent[0]! < nowMs - 60_000) this.recent.shift();
    return this.recent.length / 60;
  }

  push(flow: Flow): void {
    this.put({ seq: this.next, flow });
    this.flows++;
    this.recent.push(Date.now());
    if (this.recent.length > 100_000) this.recent.splice(0, this.recent.length - 100_000);
  }

  pushLost(lost: LostEvent, timeUnixNano: number): void {
    this.put({ seq: this.next, lost, timeUnixNano });
  }

  private put(item: RingItem): void {
    this.items[item.seq % this.capacity] = item;
    this.next++;
    for (const l of this.listeners) l();
  }

  /** The item with this sequence number, if still kept. */
  at(seq: number): RingItem | undefined {
    if (seq < this.oldestSeq || seq >= this.next) return undefined;
    const it = this.items[seq % this.capacity];
    if (it && 'flow' in it) this.onRead?.(it.flow);
    return it;
  }

  /** Called after every push (synchronously). */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

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
  /** Flows per second over the last minute: one counter per second, reused as the clock turns. */
  private readonly perSecond = new Array<number>(60).fill(0);
  private readonly secondOf = new Array<number>(60).fill(-1);

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
    const now = Math.floor(nowMs / 1000);
    let n = 0;
    for (let i = 0; i < 60; i++) if (this.secondOf[i]! > now - 60) n += this.perSecond[i]!;
    return n / 60;
  }

  push(flow: Flow): void {
    this.put({ seq: this.next, flow });
    this.flows++;
    const sec = Math.floor(Date.now() / 1000);
    const i = sec % 60;
    if (this.secondOf[i] !== sec) {
      this.secondOf[i] = sec;
      this.perSecond[i] = 0;
    }
    this.perSecond[i]!++;
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

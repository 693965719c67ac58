// One stream's view of one type: what the client asked for, what it has, what is still to send,
// and the responses awaiting an ACK. Pure bookkeeping, no I/O: the server drives it.
import type { Entry } from './store.ts';
import type { Rejection, TypeStatus } from './server.ts';

/** A sent response: per name the version sent (null: removed) and what the client had before. */
export interface InFlight {
  readonly names: Map<string, { readonly version: string | null; readonly prev: string | undefined }>;
  readonly synced: boolean;
}

export interface Built {
  readonly entries: Buffer[];
  readonly removed: string[];
  readonly record: InFlight;
  readonly synced: boolean;
}

export class Subscription {
  /** What the client has once the in-flight responses are applied: name → version. */
  readonly sent: Map<string, string>;
  readonly inflight = new Map<string, InFlight>();
  #wildcard = false;
  readonly #names = new Set<string>();
  /** Names to compare with the store at the next push; 'all' after a (re)subscribe. */
  #dirty: Set<string> | 'all' = 'all';
  /** Send a response even with nothing in it, so the client learns it is synced. */
  #forceSync = true;
  #synced = false;
  #acks = 0;
  #nacks = 0;
  #lastAckAt: string | undefined;

  /** initial: the versions the client says it already has (initial_resource_versions). */
  constructor(initial: Record<string, string>) {
    this.sent = new Map(Object.entries(initial));
  }

  wants(name: string): boolean {
    return this.#wildcard || this.#names.has(name);
  }

  subscribe(names: readonly string[]): void {
    for (const n of names) {
      if (n === '*') {
        if (!this.#wildcard) this.markAll();
        this.#wildcard = true;
      } else if (!this.#names.has(n)) {
        this.#names.add(n);
        this.mark([n]);
      }
    }
  }

  unsubscribe(names: readonly string[]): void {
    for (const n of names) {
      if (n === '*') {
        if (this.#wildcard) this.markAll();
        this.#wildcard = false;
      } else if (this.#names.delete(n)) {
        this.mark([n]);
      }
    }
  }

  mark(names: Iterable<string>): void {
    if (this.#dirty === 'all') return;
    for (const n of names) this.#dirty.add(n);
  }

  markAll(): void {
    this.#dirty = 'all';
    this.#forceSync = true;
  }

  /**
   * The next response: the dirty names whose store version differs from what the client has
   * (or that it should no longer have), up to maxBytes; undefined when there is nothing to send.
   * Versions the node refused stay unsent until they change.
   */
  build(
    store: ReadonlyMap<string, Entry<unknown>>,
    want: (name: string, e: Entry<unknown>) => boolean,
    refused: ReadonlyMap<string, Rejection> | undefined,
    maxBytes: number,
  ): Built | undefined {
    if (this.#dirty !== 'all' && this.#dirty.size === 0 && !this.#forceSync) return undefined;
    const candidates = this.#dirty === 'all' ? allNames(store, this.sent) : this.#dirty.values();
    const leftover = new Set<string>();
    const entries: Buffer[] = [];
    const removed: string[] = [];
    const names: InFlight['names'] = new Map();
    let bytes = 0;
    for (const name of candidates) {
      if (bytes >= maxBytes) {
        leftover.add(name);
        continue;
      }
      const e = store.get(name);
      const have = this.sent.get(name);
      if (e !== undefined && want(name, e)) {
        if (have === e.version || refused?.get(name)?.version === e.version) continue;
        entries.push(e.bytes);
        bytes += e.bytes.length;
        names.set(name, { version: e.version, prev: have });
        this.sent.set(name, e.version);
      } else if (have !== undefined) {
        removed.push(name);
        bytes += name.length + 2;
        names.set(name, { version: null, prev: have });
        this.sent.delete(name);
      }
    }
    this.#dirty = leftover;
    const synced = leftover.size === 0;
    if (names.size === 0 && !(this.#forceSync && synced)) return undefined;
    if (synced) this.#forceSync = false;
    return { entries, removed, record: { names, synced }, synced };
  }

  acked(r: InFlight): void {
    this.#acks++;
    this.#lastAckAt = new Date().toISOString();
    if (r.synced) this.#synced = true;
  }

  /** The client kept its previous versions: undo what the response would have changed, except
   * for the refused resources (held back until they change), and send the rest again. */
  nacked(r: InFlight, refused: ReadonlySet<string>): void {
    this.#nacks++;
    for (const [name, e] of r.names) {
      if (refused.has(name)) continue;
      if ((this.sent.get(name) ?? null) !== e.version) continue; // a later response changed it again
      if (e.prev === undefined) this.sent.delete(name);
      else this.sent.set(name, e.prev);
      this.mark([name]);
    }
    this.#forceSync = true;
  }

  status(): TypeStatus {
    return {
      wildcard: this.#wildcard,
      names: this.#names.size,
      resources: this.sent.size,
      pending: this.#dirty === 'all' ? -1 : this.#dirty.size,
      inFlight: this.inflight.size,
      synced: this.#synced,
      acks: this.#acks,
      nacks: this.#nacks,
      lastAckAt: this.#lastAckAt,
    };
  }
}

function* allNames(store: ReadonlyMap<string, unknown>, sent: ReadonlyMap<string, string>): Generator<string> {
  yield* store.keys();
  for (const n of sent.keys()) if (!store.has(n)) yield n;
}

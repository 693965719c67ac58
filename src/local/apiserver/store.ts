// Objects in memory, persisted through a write-ahead log with group commit (wal.ts) and a
// periodic snapshot (snapshot.ts), and a bounded window of change events that watches replay from.
//
// A write is applied to memory at once (so the next request sees it: create-after-create is a
// conflict), framed into the log, and acknowledged — the put/remove promise resolves, the HTTP
// reply goes out — only once the batch holding it is fdatasync'ed. Its watch event is published
// at that moment too, so no watcher ever sees a change that a crash could take back.
//
// Resource versions: one counter across all kinds, strictly increasing; each log record carries
// its own. On start the counter resumes from the snapshot and the replayed log. After a crash it
// jumps ahead by CRASH_GAP: a client may have read an in-flight write whose version was lost with
// it, and must not see that version handed out again to a different change.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { logger } from '../../common/log.ts';
import { GoneError, StorageError } from './errors.ts';
import { type Entry, readLegacyObjects, readSnapshot, removeLegacyObjects, writeSnapshot } from './snapshot.ts';
import type { KubeObject } from './types.ts';
import { Wal, readSegment, segments } from './wal.ts';

const log = logger('apiserver');

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: EventType;
  rv: number;
  /** resourceKey of the kind ("pods", "gateways.gateway.networking.k8s.io"). */
  resource: string;
  object: KubeObject;
  /** The object before this change (MODIFIED and DELETED), for selector transitions. */
  prev?: KubeObject;
}

export interface StoreOptions {
  dataDir: string;
  /** How many events watches can resume from; older resourceVersions get 410 Gone. */
  eventWindow: number;
  /** Log bytes after which a snapshot is written and the log dropped (default 64 MiB). */
  compactAfterBytes?: number;
}

/** Far more writes than can be in flight at once (each is an HTTP request awaiting its reply). */
const CRASH_GAP = 1_000_000;

/** A log record: a put carries the object, a delete its key; neither marks a start. */
interface LogRecord {
  v: number;
  r: string;
  o?: KubeObject;
  d?: string;
}

export class Store {
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private readonly events: StoreEvent[] = [];
  private eventsHead = 0;
  private readonly listeners = new Set<(ev: StoreEvent) => void>();
  private readonly dataDir: string;
  private readonly dir: string;
  private readonly window: number;
  private readonly compactAfter: number;
  private wal!: Wal;
  private compacting: Promise<void> | undefined;
  private snapshotBytes = 0;
  private rv = 0;
  /** The newest resourceVersion whose event is published (durable). */
  private published = 0;
  /** Watches may start from any resourceVersion >= this; every later event is still kept. */
  private oldestServable = 0;

  private constructor(opts: StoreOptions) {
    this.dataDir = opts.dataDir;
    this.dir = join(opts.dataDir, 'store');
    this.window = Math.max(1, opts.eventWindow);
    this.compactAfter = opts.compactAfterBytes ?? 64 * 2 ** 20;
  }

  static async open(opts: StoreOptions): Promise<Store> {
    const s = new Store(opts);
    await s.load();
    return s;
  }

  /** The newest resourceVersion handed out (its write may still be on its way to disk). */
  get resourceVersion(): number {
    return this.rv;
  }

  /** The newest resourceVersion that is durable and whose event watches have been sent. */
  get publishedResourceVersion(): number {
    return this.published;
  }

  get(resource: string, namespace: string, name: string): KubeObject | undefined {
    return this.objects.get(resource)?.get(`${namespace}/${name}`);
  }

  /** Every object of a kind, optionally in one namespace, sorted by namespace then name (byte order, as etcd lists). */
  list(resource: string, namespace?: string): KubeObject[] {
    const map = this.objects.get(resource);
    if (!map) return [];
    const keyed: [string, KubeObject][] = [];
    for (const [k, o] of map) if (namespace === undefined || (o.metadata.namespace ?? '') === namespace) keyed.push([k, o]);
    keyed.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return keyed.map((e) => e[1]);
  }

  /** Stores a new or changed object: assigns the next resourceVersion; resolves once durable and published to watches. */
  async put(resource: string, obj: KubeObject): Promise<KubeObject> {
    const map = this.kind(resource);
    const k = keyOf(obj);
    const prev = map.get(k);
    obj.metadata.resourceVersion = String(++this.rv);
    if (prev) share(obj, prev);
    map.set(k, obj);
    const ev: StoreEvent = { type: prev ? 'MODIFIED' : 'ADDED', rv: this.rv, resource, object: obj, ...(prev ? { prev } : {}) };
    await this.log({ v: this.rv, r: resource, o: obj }, ev);
    return obj;
  }

  /** Removes an object; the DELETED event carries it with a fresh resourceVersion, as etcd3 does. */
  async remove(resource: string, obj: KubeObject): Promise<KubeObject> {
    const map = this.kind(resource);
    const k = keyOf(obj);
    const prev = map.get(k);
    if (!prev) return obj;
    map.delete(k);
    const gone = { ...prev, metadata: { ...prev.metadata, resourceVersion: String(++this.rv) } };
    await this.log({ v: this.rv, r: resource, d: k }, { type: 'DELETED', rv: this.rv, resource, object: gone, prev });
    return gone;
  }

  /** Events after `rv`, oldest first; GoneError when some of them have left the window. */
  eventsSince(rv: number, requested: string): StoreEvent[] {
    if (rv < this.oldestServable) throw new GoneError(requested, this.oldestServable + 1);
    const live = this.events.length - this.eventsHead;
    // Binary search for the first event with ev.rv > rv.
    let lo = this.eventsHead;
    let hi = this.eventsHead + live;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.events[mid]!.rv <= rv) lo = mid + 1;
      else hi = mid;
    }
    return this.events.slice(lo);
  }

  subscribe(fn: (ev: StoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Waits for every pending write, then writes a snapshot so that the next start reads one file. */
  async close(): Promise<void> {
    await this.wal.flushed();
    await this.compacting?.catch(() => {});
    // After a failed write, memory holds changes that were refused: the log alone is the truth.
    if (!this.wal.broken) await this.compact(true);
    await this.wal.close();
  }

  /**
   * Writes a snapshot of every object and drops the log segments it covers. The objects are taken
   * after the log rotates, so the snapshot holds at least every change in the dropped segments;
   * changes made meanwhile are in the new segment too, and replaying a record twice is harmless
   * (each holds the whole object or a delete).
   */
  compact(clean = false): Promise<void> {
    this.compacting ??= (async () => {
      const started = performance.now();
      const upTo = await this.wal.rotate();
      const entries: Entry[] = [];
      for (const [resource, map] of this.objects) for (const object of map.values()) entries.push({ resource, object });
      const bytes = (this.snapshotBytes = await writeSnapshot(this.dir, { resourceVersion: this.rv, walSegment: upTo, clean }, entries));
      await this.wal.drop(upTo);
      log.info({ objects: entries.length, bytes, resourceVersion: this.rv, ms: Math.round(performance.now() - started) }, 'store compacted');
    })()
      .catch((err: unknown) => {
        log.error({ err }, 'store compaction failed; the log keeps growing until it succeeds');
        throw err;
      })
      .finally(() => (this.compacting = undefined));
    return this.compacting;
  }

  private async log(rec: LogRecord, ev: StoreEvent): Promise<void> {
    try {
      await this.wal.append(JSON.stringify(rec), () => this.record(ev));
    } catch (err) {
      throw new StorageError(this.dir, err);
    }
    // Compacting when the log outgrows the snapshot too keeps the rewriting in proportion to the writes.
    if (this.wal.bytes > Math.max(this.compactAfter, this.snapshotBytes) && !this.compacting) this.compact().catch(() => {});
  }

  private record(ev: StoreEvent): void {
    this.published = ev.rv;
    this.events.push(ev);
    while (this.events.length - this.eventsHead > this.window) {
      this.oldestServable = this.events[this.eventsHead]!.rv;
      this.events[this.eventsHead++] = undefined as unknown as StoreEvent;
    }
    // Compact the array once the dropped prefix dominates, keeping pushes amortised O(1).
    if (this.eventsHead > this.window) {
      this.events.splice(0, this.eventsHead);
      this.eventsHead = 0;
    }
    for (const l of this.listeners) {
      try {
        l(ev);
      } catch (err) {
        log.error({ err, resource: ev.resource, rv: ev.rv }, 'a store listener failed');
      }
    }
  }

  private kind(resource: string): Map<string, KubeObject> {
    let m = this.objects.get(resource);
    if (!m) this.objects.set(resource, (m = new Map()));
    return m;
  }

  private async load(): Promise<void> {
    const started = performance.now();
    await mkdir(this.dir, { recursive: true });
    const snap = await readSnapshot(this.dir);
    const legacy = snap ? undefined : await readLegacyObjects(this.dataDir);
    for (const e of snap?.entries ?? legacy?.entries ?? []) this.kind(e.resource).set(keyOf(e.object), e.object);
    this.rv = snap?.header.resourceVersion ?? legacy?.resourceVersion ?? 0;
    for (const e of snap?.entries ?? []) this.rv = Math.max(this.rv, Number(e.object.metadata.resourceVersion ?? 0));
    const covered = snap?.header.walSegment ?? 0;
    let replayed = 0;
    const segs = await segments(this.dir);
    for (const n of segs.filter((x) => x > covered)) {
      const records = await readSegment(this.dir, n, (at, why) => log.warn({ segment: n, offset: at, why }, 'log ends in a torn record (a write cut short by a crash, never acknowledged); ignoring the rest of the segment'));
      for (const json of records) {
        const rec = JSON.parse(json) as LogRecord;
        if (rec.o) this.kind(rec.r).set(keyOf(rec.o), rec.o);
        else if (rec.d !== undefined) this.objects.get(rec.r)?.delete(rec.d);
        this.rv = Math.max(this.rv, rec.v);
        replayed++;
      }
    }
    const crashed = replayed > 0 || (snap !== undefined && !snap.header.clean);
    if (crashed) this.rv += CRASH_GAP;
    this.published = this.rv;
    this.oldestServable = this.rv;
    this.wal = await Wal.create(this.dir, Math.max(covered, ...segs));
    // Marks this run in the log: if it ends without the clean snapshot of close(), the next start
    // knows that versions past the last record may have been shown to clients.
    await this.wal.append(JSON.stringify({ v: this.rv, r: '' } satisfies LogRecord));
    if (legacy) {
      await this.compact(true);
      await removeLegacyObjects(this.dataDir);
    }
    let objects = 0;
    for (const m of this.objects.values()) objects += m.size;
    log.info({ objects, replayed, crashed, resourceVersion: this.rv, ms: Math.round(performance.now() - started) }, 'loaded objects');
  }
}

/**
 * Makes `next` reuse every subtree (and string) of `prev` that is equal to its own, and returns
 * `prev` when the two are equal throughout. An update's event keeps the previous object for
 * watches (selector transitions), so without this a window of updates holds two full copies of
 * each object; with it, only the parts that changed. Stored objects are never changed in place
 * (the registry clones before patching), so sharing is safe.
 */
function share(next: unknown, prev: unknown): unknown {
  if (next === prev || typeof next !== 'object' || next === null || typeof prev !== 'object' || prev === null) return next === prev ? prev : next;
  if (Array.isArray(next) !== Array.isArray(prev)) return next;
  const n = next as Record<string, unknown>;
  const p = prev as Record<string, unknown>;
  const keys = Object.keys(n);
  let same = keys.length === Object.keys(p).length;
  for (const key of keys) {
    const v = share(n[key], p[key]);
    if (v !== n[key]) n[key] = v;
    if (v !== p[key] || !(key in p)) same = false;
  }
  return same ? prev : next;
}

const keyOf = (o: KubeObject): string => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

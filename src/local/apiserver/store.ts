// Objects in memory, one JSON file per object on disk, and a bounded window of change events that
// watches replay from. The in-memory maps are the authority while running; files are written
// atomically (writeFileAtomic) so a restart finds every acknowledged write.
//
// Resource versions: one counter across all kinds, strictly increasing. Deletes leave no file, so
// the high-water mark is kept in state.json (written on delete and on close); on start the counter
// resumes from max(state.json, every loaded object's resourceVersion).
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { logger } from '../../common/log.ts';
import { GoneError, StorageError } from './errors.ts';
import { isTempFile, writeFileAtomic } from './files.ts';
import type { KubeObject } from './types.ts';

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
}

const CLUSTER_DIR = '_cluster'; // never a namespace name: DNS-1123 labels have no underscore

export class Store {
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private readonly events: StoreEvent[] = [];
  private eventsHead = 0;
  private readonly listeners = new Set<(ev: StoreEvent) => void>();
  private readonly pending = new Map<string, Promise<void>>();
  private readonly root: string;
  private readonly window: number;
  private rv = 0;
  /** Watches may start from any resourceVersion >= this; every later event is still kept. */
  private oldestServable = 0;

  private constructor(opts: StoreOptions) {
    this.root = join(opts.dataDir, 'objects');
    this.window = Math.max(1, opts.eventWindow);
  }

  static async open(opts: StoreOptions): Promise<Store> {
    const s = new Store(opts);
    await s.load();
    return s;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  get(resource: string, namespace: string, name: string): KubeObject | undefined {
    return this.objects.get(resource)?.get(`${namespace}/${name}`);
  }

  /** Every object of a kind, optionally in one namespace, sorted by namespace then name. */
  list(resource: string, namespace?: string): KubeObject[] {
    const all = [...(this.objects.get(resource)?.values() ?? [])];
    const items = namespace === undefined ? all : all.filter((o) => (o.metadata.namespace ?? '') === namespace);
    return items.sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  }

  /** Stores a new or changed object: assigns the next resourceVersion, notifies watches, persists. */
  async put(resource: string, obj: KubeObject): Promise<KubeObject> {
    const map = this.kind(resource);
    const k = keyOf(obj);
    const prev = map.get(k);
    obj.metadata.resourceVersion = String(++this.rv);
    map.set(k, obj);
    this.record({ type: prev ? 'MODIFIED' : 'ADDED', rv: this.rv, resource, object: obj, ...(prev ? { prev } : {}) });
    const path = this.fileOf(resource, obj);
    const body = JSON.stringify(obj);
    await this.serialize(path, async () => {
      await mkdir(join(path, '..'), { recursive: true });
      await writeFileAtomic(path, body);
    });
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
    this.record({ type: 'DELETED', rv: this.rv, resource, object: gone, prev });
    const rv = this.rv;
    await this.serialize(this.fileOf(resource, prev), async (path) => {
      await unlink(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    });
    await this.serialize(join(this.root, '..', 'state.json'), (p) => writeFileAtomic(p, JSON.stringify({ resourceVersion: Math.max(rv, this.rv) })));
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

  /** Waits for every pending write and records the resourceVersion high-water mark. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.pending.values()]);
    await writeFileAtomic(join(this.root, '..', 'state.json'), JSON.stringify({ resourceVersion: this.rv }));
  }

  private record(ev: StoreEvent): void {
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
    for (const l of this.listeners) l(ev);
  }

  private kind(resource: string): Map<string, KubeObject> {
    let m = this.objects.get(resource);
    if (!m) this.objects.set(resource, (m = new Map()));
    return m;
  }

  private fileOf(resource: string, obj: KubeObject): string {
    return join(this.root, resource, obj.metadata.namespace || CLUSTER_DIR, `${obj.metadata.name}.json`);
  }

  /** Writes to one path happen in call order, so the file ends with the newest content. */
  private serialize(path: string, op: (path: string) => Promise<void>): Promise<void> {
    const prev = this.pending.get(path) ?? Promise.resolve();
    const next = prev
      .catch(() => {})
      .then(() => op(path))
      .catch((err: unknown) => {
        throw new StorageError(path, err);
      });
    const tracked = next.finally(() => {
      if (this.pending.get(path) === tracked) this.pending.delete(path);
    });
    tracked.catch(() => {});
    this.pending.set(path, tracked);
    return next;
  }

  private async load(): Promise<void> {
    const started = performance.now();
    await mkdir(this.root, { recursive: true });
    const state = await readFile(join(this.root, '..', 'state.json'), 'utf8').catch(() => undefined);
    if (state) this.rv = Number((JSON.parse(state) as { resourceVersion?: number }).resourceVersion ?? 0);
    const files: { resource: string; path: string }[] = [];
    for (const resource of await readdir(this.root)) {
      for (const ns of await readdir(join(this.root, resource))) {
        for (const name of await readdir(join(this.root, resource, ns))) {
          const path = join(this.root, resource, ns, name);
          if (isTempFile(name)) await unlink(path).catch(() => {}); // a write cut short by a crash
          else if (name.endsWith('.json')) files.push({ resource, path });
        }
      }
    }
    const BATCH = 256;
    for (let i = 0; i < files.length; i += BATCH) {
      const batch = files.slice(i, i + BATCH);
      const texts = await Promise.all(batch.map((f) => readFile(f.path, 'utf8')));
      texts.forEach((text, j) => {
        const { resource, path } = batch[j]!;
        let obj: KubeObject;
        try {
          obj = JSON.parse(text) as KubeObject;
        } catch (err) {
          log.error({ path, err }, 'skipping an unreadable object file; restore it from a backup or delete it');
          return;
        }
        this.kind(resource).set(keyOf(obj), obj);
        this.rv = Math.max(this.rv, Number(obj.metadata.resourceVersion ?? 0));
      });
    }
    this.oldestServable = this.rv;
    log.info({ objects: files.length, resourceVersion: this.rv, ms: Math.round(performance.now() - started) }, 'loaded objects');
  }
}

const keyOf = (o: KubeObject): string => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

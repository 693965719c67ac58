// The model the server distributes: per type URL, name → {version, value}. Versions are content
// hashes (see codec.ts), not counters, for two reasons: a controller that restarts and rebuilds
// the same model from the API offers the same versions, so resuming clients receive nothing; and
// a reconcile loop that sets an unchanged value is a no-op that wakes no client.
import { encodeResource, resourceField, TYPE_URLS } from './codec.ts';
import { XdsError } from './errors.ts';
import type { MeshTypes, ResourceMap, TypeUrl } from './resources.ts';

export interface Entry<V> {
  readonly version: string;
  readonly value: V;
  /** The encoded DeltaConfigResponse.resources entry. */
  readonly bytes: Buffer;
}

/** Type URL → names that were set or removed by one set/remove/batch. */
export type ChangeSet = ReadonlyMap<string, ReadonlySet<string>>;

export interface Transaction<M extends ResourceMap> {
  set<T extends TypeUrl<M>>(type: T, name: string, value: M[T]): void;
  remove(type: TypeUrl<M>, name: string): void;
}

export class ConfigStore<M extends ResourceMap = MeshTypes> {
  readonly #types = new Map<string, Map<string, Entry<unknown>>>();
  readonly #listeners = new Set<(changes: ChangeSet, generation: number) => void>();
  #generation = 0;

  /** types: the type URLs this store holds; all that the proto defines by default. */
  constructor(types: readonly TypeUrl<M>[] = TYPE_URLS as TypeUrl<M>[]) {
    for (const t of types) {
      resourceField(t);
      this.#types.set(t, new Map());
    }
  }

  /** Increases with every change that altered something; for logs and status. */
  get generation(): number {
    return this.#generation;
  }

  types(): TypeUrl<M>[] {
    return [...this.#types.keys()] as TypeUrl<M>[];
  }

  has(type: string): boolean {
    return this.#types.has(type);
  }

  get<T extends TypeUrl<M>>(type: T, name: string): Entry<M[T]> | undefined {
    return this.#of(type).get(name) as Entry<M[T]> | undefined;
  }

  entries<T extends TypeUrl<M>>(type: T): ReadonlyMap<string, Entry<M[T]>> {
    return this.#of(type) as Map<string, Entry<M[T]>>;
  }

  /** Sets a resource; false when the content (so the version) is unchanged. Throws MESH_ERR_XDS_ENCODE. */
  set<T extends TypeUrl<M>>(type: T, name: string, value: M[T]): boolean {
    return this.batch((tx) => tx.set(type, name, value)) > 0;
  }

  /** Removes a resource; false when it was absent. */
  remove(type: TypeUrl<M>, name: string): boolean {
    return this.batch((tx) => tx.remove(type, name)) > 0;
  }

  /**
   * Applies every set/remove of fn at once, or none if fn throws (an encode error included).
   * Clients receive the batch's changes together, in one response per type unless the response
   * would exceed the server's size limit. Returns how many resources changed.
   */
  batch(fn: (tx: Transaction<M>) => void): number {
    const staged = new Map<string, Map<string, Entry<unknown> | null>>();
    const stage = (type: string, name: string, e: Entry<unknown> | null) => {
      this.#of(type);
      let m = staged.get(type);
      if (!m) staged.set(type, (m = new Map()));
      m.set(name, e);
    };
    fn({
      set: (type, name, value) => {
        // A controller republishes its whole model on every change: a value equal to the one held
        // keeps its entry without being encoded and hashed again (that was half the cost of a
        // one-pod change at 10k pods, bench/model.ts).
        const held = this.#of(type).get(name);
        if (held && sameValue(held.value, value)) return stage(type, name, held);
        const { version, bytes } = encodeResource(type, name, value);
        stage(type, name, { version, value, bytes });
      },
      remove: (type, name) => stage(type, name, null),
    });
    const changes = new Map<string, Set<string>>();
    let count = 0;
    for (const [type, m] of staged) {
      const current = this.#of(type);
      for (const [name, e] of m) {
        const old = current.get(name);
        if (e === null ? old === undefined : old?.version === e.version) continue;
        if (e === null) current.delete(name);
        else current.set(name, e);
        let names = changes.get(type);
        if (!names) changes.set(type, (names = new Set()));
        names.add(name);
        count++;
      }
    }
    if (count > 0) {
      this.#generation++;
      for (const l of this.#listeners) l(changes, this.#generation);
    }
    return count;
  }

  /** Called after every change; returns an unsubscribe function. */
  subscribe(listener: (changes: ChangeSet, generation: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #of(type: string): Map<string, Entry<unknown>> {
    const m = this.#types.get(type);
    if (!m) {
      resourceField(type);
      throw new XdsError(
        'MESH_ERR_XDS_UNKNOWN_TYPE',
        `this store does not hold ${type}; it was created for ${[...this.#types.keys()].join(', ')}`,
      );
    }
    return m;
  }
}

/**
 * Whether two resource values encode to the same bytes: equal as plain data, key order aside
 * (the encoder sorts keys, codec.ts canonical()). Conservative: anything it does not know (a class
 * instance, a key set to undefined on one side only) counts as different and is encoded.
 */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameValue(a[i], b[i])) return false;
    return true;
  }
  if (a instanceof Uint8Array) return b instanceof Uint8Array && a.length === b.length && Buffer.compare(a, b) === 0;
  const pa = Object.getPrototypeOf(a);
  const pb = Object.getPrototypeOf(b);
  if ((pa !== Object.prototype && pa !== null) || (pb !== Object.prototype && pb !== null)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

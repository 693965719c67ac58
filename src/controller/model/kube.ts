// Small readers over Kubernetes objects shared by the model's parts: labels, selectors, IPs,
// creation order. Objects may come from the typed client (Dates) or raw JSON (strings).
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type * as k8s from '@kubernetes/client-node';

export type Labels = Record<string, string>;

export const labelsOf = (o: { metadata?: k8s.V1ObjectMeta }): Labels => o.metadata?.labels ?? {};
export const nameOf = (o: { metadata?: k8s.V1ObjectMeta }): string => o.metadata?.name ?? '';
export const namespaceOf = (o: { metadata?: k8s.V1ObjectMeta }): string => o.metadata?.namespace ?? '';

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Every label of `selector` is on `labels` (an empty selector selects everything). */
export function selects(selector: Labels, labels: Labels): boolean {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

/** 4 or 16 bytes for a strict textual IP (node:net rejects "10.1" and other shorthands); null otherwise. */
export function ipBytes(ip: string): Uint8Array | null {
  const family = isIP(ip);
  if (family === 0) return null;
  // isIP accepted four decimal octets without leading zeros: no parser needed (ipaddr's was a
  // tenth of a 10k-pod model build).
  if (family === 4) return Uint8Array.from(ip.split('.'), Number);
  return Uint8Array.from(ipaddr.parse(ip).toByteArray());
}

/** "10.0.0.0/8", "fd00::/64" or a bare address (a /32 or /128); null when malformed. */
export function parseCidr(s: string): { address: Uint8Array; length: number } | null {
  const slash = s.indexOf('/');
  const addr = ipBytes(slash < 0 ? s : s.slice(0, slash));
  if (!addr) return null;
  const max = addr.length * 8;
  if (slash < 0) return { address: addr, length: max };
  const lenText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText)) return null;
  const length = Number(lenText);
  return length <= max ? { address: addr, length } : null;
}

const DURATION = /^(?:[0-9]{1,5}(?:h|m|s|ms)){1,4}$/;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** Gateway API duration (GEP-2257: "1h", "1m30s", "500ms", "0s") in milliseconds; null when malformed. */
export function parseDuration(s: string): number | null {
  if (!DURATION.test(s)) return null;
  let ms = 0;
  for (const [, n, unit] of s.matchAll(/([0-9]+)(ms|h|m|s)/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return ms;
}

export function timeOf(t: Date | string | undefined): number {
  if (t === undefined) return 0;
  const ms = (t instanceof Date ? t : new Date(t)).getTime();
  return Number.isNaN(ms) ? 0 : ms;
}

/** Creation order with a name tie-break: Istio's "oldest wins", made deterministic. */
export function olderFirst(a: { metadata?: k8s.V1ObjectMeta }, b: { metadata?: k8s.V1ObjectMeta }): number {
  return timeOf(a.metadata?.creationTimestamp) - timeOf(b.metadata?.creationTimestamp) || compare(namespaceOf(a), namespaceOf(b)) || compare(nameOf(a), nameOf(b));
}

/** Code-unit order: locale-independent, so every process sorts alike. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function sortedMap<V>(entries: Iterable<[string, V]>): Map<string, V> {
  return new Map([...entries].sort((x, y) => compare(x[0], y[0])));
}

export const uniqSorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort(compare);

export function byNamespace<T extends { metadata?: k8s.V1ObjectMeta }>(objs: Iterable<T>): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const o of objs) {
    const ns = namespaceOf(o);
    const list = m.get(ns);
    if (list) list.push(o);
    else m.set(ns, [o]);
  }
  return m;
}

/**
 * Objects of one kind indexed by namespace and by each label pair, so a selector costs the size of
 * its rarest pair's bucket rather than the namespace's size (1,000 services over 10,000 pods).
 */
export class LabelIndex<T> {
  readonly #byPair = new Map<string, T[]>();
  readonly #byNs = new Map<string, T[]>();
  readonly #all: T[] = [];
  readonly #labels: (o: T) => Labels;

  constructor(objs: Iterable<T>, ns: (o: T) => string, labels: (o: T) => Labels) {
    this.#labels = labels;
    for (const o of objs) {
      this.#all.push(o);
      push(this.#byNs, ns(o), o);
      const l = labels(o);
      for (const k in l) push(this.#byPair, `${ns(o)}\0${k}\0${l[k]}`, o);
      for (const k in l) push(this.#byPair, `\0*\0${k}\0${l[k]}`, o);
    }
  }

  /** Objects in `ns` (every namespace when null) whose labels include all of `selector`, in input order. */
  select(ns: string | null, selector: Labels): T[] {
    const prefix = ns === null ? '\0*' : ns;
    let best: T[] | undefined;
    for (const k in selector) {
      const bucket = this.#byPair.get(`${prefix}\0${k}\0${selector[k]}`) ?? [];
      if (!best || bucket.length < best.length) best = bucket;
    }
    if (!best) return ns === null ? this.#all : (this.#byNs.get(ns) ?? []);
    return best.filter((o) => selects(selector, this.#labels(o)));
  }
}

function push<T>(m: Map<string, T[]>, k: string, v: T): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/**
 * LabelIndex for a set that changes: keys indexed by namespace and by each label pair, added and
 * removed one at a time (the incremental model's pods and services).
 */
export class LiveLabelIndex {
  readonly #byPair = new Map<string, Set<string>>();
  readonly #byNs = new Map<string, Set<string>>();
  readonly #all = new Set<string>();
  readonly #labels = new Map<string, { ns: string; labels: Labels }>();

  add(key: string, ns: string, labels: Labels): void {
    this.remove(key);
    this.#all.add(key);
    this.#labels.set(key, { ns, labels });
    addTo(this.#byNs, ns, key);
    for (const k in labels) addTo(this.#byPair, `${ns}\0${k}\0${labels[k]}`, key);
  }

  remove(key: string): void {
    const held = this.#labels.get(key);
    if (!held) return;
    const { ns, labels } = held;
    this.#all.delete(key);
    this.#labels.delete(key);
    deleteFrom(this.#byNs, ns, key);
    for (const k in labels) deleteFrom(this.#byPair, `${ns}\0${k}\0${labels[k]}`, key);
  }

  /** Keys in `ns` (every namespace when null) whose labels include all of `selector`. */
  select(ns: string | null, selector: Labels): string[] {
    // Across namespaces: namespace by namespace (there are few; indexing every pair a second time
    // for these rare selections cost a tenth of a first build).
    if (ns === null) return Object.keys(selector).length === 0 ? [...this.#all] : [...this.#byNs.keys()].flatMap((n) => this.select(n, selector));
    let best: Set<string> | undefined;
    for (const k in selector) {
      const bucket = this.#byPair.get(`${ns}\0${k}\0${selector[k]}`);
      if (!bucket) return [];
      if (!best || bucket.size < best.size) best = bucket;
    }
    if (!best) return [...(this.#byNs.get(ns) ?? [])];
    return [...best].filter((key) => selects(selector, this.#labels.get(key)!.labels));
  }
}

/** Adds `v` to the set under `k` (an index of many values per key). */
export function addTo(m: Map<string, Set<string>>, k: string, v: string): void {
  const set = m.get(k);
  if (set) set.add(v);
  else m.set(k, new Set([v]));
}

/** Takes `v` out of the set under `k`, and the key with its last value. */
export function deleteFrom(m: Map<string, Set<string>>, k: string, v: string): void {
  const set = m.get(k);
  if (!set) return;
  set.delete(v);
  if (set.size === 0) m.delete(k);
}

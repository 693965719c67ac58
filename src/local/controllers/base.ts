// What every workload controller of the local cluster shares, after kube-controller-manager's
// pattern: informers feed a queue of object keys, one reconcile runs at a time and is retried
// with backoff on error, and "expectations" (pkg/controller/controller_utils.go) stop a controller
// from creating or deleting twice while its own writes have not reached its cache yet.
import * as k8s from '@kubernetes/client-node';
import { logger } from '../../common/log.ts';

const log = logger('controllers');
const EXPECTATIONS_TTL_MS = 10_000; // client-go's ExpectationsTimeout is 5 min; ours only guards cache lag
const MAX_BACKOFF_MS = 30_000; // client-go's item backoff starts at 5 ms and doubles; we start at 20 and stop at 30 s

export type Cache<T extends k8s.KubernetesObject> = k8s.Informer<T> & k8s.ObjectCache<T>;
export type Key = string; // "<namespace>/<name>"

export const keyOf = (o: k8s.KubernetesObject): Key => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

/** The controller ownerReference of `o`, if any. */
export const controllerOf = (o: k8s.KubernetesObject): k8s.V1OwnerReference | undefined => o.metadata?.ownerReferences?.find((r) => r.controller);

export function ownerReference(owner: k8s.KubernetesObject, apiVersion: string, kind: string): k8s.V1OwnerReference {
  return { apiVersion, kind, name: owner.metadata!.name!, uid: owner.metadata!.uid!, controller: true, blockOwnerDeletion: true };
}

export const isTerminated = (p: k8s.V1Pod): boolean => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';
export const isActive = (p: k8s.V1Pod): boolean => !isTerminated(p) && !p.metadata?.deletionTimestamp;
export const isReady = (p: k8s.V1Pod): boolean => Boolean(p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));

/** A pod is available once Ready for minReadySeconds (kube's podutil.IsPodAvailable). */
export function isAvailable(p: k8s.V1Pod, minReadySeconds = 0, now = Date.now()): boolean {
  const c = p.status?.conditions?.find((x) => x.type === 'Ready');
  if (c?.status !== 'True') return false;
  if (!minReadySeconds) return true;
  const since = c.lastTransitionTime ? new Date(c.lastTransitionTime).getTime() : 0;
  return since + minReadySeconds * 1000 <= now;
}

/** "25%" of `total` (rounded up for surge, down for unavailable) or an absolute number. */
export function scaledValue(v: number | string | undefined, total: number, roundUp: boolean, dflt: number | string): number {
  const x = v ?? dflt;
  if (typeof x === 'number') return x;
  const m = /^(\d+)%$/.exec(x);
  if (!m) return Number(x) || 0;
  const f = (Number(m[1]) * total) / 100;
  return roundUp ? Math.ceil(f) : Math.floor(f);
}

/** Stable JSON (keys sorted), so that equal templates hash alike whatever their key order. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    // null is "unset" in the API (Go writes template metadata as `creationTimestamp: null`, which
    // `kubectl rollout undo` copies back): it must not make two equal templates differ.
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined && x !== null);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  }
  return JSON.stringify(v instanceof Date ? v.toISOString() : v);
}

const SAFE = 'bcdfghjklmnpqrstvwxz2456789'; // apimachinery's rand.SafeEncodeString alphabet

/** A short hash of a pod template (the pod-template-hash / controller-revision-hash label). */
export function templateHash(template: unknown, collisionCount = 0): string {
  // FNV-1a 32-bit, as kube's ComputeHash; over our canonical JSON rather than Go's spew output.
  let h = 0x811c9dc5;
  for (const ch of Buffer.from(canonical(template) + (collisionCount ? String(collisionCount) : ''))) {
    h ^= ch;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  let out = '';
  for (const d of h.toString().padStart(10, '0')) out += SAFE[Number(d) % SAFE.length];
  return out;
}

/** Pending creates (by name) and deletes (by uid) per owner key, until the cache shows them. */
export class Expectations {
  private readonly pending = new Map<Key, { adds: Set<string>; dels: Set<string>; at: number }>();

  expect(key: Key, adds: string[], dels: string[]): void {
    const e = this.pending.get(key) ?? { adds: new Set<string>(), dels: new Set<string>(), at: 0 };
    for (const a of adds) e.adds.add(a);
    for (const d of dels) e.dels.add(d);
    e.at = Date.now();
    this.pending.set(key, e);
  }

  /** Observes a pod event: a pod that appeared, or one that went. */
  observe(key: Key, pod: k8s.V1Pod, gone: boolean): void {
    const e = this.pending.get(key);
    if (!e) return;
    if (gone) e.dels.delete(pod.metadata?.uid ?? '');
    else e.adds.delete(pod.metadata?.name ?? '');
  }

  satisfied(key: Key): boolean {
    const e = this.pending.get(key);
    if (!e) return true;
    if ((e.adds.size === 0 && e.dels.size === 0) || Date.now() - e.at > EXPECTATIONS_TTL_MS) {
      this.pending.delete(key);
      return true;
    }
    return false;
  }

  forget(key: Key): void {
    this.pending.delete(key);
  }
}

/** A queue of keys reconciled one at a time; a failed key is retried with backoff (20 ms doubling to 30 s). */
export class WorkQueue {
  private readonly dirty = new Set<Key>();
  private readonly reconcile: (key: Key) => Promise<void>;
  private readonly name: string;
  private running: Promise<void> = Promise.resolve();
  private scheduled = false;
  private stopped = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly failures = new Map<Key, number>(); // consecutive failures, for backoff

  constructor(name: string, reconcile: (key: Key) => Promise<void>) {
    this.name = name;
    this.reconcile = reconcile;
  }

  add(key: Key, afterMs = 0): void {
    if (this.stopped) return;
    if (afterMs > 0) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        this.add(key);
      }, afterMs);
      this.timers.add(t);
      return;
    }
    this.dirty.add(key);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    this.running = this.running.then(async () => {
      const keys = [...this.dirty];
      this.dirty.clear();
      for (const key of keys) {
        if (this.stopped) return;
        await this.reconcile(key).then(
          () => this.failures.delete(key),
          (e: { code?: number; message?: string }) => {
            // A conflict means our cache was behind a write: normal, retried soon; a conflict
            // that persists (a foreign object holding our name) backs off like any failure.
            const n = (this.failures.get(key) ?? 0) + 1;
            this.failures.set(key, n);
            if (e.code !== 409 || n > 5) log.warn({ controller: this.name, key, err: e.message ?? String(e) }, 'reconcile failed; retrying');
            this.add(key, Math.min(MAX_BACKOFF_MS, 20 * 2 ** (n - 1)));
          },
        );
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    await this.running;
  }
}

/** Wires an informer's add/update/delete to one handler. */
export function onChange<T extends k8s.KubernetesObject>(inf: k8s.Informer<T>, fn: (o: T, deleted: boolean) => void): void {
  inf.on('add', (o) => fn(o, false));
  inf.on('update', (o) => fn(o, false));
  inf.on('delete', (o) => fn(o, true));
}

/**
 * Wires a controller that owns pods directly (ReplicaSet, DaemonSet, StatefulSet, Job) to its
 * informers: an owner added or changed is queued, a deleted one's expectations forgotten, and every
 * pod event is charged to the pod's controlling owner of `kind` (its expectations observed, the
 * owner queued), as the Kubernetes controllers do.
 */
export function watchOwnerAndPods<T extends k8s.KubernetesObject>(kind: string, owners: Cache<T>, pods: Cache<k8s.V1Pod>, queue: WorkQueue, expectations: Expectations): void {
  const enqueue = (o: T) => queue.add(keyOf(o));
  owners.on('add', enqueue);
  owners.on('update', enqueue);
  owners.on('delete', (o) => expectations.forget(keyOf(o)));
  const onPod = (gone: boolean) => (p: k8s.V1Pod) => {
    const ref = controllerOf(p);
    if (ref?.kind !== kind) return;
    const key = `${p.metadata!.namespace}/${ref.name}`;
    expectations.observe(key, p, gone || Boolean(p.metadata?.deletionTimestamp));
    queue.add(key);
  };
  pods.on('add', onPod(false));
  pods.on('update', onPod(false));
  pods.on('delete', onPod(true));
}

export { log };

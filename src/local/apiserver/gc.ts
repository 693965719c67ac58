// Deletion with dependents: DeleteOptions.propagationPolicy, the `orphan` and `foregroundDeletion`
// finalizers, and the garbage collector that follows metadata.ownerReferences, after
// k8s.io/kubernetes/pkg/controller/garbagecollector and the registry's BeforeDelete:
// - Background (kubectl's default): the owner goes now; the collector then deletes dependents
//   whose owners are all gone (a dependent with another live owner only loses the reference).
// - Foreground: the owner gets deletionTimestamp and `foregroundDeletion`; the collector deletes
//   its dependents (in the foreground too) and removes the finalizer once none is left.
// - Orphan: the owner gets `orphan`; the collector strips the owner's reference from every
//   dependent, then removes the finalizer.
// An object with finalizers lingers with deletionTimestamp until a client removes the last one
// (the registry then deletes it). Dependents whose owner no longer exists (by uid) are collected.
import { logger } from '../../common/log.ts';
import { ApiError, BadRequestError } from './errors.ts';
import type { Registry } from './registry.ts';
import { type ResourceDef, resourceKey } from './resources.ts';
import type { Store, StoreEvent } from './store.ts';
import type { Causes } from './validate.ts';
import { clone, isObject, type KubeObject, nowTimestamp } from './types.ts';

const log = logger('apiserver');

export type Propagation = 'Background' | 'Foreground' | 'Orphan';
export const FOREGROUND = 'foregroundDeletion';
export const ORPHAN = 'orphan';

interface OwnerRef {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

/** The policy a DELETE asks for (body's propagationPolicy or the deprecated orphanDependents). */
export function propagationOf(body: unknown): Propagation {
  const opts = isObject(body) ? body : {};
  const p = opts.propagationPolicy;
  if (p === undefined || p === null) return opts.orphanDependents === true ? 'Orphan' : 'Background';
  if (p === 'Background' || p === 'Foreground' || p === 'Orphan') {
    if (opts.orphanDependents !== undefined && opts.orphanDependents !== null) throw new BadRequestError('orphanDependents and propagationPolicy cannot both be set; use propagationPolicy');
    return p;
  }
  throw new BadRequestError(`propagationPolicy: Unsupported value: ${JSON.stringify(p)}: supported values: "Background", "Foreground", "Orphan"`);
}

/**
 * The start of a delete: when the object must linger (finalizers, or a Foreground/Orphan policy),
 * stores it with deletionTimestamp and the GC finalizer and returns it; undefined means remove now.
 */
export async function beginDeletion(store: Store, d: ResourceDef, current: KubeObject, policy: Propagation): Promise<KubeObject | undefined> {
  const m = current.metadata;
  const finalizers = [...(m.finalizers ?? [])];
  // Already being deleted: a second DELETE changes nothing while finalizers remain (a pod whose
  // grace period was just cut to 0 has none left and goes now).
  if (m.deletionTimestamp && finalizers.length) return current;
  if (policy === 'Foreground' && !finalizers.includes(FOREGROUND)) finalizers.push(FOREGROUND);
  if (policy === 'Orphan' && !finalizers.includes(ORPHAN)) finalizers.push(ORPHAN);
  if (finalizers.length === 0) return undefined;
  const next = clone(current);
  next.metadata.finalizers = finalizers;
  next.metadata.deletionTimestamp = nowTimestamp();
  next.metadata.deletionGracePeriodSeconds = 0;
  next.metadata.generation = (m.generation ?? 1) + 1; // as the real server bumps it on graceful deletion
  return store.put(resourceKey(d), next);
}

/** metadata.ownerReferences as apimachinery's ValidateOwnerReferences words its complaints. */
export function validateOwnerReferences(o: KubeObject, c: Causes): void {
  const refs = o.metadata.ownerReferences;
  if (refs === undefined || refs === null) return;
  if (!Array.isArray(refs)) return c.typeInvalid('metadata.ownerReferences', refs, 'a list');
  const controllers: string[] = [];
  for (const r of refs) {
    if (!isObject(r)) {
      c.typeInvalid('metadata.ownerReferences', r, 'an object');
      continue;
    }
    const f = 'metadata.ownerReferences';
    if (typeof r.apiVersion !== 'string' || !r.apiVersion) c.invalid(`${f}.apiVersion`, r.apiVersion ?? '', 'version must not be empty');
    if (typeof r.kind !== 'string' || !r.kind) c.invalid(`${f}.kind`, r.kind ?? '', 'kind must not be empty');
    if (typeof r.name !== 'string' || !r.name) c.invalid(`${f}.name`, r.name ?? '', 'name must not be empty');
    if (typeof r.uid !== 'string' || !r.uid) c.invalid(`${f}.uid`, r.uid ?? '', 'uid must not be empty');
    if (r.controller === true) controllers.push(`${String(r.kind)}/${String(r.name)}`);
  }
  if (controllers.length > 1) {
    c.list.push({ reason: 'FieldValueInvalid', field: 'metadata.ownerReferences', message: `Invalid value: ${JSON.stringify(refs)}: Only one reference can have Controller set to true. Found "true" in references for ${controllers.join(' and ')}` });
  }
}

const refsOf = (o: KubeObject): OwnerRef[] =>
  (Array.isArray(o.metadata.ownerReferences) ? o.metadata.ownerReferences : []).filter(
    (r): r is OwnerRef => isObject(r) && typeof r.uid === 'string' && typeof r.name === 'string' && typeof r.kind === 'string' && typeof r.apiVersion === 'string',
  );

const keyOf = (resource: string, o: KubeObject) => `${resource}|${o.metadata.namespace ?? ''}|${o.metadata.name}`;

/** Follows ownerReferences: deletes, orphans and unblocks as the policies above say. */
export class GarbageCollector {
  private readonly registry: Registry;
  private readonly store: Store;
  /** owner uid → dependents (resource|namespace|name). */
  private readonly dependents = new Map<string, Set<string>>();
  private readonly queue: (() => Promise<void>)[] = [];
  private running: Promise<void> | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(registry: Registry) {
    this.registry = registry;
    this.store = registry.store;
  }

  /** Indexes what is stored and collects dependents whose owners vanished while we were down. */
  start(resources: readonly ResourceDef[]): void {
    this.unsubscribe = this.store.subscribe((ev) => this.observe(ev));
    for (const d of resources) {
      if (d.createOnly) continue;
      for (const o of this.store.list(resourceKey(d))) {
        this.index(resourceKey(d), o, undefined);
        if (refsOf(o).length) this.enqueue(() => this.collectIfOrphaned(resourceKey(d), o));
        if (o.metadata.deletionTimestamp) this.enqueue(() => this.finish(o));
      }
    }
  }

  /** Resolves when every queued step has run (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.queue.length = 0;
    await this.idle();
  }

  private observe(ev: StoreEvent): void {
    this.index(ev.resource, ev.type === 'DELETED' ? undefined : ev.object, ev.prev);
    const o = ev.object;
    if (ev.type === 'DELETED') {
      const uid = o.metadata.uid!;
      this.enqueue(() => this.ownerGone(uid));
      // A dependent went: an owner in foreground deletion may now be free to go.
      for (const r of refsOf(o)) this.enqueue(() => this.releaseForeground(r, o.metadata.namespace));
      return;
    }
    if (o.metadata.deletionTimestamp) this.enqueue(() => this.finish(o));
    const kept = new Set(refsOf(o).map((r) => r.uid));
    for (const r of ev.prev ? refsOf(ev.prev) : []) if (!kept.has(r.uid)) this.enqueue(() => this.releaseForeground(r, o.metadata.namespace));
    if (ev.type === 'ADDED' && refsOf(o).length) this.enqueue(() => this.collectIfOrphaned(ev.resource, o));
  }

  private index(resource: string, now: KubeObject | undefined, prev: KubeObject | undefined): void {
    const before = prev ? refsOf(prev) : [];
    const after = now ? refsOf(now) : [];
    if (before.length === 0 && after.length === 0) return;
    const key = keyOf(resource, (now ?? prev)!);
    for (const r of before) this.dependents.get(r.uid)?.delete(key);
    for (const r of after) {
      let s = this.dependents.get(r.uid);
      if (!s) this.dependents.set(r.uid, (s = new Set()));
      s.add(key);
    }
    for (const r of before) if (this.dependents.get(r.uid)?.size === 0) this.dependents.delete(r.uid);
  }

  private enqueue(step: () => Promise<void>): void {
    this.queue.push(step);
    // Steps run after the store has told every listener: a delete from inside a listener would
    // reach watchers before the change that caused it.
    this.running ??= (async () => {
      await Promise.resolve();
      while (this.queue.length) {
        const next = this.queue.shift()!;
        await next().catch((err: unknown) => {
          if (!(err instanceof ApiError && (err.httpStatus === 404 || err.httpStatus === 409))) log.warn({ err }, 'garbage collection step failed');
        });
      }
      this.running = undefined;
    })();
  }

  private lookup(key: string): { def: ResourceDef; obj: KubeObject } | undefined {
    const [resource, ns, name] = key.split('|') as [string, string, string];
    const obj = this.store.get(resource, ns, name);
    const def = obj && this.registry.kinds.findByKind(obj.apiVersion, obj.kind);
    return obj && def ? { def, obj } : undefined;
  }

  /** The owner named by `ref`, seen from a dependent in `ns`; 'unknown' for kinds not served. */
  private owner(ref: OwnerRef, ns: string | undefined): KubeObject | undefined | 'unknown' {
    const d = this.registry.kinds.findByKind(ref.apiVersion, ref.kind);
    if (!d) return 'unknown'; // as the real collector, never delete on an owner it cannot resolve
    const o = this.store.get(resourceKey(d), d.namespaced ? (ns ?? '') : '', ref.name);
    return o?.metadata.uid === ref.uid ? o : undefined;
  }

  /** An object being deleted: run its GC finalizers. */
  private async finish(seen: KubeObject): Promise<void> {
    const d = this.registry.kinds.findByKind(seen.apiVersion, seen.kind);
    if (!d) return;
    const o = this.store.get(resourceKey(d), seen.metadata.namespace ?? '', seen.metadata.name!);
    if (!o || o.metadata.uid !== seen.metadata.uid || !o.metadata.deletionTimestamp) return;
    const finalizers = o.metadata.finalizers ?? [];
    const uid = o.metadata.uid!;
    if (finalizers.includes(ORPHAN)) {
      for (const key of [...(this.dependents.get(uid) ?? [])]) await this.dropReference(key, uid);
      await this.removeFinalizer(d, o, ORPHAN);
    } else if (finalizers.includes(FOREGROUND)) {
      const deps = [...(this.dependents.get(uid) ?? [])];
      if (deps.length === 0) return this.removeFinalizer(d, o, FOREGROUND);
      for (const key of deps) {
        const dep = this.lookup(key);
        if (dep && !dep.obj.metadata.deletionTimestamp) await this.deleteDependent(dep.def, dep.obj, uid, 'Foreground');
      }
    }
  }

  /** A deleted owner's dependents: delete those left with no live owner, unlink the others. */
  private async ownerGone(uid: string): Promise<void> {
    for (const key of [...(this.dependents.get(uid) ?? [])]) {
      const dep = this.lookup(key);
      if (dep) await this.deleteDependent(dep.def, dep.obj, uid, 'Background');
    }
  }

  /** After a dependent went: its owner, if waiting in the foreground with none left, may go. */
  private async releaseForeground(ref: OwnerRef, ns: string | undefined): Promise<void> {
    if (this.dependents.get(ref.uid)?.size) return;
    const owner = this.owner(ref, ns);
    const d = this.registry.kinds.findByKind(ref.apiVersion, ref.kind);
    if (d && isObject(owner) && owner.metadata.deletionTimestamp && owner.metadata.finalizers?.includes(FOREGROUND)) await this.removeFinalizer(d, owner, FOREGROUND);
  }

  private async deleteDependent(d: ResourceDef, dep: KubeObject, ownerUid: string, policy: Propagation): Promise<void> {
    const others = refsOf(dep).filter((r) => r.uid !== ownerUid);
    if (others.some((r) => this.owner(r, dep.metadata.namespace) !== undefined)) return this.dropReference(keyOf(resourceKey(d), dep), ownerUid);
    log.debug({ kind: d.kind, namespace: dep.metadata.namespace, name: dep.metadata.name, policy }, 'garbage collecting a dependent');
    await this.registry.delete(d, dep.metadata.namespace, dep.metadata.name!, { propagationPolicy: policy, preconditions: { uid: dep.metadata.uid } });
  }

  /** A new dependent whose owners are all gone already (or went while the server was down). */
  private async collectIfOrphaned(resource: string, seen: KubeObject): Promise<void> {
    const refs = refsOf(seen);
    const ns = seen.metadata.namespace;
    if (refs.length === 0 || refs.some((r) => this.owner(r, ns) !== undefined)) return;
    const dep = this.lookup(keyOf(resource, seen));
    if (dep && dep.obj.metadata.uid === seen.metadata.uid) await this.deleteDependent(dep.def, dep.obj, refs[0]!.uid, 'Background');
  }

  private async dropReference(key: string, ownerUid: string): Promise<void> {
    const dep = this.lookup(key);
    if (!dep) return;
    const next = clone(dep.obj);
    const refs = (next.metadata.ownerReferences ?? []).filter((r) => !(isObject(r) && r.uid === ownerUid));
    if (refs.length) next.metadata.ownerReferences = refs;
    else delete next.metadata.ownerReferences;
    await this.registry.update(dep.def, next.metadata.namespace, next.metadata.name!, next);
  }

  private async removeFinalizer(d: ResourceDef, o: KubeObject, finalizer: string): Promise<void> {
    const next = clone(o);
    next.metadata.finalizers = (o.metadata.finalizers ?? []).filter((f) => f !== finalizer);
    await this.registry.update(d, o.metadata.namespace, o.metadata.name!, next);
  }
}

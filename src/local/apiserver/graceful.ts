// Graceful deletion of pods, as kube-apiserver does it (pkg/registry/core/pod/strategy.go
// CheckGracefulDelete, k8s.io/apiserver/pkg/registry/rest/delete.go BeforeDelete): a DELETE of a
// pod that runs on a node does not remove it but sets metadata.deletionTimestamp (now + the grace
// period) and deletionGracePeriodSeconds. The node's kubelet then runs preStop, sends SIGTERM,
// waits up to the grace period, kills what is left and removes the object with a DELETE of grace
// 0. A later DELETE may only shorten the period; grace 0 (`kubectl delete --force
// --grace-period=0`) removes the object at once, whatever the kubelet is doing.
import { BadRequestError } from './errors.ts';
import type { ResourceDef } from './resources.ts';
import { resourceKey } from './resources.ts';
import type { Store } from './store.ts';
import { clone, isObject, type JsonObject, type KubeObject } from './types.ts';

/** The pod strategy's default when spec.terminationGracePeriodSeconds is unset. */
const DEFAULT_GRACE_SECONDS = 30;

/** DeleteOptions.gracePeriodSeconds (body or query), or undefined when the request sets none. */
export function requestedGrace(body: unknown): number | undefined {
  const g = isObject(body) ? body.gracePeriodSeconds : undefined;
  if (g === undefined || g === null) return undefined;
  const n = typeof g === 'string' && /^-?\d+$/.test(g) ? Number(g) : g;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw new BadRequestError(`gracePeriodSeconds: Invalid value: ${JSON.stringify(g)}: must be an integer`);
  // A negative period means "the smallest graceful one" (the strategy turns it into 1).
  return n < 0 ? 1 : n;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * The graceful part of deleting pod `current`. Returns the object to answer with when the pod
 * stays (terminating, or already terminating and not shortened to 0), or undefined when the
 * delete goes on as for any other kind (finalizers and propagation, then removal).
 */
export async function beginPodDeletion(store: Store, d: ResourceDef, current: KubeObject, body: unknown): Promise<KubeObject | undefined> {
  const requested = requestedGrace(body);
  const m = current.metadata;
  if (m.deletionTimestamp) {
    const existing = m.deletionGracePeriodSeconds ?? 0;
    // Already terminating: only a shorter period changes anything.
    if (requested === undefined || requested >= existing) return existing > 0 || m.finalizers?.length ? current : undefined;
    if (requested === 0 && !m.finalizers?.length) return undefined;
    const next = clone(current);
    next.metadata.deletionTimestamp = iso(Date.parse(m.deletionTimestamp) - existing * 1000 + requested * 1000);
    next.metadata.deletionGracePeriodSeconds = requested;
    return store.put(resourceKey(d), next);
  }
  const spec = (current.spec ?? {}) as JsonObject;
  const phase = (current.status as JsonObject | undefined)?.phase;
  let period = requested ?? (typeof spec.terminationGracePeriodSeconds === 'number' ? spec.terminationGracePeriodSeconds : DEFAULT_GRACE_SECONDS);
  // Nothing runs an unscheduled pod, and a finished one has nothing left to stop.
  if (!spec.nodeName || phase === 'Succeeded' || phase === 'Failed') period = 0;
  if (period === 0) return undefined;
  const next = clone(current);
  next.metadata.deletionTimestamp = iso(Date.now() + period * 1000);
  next.metadata.deletionGracePeriodSeconds = period;
  next.metadata.generation = (m.generation ?? 1) + 1;
  return store.put(resourceKey(d), next);
}

// The controller's waypoint half: the kinds it watches for waypoints (Gateway API routes attached
// to Services, ReferenceGrants, TrafficPolicies), and the status it writes back on them. The
// model (model/routes.ts) is pure; this is where its route and TrafficPolicy status meets the API.
//
// Status is written through the status subresource with a merge patch, only when it differs from
// what the object already says (so a rebuild that changes nothing writes nothing, also after a
// controller restart), keeping each unchanged condition's lastTransitionTime (mergeConditions).
// On a route we own only our entries of status.parents (controllerName mesh.io/waypoint-controller):
// entries written by other controllers (for Gateway parentRefs) are kept as they are; since a merge
// patch replaces a list whole, the patch carries theirs too.
import { isDeepStrictEqual } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { logger } from '../common/log.ts';
import { mergeConditions, ROUTE_CONTROLLER, type Condition, type KubeObject, type MeshModel, type RouteParentStatus } from './model/index.ts';

const log = logger('controller');

/** Informers for the waypoint kinds; CRD-defined, so each is treated as empty while its CRD is missing. */
export const WAYPOINT_KINDS = [
  { key: 'grpcRoutes', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes' },
  { key: 'referenceGrants', group: 'gateway.networking.k8s.io', version: 'v1beta1', plural: 'referencegrants' },
  { key: 'trafficPolicies', group: 'networking.mesh.io', version: 'v1alpha1', plural: 'trafficpolicies' },
] as const;

const STATUS_KINDS: Record<string, { group: string; version: string; plural: string; cache: string }> = {
  HTTPRoute: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', cache: 'httpRoutes' },
  GRPCRoute: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes', cache: 'grpcRoutes' },
  TrafficPolicy: { group: 'networking.mesh.io', version: 'v1alpha1', plural: 'trafficpolicies', cache: 'trafficPolicies' },
};

/** The informer caches the writer reads the objects' current status from. */
export type CacheLookup = (cache: string) => { get(name: string, namespace?: string): KubeObject | undefined; list(): readonly KubeObject[] } | undefined;

const sameParent = (a: RouteParentStatus['parentRef'], b: unknown): boolean => {
  const r = (b ?? {}) as Record<string, unknown>;
  return (a.group ?? '') === (r.group ?? '') && a.kind === r.kind && a.name === r.name && a.namespace === r.namespace && a.sectionName === r.sectionName && a.port === r.port;
};

export class WaypointStatusWriter {
  readonly #custom: k8s.CustomObjectsApi;
  readonly #caches: CacheLookup;
  readonly #now: () => Date;

  constructor(kc: k8s.KubeConfig, caches: CacheLookup, now: () => Date = () => new Date()) {
    this.#custom = kc.makeApiClient(k8s.CustomObjectsApi);
    this.#caches = caches;
    this.#now = now;
  }

  /** Writes the route and TrafficPolicy status of a model where it differs from the objects'. */
  async write(model: MeshModel): Promise<void> {
    const now = this.#now();
    const routeKeys = new Set(model.routeStatus.keys());
    for (const [key, status] of model.routeStatus) {
      const [kind, ns, name] = key.split('/') as [string, string, string];
      const live = this.#caches(STATUS_KINDS[kind]!.cache)?.get(name, ns);
      if (!live) continue;
      const current = parentsOf(live);
      const ours: RouteParentStatus[] = status.parents.map((p) => {
        const prev = current.find((c) => c.controllerName === ROUTE_CONTROLLER && sameParent(p.parentRef, c.parentRef));
        return { ...p, conditions: mergeConditions(prev?.conditions, p, now).conditions };
      });
      await this.#patchParents(kind, live, current, ours);
    }
    // Routes we wrote status on that no longer have a Service parent: take our entries away.
    for (const kind of ['HTTPRoute', 'GRPCRoute']) {
      for (const live of this.#caches(STATUS_KINDS[kind]!.cache)?.list() ?? []) {
        const key = `${kind}/${live.metadata?.namespace}/${live.metadata?.name}`;
        if (!routeKeys.has(key) && parentsOf(live).some((p) => p.controllerName === ROUTE_CONTROLLER)) await this.#patchParents(kind, live, parentsOf(live), []);
      }
    }
    for (const [key, status] of model.trafficPolicyStatus) {
      const [, ns, name] = key.split('/') as [string, string, string];
      const live = this.#caches('trafficPolicies')?.get(name, ns);
      if (!live) continue;
      const prev = ((live.status as { conditions?: Condition[] } | undefined)?.conditions ?? []) as Condition[];
      const next = mergeConditions(prev, status, now);
      if (isDeepStrictEqual(prev, next.conditions)) continue;
      await this.#patch('TrafficPolicy', ns, name, { conditions: next.conditions });
    }
  }

  async #patchParents(kind: string, live: KubeObject, current: RouteParentStatus[], ours: RouteParentStatus[]): Promise<void> {
    const others = current.filter((c) => c.controllerName !== ROUTE_CONTROLLER);
    const parents = [...others, ...ours];
    if (isDeepStrictEqual(parents, current)) return;
    await this.#patch(kind, live.metadata?.namespace ?? '', live.metadata?.name ?? '', { parents });
  }

  async #patch(kind: string, namespace: string, name: string, status: object): Promise<void> {
    const k = STATUS_KINDS[kind]!;
    await this.#custom
      .patchNamespacedCustomObjectStatus(
        { group: k.group, version: k.version, namespace, plural: k.plural, name, body: { status } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      )
      .catch((e: Error) => log.warn({ object: `${kind}/${namespace}/${name}`, err: e.message }, 'writing status failed'));
  }
}

function parentsOf(o: KubeObject): RouteParentStatus[] {
  const s = o.status as { parents?: unknown } | undefined;
  return Array.isArray(s?.parents) ? (s.parents as RouteParentStatus[]) : [];
}

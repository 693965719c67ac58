// The model kept up to date change by change: the controller hands it the objects its informers
// report, and commit() recomputes only what depends on them, returning the names of the config
// stream's resources that may have changed. buildModel() (model.ts) is the reference: after any
// sequence of changes, model equals buildModel() of the same objects (test/unit/model-incremental
// .test.ts checks it on random sequences). Both are made of the same per-object pieces
// (buildWorkload, buildService, placePolicy, peerAuthnOf, …); what this file adds is which of them
// to run again, and the indexes that say so.
//
// What a change recomputes (istio/istio's krt collections draw the same graph):
// - a pod: its Workload (services it backs, waypoint, PeerAuthentication keys), whether each
//   selector AuthorizationPolicy of its namespace (or the root namespace) selects it, and the
//   placement of the policies that need a waypoint and may select it (their form depends on the
//   selected workloads);
// - a Service: its mesh Service, the Workloads of the pods it selects (before and after), the
//   routes, the targetRef policies that name it;
// - an EndpointSlice: the Workloads of the pods it names, when its Service has no selector;
// - an AuthorizationPolicy: its placement, and the Workloads whose list of policies changes;
// - routes, ReferenceGrants, TrafficPolicies: the routes only.
// Changes that reach everything — a namespace's labels, a Gateway, the readiness of a waypoint's
// Service, a PeerAuthentication — recompute everything (the first commit too); they are rare, and
// the store skips the values that came out equal.
import type * as k8s from '@kubernetes/client-node';
import type { Authorization, L7Authorization, Port, Route, Service, Workload } from '../../xds/index.ts';
import { parseAuthorizationPolicy, type ParsedPolicy } from './authz.ts';
import { addTo, deleteFrom, LiveLabelIndex, labelsOf, nameOf, namespaceOf, selects, uniqSorted, type Labels } from './kube.ts';
import { indexPeerAuthentications, peerAuthnOf, peerAuthnStatus, type PeerAuthnIndex, type WorkloadPeerAuthn } from './peerauthn.ts';
import { needsWaypoint, placePolicy, type PlacementInput } from './placement.ts';
import { buildRoutes, type RouteStatus } from './routes.ts';
import { buildService, hasSelector, hostnameOf, portLists, selectedPodPorts, slicePodNames, slicePorts, sliceService } from './services.ts';
import type { TrafficPolicyStatus } from './traffic-policy.ts';
import { DEFAULT_MODEL_OPTIONS, type ClusterSnapshot, type KubeObject, type MeshModel, type ModelOptions, type PolicyStatus, type WaypointUse } from './types.ts';
import { Waypoints, type WaypointRef } from './waypoints.ts';
import { buildWorkload, isWorkloadPod, type PodWorkload } from './workloads.ts';

/** The kinds the model reads (ClusterSnapshot's, less nodes: nothing in the model depends on them). */
export const MODEL_KINDS = [
  'namespaces',
  'pods',
  'services',
  'endpointSlices',
  'gateways',
  'httpRoutes',
  'grpcRoutes',
  'referenceGrants',
  'trafficPolicies',
  'authorizationPolicies',
  'peerAuthentications',
] as const satisfies readonly (keyof ClusterSnapshot)[];
export type ModelKind = (typeof MODEL_KINDS)[number];

/** Names (the model's map keys) whose resource was set or removed by a commit. */
export interface ModelChanges {
  workloads: Set<string>;
  services: Set<string>;
  authorizations: Set<string>;
  routes: Set<string>;
  l7Authorizations: Set<string>;
  /** Everything was recomputed. */
  full: boolean;
}

type Obj = KubeObject & { metadata?: k8s.V1ObjectMeta };

interface PolicyState {
  obj: KubeObject;
  p: ParsedPolicy;
  /** invalid and targeted policies do not depend on pods; simple ones only by selection; waypoint ones by their whole form. */
  kind: 'invalid' | 'targeted' | 'simple' | 'waypoint';
  /** Pods ("ns/name") whose Workload lists the policy's Authorization. */
  attach: Set<string>;
}

const keyOf = (kind: ModelKind, o: Obj): string => (kind === 'namespaces' ? nameOf(o) : `${namespaceOf(o)}/${nameOf(o)}`);

function sameLabels(a: Obj | undefined, b: Obj | undefined): boolean {
  const x = a?.metadata?.labels ?? {};
  const y = b?.metadata?.labels ?? {};
  const kx = Object.keys(x);
  return kx.length === Object.keys(y).length && kx.every((k) => y[k] === x[k]);
}

/** Only a Service without a selector takes its endpoints from EndpointSlices. */
const fromSlices = (svc: k8s.V1Service | undefined): boolean => !!svc && svc.spec?.type !== 'ExternalName' && !hasSelector(svc);

function count(m: Map<string, number>, k: string, by: 1 | -1): boolean {
  const n = (m.get(k) ?? 0) + by;
  if (n <= 0) m.delete(k);
  else m.set(k, n);
  // Crossed zero: whatever depends on "is there any" changed.
  return (by === 1 && n === 1) || n === 0;
}

export class IncrementalModel {
  readonly #opts: Required<ModelOptions>;
  readonly #uidPrefix: string;
  readonly #objects = new Map<ModelKind, Map<string, Obj>>(MODEL_KINDS.map((k) => [k, new Map()]));
  readonly #pending = new Map<ModelKind, Map<string, Obj | null>>();
  #first = true;

  // Indexes over the inputs, kept as they change.
  /** Selector Services by their first selector pair ("ns\0key\0value"). */
  readonly #svcByPair = new Map<string, Set<string>>();
  readonly #slicesBySvc = new Map<string, Set<string>>();
  readonly #slicesByPod = new Map<string, Set<string>>();
  /** Services with a ready endpoint, and per slice the Service it makes ready. */
  readonly #ready = new Set<string>();
  readonly #readyBy = new Map<string, number>();
  readonly #sliceReady = new Map<string, string>();
  readonly #apByNs = new Map<string, Set<string>>();

  // Derived state.
  #nsLabels = new Map<string, Labels>();
  #waypoints: Waypoints;
  #nsWaypoints = new Map<string, WaypointRef | null>();
  readonly #serviceWaypoints = new Map<string, WaypointRef | null>();
  readonly #pods = new Map<string, PodWorkload>();
  #podIndex = new LiveLabelIndex();
  readonly #policies = new Map<string, PolicyState>();
  /** Pod → keys of the AuthorizationPolicies' Authorizations its Workload lists. */
  readonly #podAttach = new Map<string, Set<string>>();
  #pa: PeerAuthnIndex;
  readonly #paOf = new Map<string, WorkloadPeerAuthn>();
  readonly #paSelects = new Map<string, number>();
  readonly #paEffective = new Map<string, number>();
  readonly #paAuthRefs = new Map<string, number>();
  #paStatusKeys: string[] = [];

  // The output.
  readonly #workloads = new Map<string, Workload>();
  readonly #services = new Map<string, Service>();
  readonly #authorizations = new Map<string, Authorization>();
  readonly #policyStatus = new Map<string, PolicyStatus>();
  readonly #l7Authorizations = new Map<string, L7Authorization>();
  #routes = new Map<string, Route>();
  #routeStatus = new Map<string, RouteStatus>();
  #trafficPolicyStatus = new Map<string, TrafficPolicyStatus>();
  #waypointReport = new Map<string, WaypointUse>();

  constructor(options: Partial<ModelOptions> = {}) {
    const opts = { ...DEFAULT_MODEL_OPTIONS };
    for (const [k, v] of Object.entries(options)) if (v !== undefined && v !== '') (opts as Record<string, unknown>)[k] = v;
    this.#opts = opts;
    this.#uidPrefix = `${opts.clusterId}//v1/Pod/`;
    this.#waypoints = new Waypoints([], opts.clusterDomain, this.#ready);
    this.#pa = indexPeerAuthentications([], opts.rootNamespace);
  }

  /** The object as it now is (added or updated); applied at the next commit. */
  set(kind: ModelKind, obj: Obj): void {
    this.#queue(kind).set(keyOf(kind, obj), obj);
  }

  /** The object is gone; applied at the next commit. */
  delete(kind: ModelKind, obj: Obj): void {
    this.#queue(kind).set(keyOf(kind, obj), null);
  }

  /** Changes are waiting for a commit. */
  get pending(): boolean {
    return this.#pending.size > 0;
  }

  /**
   * The current model. Its maps are live (the next commit changes them) and, unlike buildModel's,
   * in no particular order, except the waypoints' report.
   */
  get model(): MeshModel {
    return {
      workloads: this.#workloads,
      services: this.#services,
      authorizations: this.#authorizations,
      policyStatus: this.#policyStatus,
      waypoints: this.#waypointReport,
      routes: this.#routes,
      l7Authorizations: this.#l7Authorizations,
      routeStatus: this.#routeStatus,
      trafficPolicyStatus: this.#trafficPolicyStatus,
    };
  }

  /** Applies the queued changes; returns the names of the resources that may differ. */
  commit(): ModelChanges {
    const pods = new Set<string>();
    const services = new Map<string, Obj | undefined>();
    const policies = new Set<string>();
    const slices: [k8s.V1EndpointSlice | undefined, k8s.V1EndpointSlice | null][] = [];
    let routes = false;
    let full = this.#first;
    for (const [kind, queued] of this.#pending) {
      const held = this.#objects.get(kind)!;
      for (const [key, obj] of queued) {
        const old = held.get(key);
        if (obj) held.set(key, obj);
        else held.delete(key);
        switch (kind) {
          case 'pods':
            pods.add(key);
            break;
          case 'services':
            if (!services.has(key)) services.set(key, old);
            this.#indexService(key, old as k8s.V1Service | undefined, obj as k8s.V1Service | null);
            routes = true;
            break;
          case 'endpointSlices':
            slices.push([old as k8s.V1EndpointSlice | undefined, obj as k8s.V1EndpointSlice | null]);
            if (this.#indexSlice(key, old as k8s.V1EndpointSlice | undefined, obj as k8s.V1EndpointSlice | null)) full = true;
            break;
          case 'authorizationPolicies':
            policies.add(key);
            break;
          case 'httpRoutes':
          case 'grpcRoutes':
          case 'referenceGrants':
          case 'trafficPolicies':
            routes = true;
            break;
          case 'namespaces':
            if (!sameLabels(old, obj ?? undefined)) full = true;
            break;
          default:
            // Gateways (every waypoint's readiness) and PeerAuthentications (every workload's mode).
            full = true;
        }
      }
    }
    this.#pending.clear();
    this.#first = false;
    // The pods a changed slice names (before and after), when its Service — as it was before this
    // commit or as it is now — takes its endpoints from slices.
    const heldServices = this.#objects.get('services')!;
    for (const [old, slice] of slices) {
      for (const s of [old, slice]) {
        const svcKey = s ? sliceService(s) : null;
        if (!s || !svcKey) continue;
        const before = services.has(svcKey) ? services.get(svcKey) : heldServices.get(svcKey);
        if (!fromSlices(before as k8s.V1Service | undefined) && !fromSlices(heldServices.get(svcKey) as k8s.V1Service | undefined)) continue;
        for (const name of slicePodNames(s)) pods.add(`${namespaceOf(s)}/${name}`);
      }
    }
    if (full) return this.#rebuildAll();
    const changes: ModelChanges = { workloads: new Set(), services: new Set(), authorizations: new Set(), routes: new Set(), l7Authorizations: new Set(), full: false };
    this.#apply(changes, services, pods, policies, routes, false);
    return changes;
  }

  #queue(kind: ModelKind): Map<string, Obj | null> {
    let m = this.#pending.get(kind);
    if (!m) this.#pending.set(kind, (m = new Map()));
    return m;
  }

  #list<T>(kind: ModelKind): T[] {
    return [...this.#objects.get(kind)!.values()] as T[];
  }

  /** Recomputes everything from the objects held; every name that was or is in the model counts as changed. */
  #rebuildAll(): ModelChanges {
    const before = {
      workloads: [...this.#workloads.keys()],
      services: [...this.#services.keys()],
      authorizations: [...this.#authorizations.keys()],
      routes: [...this.#routes.keys()],
      l7Authorizations: [...this.#l7Authorizations.keys()],
    };
    const o = this.#opts;
    this.#nsLabels = new Map([...this.#objects.get('namespaces')!.values()].map((n) => [nameOf(n), labelsOf(n)]));
    this.#waypoints = new Waypoints(this.#list('gateways'), o.clusterDomain, this.#ready);
    this.#nsWaypoints = new Map();
    for (const ns of this.#nsLabels.keys()) this.#nsWaypoints.set(ns, this.#waypoints.resolve(`Namespace/${ns}`, ns, {}, this.#labelsOfNs(ns)));
    this.#pa = indexPeerAuthentications(this.#list('peerAuthentications'), o.rootNamespace);
    for (const m of [this.#serviceWaypoints, this.#pods, this.#podAttach, this.#paOf, this.#paSelects, this.#paEffective, this.#paAuthRefs]) m.clear();
    for (const m of [this.#workloads, this.#services, this.#authorizations, this.#policyStatus, this.#l7Authorizations]) m.clear();
    this.#paStatusKeys = [];
    this.#podIndex = new LiveLabelIndex();
    for (const st of this.#policies.values()) st.attach.clear();

    const changes: ModelChanges = { workloads: new Set(), services: new Set(), authorizations: new Set(), routes: new Set(), l7Authorizations: new Set(), full: true };
    const services = new Map<string, Obj | undefined>([...this.#objects.get('services')!.keys()].map((k) => [k, undefined]));
    const policies = new Set([...this.#policies.keys(), ...this.#objects.get('authorizationPolicies')!.keys()]);
    this.#apply(changes, services, new Set(this.#objects.get('pods')!.keys()), policies, true, true);
    for (const [k, names] of Object.entries(before) as [keyof typeof before, string[]][]) for (const n of names) changes[k].add(n);
    return changes;
  }

  #apply(changes: ModelChanges, services: Map<string, Obj | undefined>, pods: Set<string>, policies: Set<string>, routes: boolean, full: boolean): void {
    for (const [key, old] of services) this.#serviceChanged(key, old as k8s.V1Service | undefined, pods, policies, changes, full);
    const attach = new Set<string>();
    let paStatus = full;
    for (const key of pods) if (this.#podChanged(key, policies, attach, changes, full)) paStatus = true;
    for (const key of policies) this.#place(key, attach, changes);
    for (const key of new Set([...pods, ...attach])) this.#publishWorkload(key, changes);
    if (routes) this.#buildRoutes(changes);
    if (paStatus) {
      for (const k of this.#paStatusKeys) this.#policyStatus.delete(k);
      const status = peerAuthnStatus(this.#pa, (k) => this.#paSelects.has(k), (k) => this.#paEffective.has(k));
      for (const [k, s] of status) this.#policyStatus.set(k, s);
      this.#paStatusKeys = [...status.keys()];
    }
    this.#waypointReport = this.#waypoints.report();
  }

  #labelsOfNs(ns: string): Labels {
    return this.#nsLabels.get(ns) ?? {};
  }

  // ---- indexes ------------------------------------------------------------------------------

  #indexService(key: string, old: k8s.V1Service | undefined, svc: k8s.V1Service | null): void {
    const pair = (s: k8s.V1Service | null | undefined): string | null => {
      if (!s || s.spec?.type === 'ExternalName' || !hasSelector(s)) return null;
      const sel = s.spec!.selector!;
      const k = Object.keys(sel)[0]!;
      return `${namespaceOf(s)}\0${k}\0${sel[k]}`;
    };
    const before = pair(old);
    if (before !== null) deleteFrom(this.#svcByPair, before, key);
    const after = pair(svc);
    if (after !== null) addTo(this.#svcByPair, after, key);
  }

  /** Keeps the slice indexes; true when a waypoint's readiness changed. */
  #indexSlice(key: string, old: k8s.V1EndpointSlice | undefined, slice: k8s.V1EndpointSlice | null): boolean {
    let waypointReadiness = false;
    for (const [s, add] of [
      [old, false],
      [slice, true],
    ] as const) {
      if (!s) continue;
      const ns = namespaceOf(s);
      const svc = sliceService(s);
      if (svc) (add ? addTo : deleteFrom)(this.#slicesBySvc, svc, key);
      for (const name of slicePodNames(s)) (add ? addTo : deleteFrom)(this.#slicesByPod, `${ns}/${name}`, key);
    }
    // readyServices(): a Service is ready while one of its slices has a ready endpoint.
    const was = this.#sliceReady.get(key);
    const now = slice && (slice.endpoints ?? []).some((e) => e.conditions?.ready !== false) ? sliceService(slice) : null;
    if (was === (now ?? undefined)) return false;
    for (const [svc, by] of [
      [was, -1],
      [now, 1],
    ] as const) {
      if (!svc) continue;
      if (count(this.#readyBy, svc, by)) {
        if (by === 1) this.#ready.add(svc);
        else this.#ready.delete(svc);
        // Readiness matters only to a waypoint: a Gateway of that name.
        if (this.#objects.get('gateways')!.has(svc)) waypointReadiness = true;
      }
    }
    if (now) this.#sliceReady.set(key, now);
    else this.#sliceReady.delete(key);
    return waypointReadiness;
  }

  // ---- services -----------------------------------------------------------------------------

  #serviceChanged(key: string, old: k8s.V1Service | undefined, pods: Set<string>, policies: Set<string>, changes: ModelChanges, full: boolean): void {
    const svc = this.#objects.get('services')!.get(key) as k8s.V1Service | undefined;
    const o = this.#opts;
    if (!full) {
      // The pods it selected and selects: their Workload.services change.
      for (const s of [old, svc]) {
        if (!s || s.spec?.type === 'ExternalName') continue;
        const ns = namespaceOf(s);
        if (hasSelector(s)) for (const p of this.#podIndex.select(ns, s.spec!.selector!)) pods.add(p);
        else for (const sl of this.#slicesBySvc.get(key) ?? []) for (const name of slicePodNames(this.#objects.get('endpointSlices')!.get(sl) as k8s.V1EndpointSlice)) pods.add(`${ns}/${name}`);
        // (Pods named by slices that changed in this commit are added by commit().)
      }
      // Policies attached to it by targetRef follow its waypoint.
      for (const [k, st] of this.#policies) if (st.kind === 'targeted' && st.p.targetRefs!.some((r) => r.kind === 'Service' && `${r.namespace}/${r.name}` === key)) policies.add(k);
    }
    const [ns, name] = key.split('/') as [string, string];
    const meshKey = `${ns}/${hostnameOf(name, ns, o.clusterDomain)}`;
    this.#waypoints.forgetUser(`Service/${key}`);
    this.#serviceWaypoints.delete(key);
    this.#services.delete(meshKey);
    changes.services.add(meshKey);
    if (!svc) return;
    const wp = svc.spec?.type === 'ExternalName' ? null : this.#waypoints.resolve(`Service/${key}`, ns, labelsOf(svc), this.#labelsOfNs(ns));
    this.#serviceWaypoints.set(key, wp);
    const s = buildService(svc, wp, o.clusterDomain);
    if (s) this.#services.set(meshKey, s);
  }

  // ---- pods ---------------------------------------------------------------------------------

  /** The pod's Workload.services, as servicesByPod() finds them. */
  #servicesOf(pod: k8s.V1Pod, key: string): PodWorkload['workload']['services'] {
    const o = this.#opts;
    const ns = namespaceOf(pod);
    const found = new Map<string, Port[]>();
    const add = (svc: k8s.V1Service, ports: Port[]): void => {
      const k = `${ns}/${hostnameOf(nameOf(svc), ns, o.clusterDomain)}`;
      found.set(k, [...(found.get(k) ?? []), ...ports]);
    };
    const held = this.#objects.get('services')!;
    const labels = labelsOf(pod);
    for (const k in labels) {
      for (const svcKey of this.#svcByPair.get(`${ns}\0${k}\0${labels[k]}`) ?? []) {
        const svc = held.get(svcKey) as k8s.V1Service;
        if (!selects(svc.spec!.selector!, labels)) continue;
        const ports = selectedPodPorts(svc, pod);
        if (ports) add(svc, ports);
      }
    }
    for (const sl of this.#slicesByPod.get(key) ?? []) {
      const slice = this.#objects.get('endpointSlices')!.get(sl) as k8s.V1EndpointSlice;
      const svc = held.get(sliceService(slice) ?? '') as k8s.V1Service | undefined;
      if (!svc || svc.spec?.type === 'ExternalName' || hasSelector(svc)) continue;
      add(svc, slicePorts(svc, slice));
    }
    return portLists(found);
  }

  /** Recomputes a pod's Workload and what follows from it; true when the PeerAuthentications' status may change. */
  #podChanged(key: string, policies: Set<string>, attach: Set<string>, changes: ModelChanges, full: boolean): boolean {
    const o = this.#opts;
    const old = this.#pods.get(key);
    const pod = this.#objects.get('pods')!.get(key) as k8s.V1Pod | undefined;
    const ns = key.slice(0, key.indexOf('/'));
    this.#waypoints.forgetUser(`Pod/${key}`);
    const next = pod && isWorkloadPod(pod) ? buildWorkload(pod, this.#labelsOfNs(ns), this.#servicesOf(pod, key), this.#waypoints, o) : null;
    if (old) this.#podIndex.remove(key);
    if (next) {
      this.#pods.set(key, next);
      this.#podIndex.add(key, ns, labelsOf(next.pod));
    } else this.#pods.delete(key);

    if (!full) {
      // Every policy that could select the pod lives in its namespace or the root namespace.
      const candidates = new Set([...(this.#apByNs.get(ns) ?? []), ...(this.#apByNs.get(o.rootNamespace) ?? [])]);
      for (const apKey of candidates) {
        const st = this.#policies.get(apKey)!;
        if (st.kind === 'simple' && st.p.scope === 'WORKLOAD_SELECTOR') {
          if (this.#attach(st, apKey, key, !!next && selects(st.p.selector!, labelsOf(next.pod)))) attach.add(key);
        } else if (st.kind === 'waypoint' && (this.#inScope(st.p, old) || this.#inScope(st.p, next ?? undefined))) {
          policies.add(apKey);
        }
      }
    }

    // PeerAuthentications: this workload's share of the Authorizations and of the counts behind the status.
    let status = false;
    const before = this.#paOf.get(key);
    const after = next ? peerAuthnOf(this.#pa, next) : null;
    if (before) {
      for (const k of before.selectedBy) status = count(this.#paSelects, k, -1) || status;
      for (const k of before.effectiveOn) status = count(this.#paEffective, k, -1) || status;
      for (const [k] of before.authorizations) {
        if (count(this.#paAuthRefs, k, -1)) {
          this.#authorizations.delete(k);
          changes.authorizations.add(k);
        }
      }
      this.#paOf.delete(key);
    }
    if (after) {
      for (const k of after.selectedBy) status = count(this.#paSelects, k, 1) || status;
      for (const k of after.effectiveOn) status = count(this.#paEffective, k, 1) || status;
      for (const [k, a] of after.authorizations) {
        if (count(this.#paAuthRefs, k, 1)) {
          this.#authorizations.set(k, a);
          changes.authorizations.add(k);
        }
      }
      this.#paOf.set(key, after);
    }
    return status;
  }

  #inScope(p: ParsedPolicy, w: PodWorkload | undefined): boolean {
    if (!w) return false;
    if (p.scope === 'GLOBAL') return true;
    const ns = w.workload.namespace;
    if (p.scope === 'NAMESPACE') return ns === p.namespace;
    return (p.namespace === this.#opts.rootNamespace || ns === p.namespace) && selects(p.selector ?? {}, labelsOf(w.pod));
  }

  /** Lists (or unlists) the policy's Authorization on the pod's Workload; true when that changed. */
  #attach(st: PolicyState, apKey: string, pod: string, on: boolean): boolean {
    if (st.attach.has(pod) === on) return false;
    if (on) {
      st.attach.add(pod);
      addTo(this.#podAttach, pod, apKey);
    } else {
      st.attach.delete(pod);
      deleteFrom(this.#podAttach, pod, apKey);
    }
    return true;
  }

  #publishWorkload(key: string, changes: ModelChanges): void {
    const uid = this.#uidPrefix + key;
    const w = this.#pods.get(key);
    changes.workloads.add(uid);
    if (!w) {
      this.#workloads.delete(uid);
      return;
    }
    const keys = [...(this.#podAttach.get(key) ?? []), ...(this.#paOf.get(key)?.keys ?? [])];
    // A new object every time: the store compares it with the one it holds.
    this.#workloads.set(uid, { ...w.workload, authorizationPolicies: uniqSorted(keys) });
  }

  // ---- policies -----------------------------------------------------------------------------

  #placement(): PlacementInput {
    return {
      select: (ns, selector) => this.#podIndex.select(ns, selector).map((k) => this.#pods.get(k)!),
      rootNamespace: this.#opts.rootNamespace,
      nsWaypoint: (ns) => this.#nsWaypoints.get(ns) ?? null,
      serviceWaypoint: (ns, name) => this.#serviceWaypoints.get(`${ns}/${name}`) ?? null,
      waypoints: this.#waypoints,
      clusterDomain: this.#opts.clusterDomain,
    };
  }

  #place(key: string, attach: Set<string>, changes: ModelChanges): void {
    const o = this.#opts;
    const obj = this.#objects.get('authorizationPolicies')!.get(key);
    let st = this.#policies.get(key);
    if (st && st.obj !== obj) {
      deleteFrom(this.#apByNs, st.p.namespace, key);
      this.#policyStatus.delete(st.p.key);
    }
    this.#waypoints.forgetPolicy(`AuthorizationPolicy/${key}`);
    changes.authorizations.add(key);
    changes.l7Authorizations.add(key);
    const was = st?.attach ?? new Set<string>();
    if (!obj) {
      for (const pod of was) if (this.#attach(st!, key, pod, false)) attach.add(pod);
      this.#policies.delete(key);
      this.#authorizations.delete(key);
      this.#l7Authorizations.delete(key);
      return;
    }
    if (!st || st.obj !== obj) {
      const p = parseAuthorizationPolicy(obj, o.rootNamespace, o.trustDomain);
      const kind = p.errors.length > 0 ? 'invalid' : p.targetRefs ? 'targeted' : needsWaypoint(p) ? 'waypoint' : 'simple';
      st = { obj, p, kind, attach: st?.attach ?? new Set() };
      this.#policies.set(key, st);
      addTo(this.#apByNs, p.namespace, key);
    }
    const r = placePolicy(obj, st.p, this.#placement(), o.trustDomain);
    this.#policyStatus.set(st.p.key, r.status);
    if (r.authorization) this.#authorizations.set(key, r.authorization);
    else this.#authorizations.delete(key);
    if (r.l7Authorization) this.#l7Authorizations.set(key, r.l7Authorization);
    else this.#l7Authorizations.delete(key);
    const now = new Set(r.attachTo.map((uid) => uid.slice(this.#uidPrefix.length)));
    for (const pod of [...was]) if (!now.has(pod) && this.#attach(st, key, pod, false)) attach.add(pod);
    for (const pod of now) if (this.#attach(st, key, pod, true)) attach.add(pod);
  }

  // ---- routes -------------------------------------------------------------------------------

  #buildRoutes(changes: ModelChanges): void {
    const r = buildRoutes(
      {
        httpRoutes: this.#list('httpRoutes'),
        grpcRoutes: this.#list('grpcRoutes'),
        services: this.#list('services'),
        referenceGrants: this.#list('referenceGrants'),
        trafficPolicies: this.#list('trafficPolicies'),
      },
      this.#opts.clusterDomain,
    );
    for (const k of new Set([...this.#routes.keys(), ...r.routes.keys()])) changes.routes.add(k);
    this.#routes = r.routes;
    this.#routeStatus = r.routeStatus;
    this.#trafficPolicyStatus = r.trafficPolicyStatus;
  }
}

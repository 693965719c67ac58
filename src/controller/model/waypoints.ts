// Which waypoint a pod, service or namespace uses (Istio's istio.io/use-waypoint, ours
// mesh.io/use-waypoint), and whether that waypoint really carries traffic.
//
// A waypoint is ready when its Gateway exists with class mesh-waypoint, is Programmed (its
// status says so), and its Service (named after the Gateway, as Istio's waypoints are) has a
// ready endpoint. Until then (DESIGN.md "Policy": fail closed in every window):
// - the label still sets the waypoint on the resource, by the hostname the waypoint's Service
//   has or would have, so ztunnel refuses the traffic instead of bypassing the waypoint (Istio
//   instead leaves it unset — WaypointBound=False — and traffic goes straight to the pod);
// - the policies that would be handed to it stay in force at L4, in their fail-closed form
//   (placement.ts), so nothing is allowed that the policy would not allow.
// The operator learns why from MeshModel.waypoints and from the status of the policies involved.
import type * as k8s from '@kubernetes/client-node';
import type { GatewayAddress } from '../../xds/index.ts';
import { isRecord, nameOf, namespaceOf, uniqSorted, type Labels } from './kube.ts';
import {
  HBONE_PORT,
  LABEL_GATEWAY_NAME,
  LABEL_USE_WAYPOINT,
  LABEL_USE_WAYPOINT_NAMESPACE,
  LABEL_WAYPOINT_FOR,
  WAYPOINT_CLASS,
  type KubeObject,
  type WaypointUse,
} from './types.ts';

/** A waypoint reference as resolved for one user. */
export interface WaypointRef {
  /** "namespace/name" of the Gateway. */
  key: string;
  address: GatewayAddress;
  /** It exists, is programmed and has a ready endpoint: it can take its users' traffic. */
  ready: boolean;
}

interface Use {
  namespace: string;
  name: string;
  hostname: string;
  /** A Gateway of class mesh-waypoint with this name exists. */
  found: boolean;
  /** Why it cannot take traffic ("" when ready). */
  problem: string;
  users: Set<string>;
  policies: Set<string>;
}

export class Waypoints {
  readonly #clusterDomain: string;
  /** "ns/name" → gatewayClassName and Programmed condition of every Gateway. */
  readonly #gateways = new Map<string, { cls: string; programmed: string | undefined; forType: string }>();
  /** "ns/name" of the Services that have at least one ready endpoint. */
  readonly #readyServices: ReadonlySet<string>;
  readonly #uses = new Map<string, Use>();
  /** user → the waypoint it resolved to; policy → the waypoints it was handed to (so both can be forgotten). */
  readonly #userKey = new Map<string, string>();
  readonly #policyKeys = new Map<string, Set<string>>();
  /** The report's entries, recomputed only for the waypoints whose users or policies changed. */
  readonly #reported = new Map<string, WaypointUse>();
  readonly #changed = new Set<string>();

  /** `readyServices`: "ns/name" of the Services with a ready endpoint (readyServices()). */
  constructor(gateways: KubeObject[], clusterDomain: string, readyServices: ReadonlySet<string> = new Set()) {
    this.#clusterDomain = clusterDomain;
    this.#readyServices = readyServices;
    for (const g of gateways) {
      const cls = isRecord(g.spec) && typeof g.spec.gatewayClassName === 'string' ? g.spec.gatewayClassName : '';
      const forType = g.metadata?.labels?.[LABEL_WAYPOINT_FOR] ?? 'service';
      this.#gateways.set(`${namespaceOf(g)}/${nameOf(g)}`, { cls, programmed: programmedStatus(g), forType });
    }
  }

  /**
   * The waypoint of an object with `labels` in namespace `ns` whose labels are `nsLabels`: the
   * object's own label wins, "none" opts out of the namespace's waypoint (as in Istio).
   * `user` ("Pod/ns/name", "Service/ns/name", "Namespace/ns") is recorded for the report unless "",
   * in place of what it resolved to before (the incremental model resolves a user again when it changes).
   */
  resolve(user: string, ns: string, labels: Labels, nsLabels: Labels): WaypointRef | null {
    if (user) this.forgetUser(user);
    const own = labels[LABEL_USE_WAYPOINT];
    const from = own !== undefined ? labels : nsLabels;
    const name = from[LABEL_USE_WAYPOINT];
    if (name === undefined || name === '' || name === 'none') return null;
    const wns = from[LABEL_USE_WAYPOINT_NAMESPACE] || ns;
    // A waypoint's own pods never go through a waypoint (that would loop).
    if (user.startsWith('Pod/') && wns === ns && labels[LABEL_GATEWAY_NAME] === name && this.#isWaypoint(`${wns}/${name}`)) return null;
    // …nor does its own Service (named after the Gateway), which the namespace's label would reach.
    if (user === `Service/${wns}/${name}` && this.#isWaypoint(`${wns}/${name}`)) return null;
    const key = `${wns}/${name}`;
    // mesh.io/waypoint-for (Istio's istio.io/waypoint-for, default "service"): a waypoint takes
    // the traffic addressed to Services, to workloads, both, or neither. One that exists and does
    // not take this kind of traffic is not this user's waypoint; a missing one still is (refused
    // until it exists: fail closed).
    const gw = this.#gateways.get(key);
    if (gw?.cls === WAYPOINT_CLASS && !takes(gw.forType, user)) return null;
    const use = this.#use(wns, name);
    if (user) {
      use.users.add(user);
      this.#userKey.set(user, key);
      this.#changed.add(key);
    }
    return { key, ready: use.problem === '', address: { hostname: use.hostname, hboneMtlsPort: HBONE_PORT } };
  }

  /** Records a policy handed to a waypoint for enforcement. */
  addPolicy(key: string, policy: string): void {
    const use = this.#uses.get(key);
    if (!use) return;
    use.policies.add(policy);
    let keys = this.#policyKeys.get(policy);
    if (!keys) this.#policyKeys.set(policy, (keys = new Set()));
    keys.add(key);
    this.#changed.add(key);
  }

  /** Forgets what `user` resolved to (it is gone, or about to be resolved again). */
  forgetUser(user: string): void {
    const key = this.#userKey.get(user);
    if (key === undefined) return;
    this.#userKey.delete(user);
    this.#uses.get(key)?.users.delete(user);
    this.#changed.add(key);
  }

  /** Forgets the waypoints a policy was handed to (it is gone, or about to be placed again). */
  forgetPolicy(policy: string): void {
    for (const key of this.#policyKeys.get(policy) ?? []) {
      this.#uses.get(key)?.policies.delete(policy);
      this.#changed.add(key);
    }
    this.#policyKeys.delete(policy);
  }

  problem(key: string): string {
    return this.#uses.get(key)?.problem ?? '';
  }

  /** Every waypoint that a user or a policy refers to, in key order. */
  report(): Map<string, WaypointUse> {
    for (const key of this.#changed) {
      const u = this.#uses.get(key);
      if (!u || (u.users.size === 0 && u.policies.size === 0)) this.#reported.delete(key);
      else this.#reported.set(key, { gateway: key, hostname: u.hostname, found: u.found, ready: u.problem === '', problem: u.problem, users: uniqSorted(u.users), policies: uniqSorted(u.policies) });
    }
    this.#changed.clear();
    return new Map([...this.#reported].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
  }

  #isWaypoint(key: string): boolean {
    return this.#gateways.get(key)?.cls === WAYPOINT_CLASS;
  }

  #use(ns: string, name: string): Use {
    const key = `${ns}/${name}`;
    let use = this.#uses.get(key);
    if (!use) {
      const gw = this.#gateways.get(key);
      const found = gw?.cls === WAYPOINT_CLASS;
      const problem =
        gw === undefined
          ? `Gateway ${key} does not exist`
          : gw.cls !== WAYPOINT_CLASS
            ? `Gateway ${key} has gatewayClassName "${gw.cls}", not "${WAYPOINT_CLASS}"`
            : gw.programmed !== 'True'
              ? `Gateway ${key} is not Programmed (${gw.programmed === undefined ? 'no Programmed condition in its status yet' : `Programmed=${gw.programmed}`})`
              : !this.#readyServices.has(key)
                ? `waypoint Service ${key} has no ready endpoint`
                : '';
      use = { namespace: ns, name, hostname: `${ns}/${name}.${ns}.svc.${this.#clusterDomain}`, found, problem, users: new Set(), policies: new Set() };
      this.#uses.set(key, use);
    }
    return use;
  }
}

function takes(forType: string, user: string): boolean {
  if (user.startsWith('Service/')) return forType === 'service' || forType === 'all';
  if (user.startsWith('Pod/')) return forType === 'workload' || forType === 'all';
  return forType !== 'none';
}

/** The status of the Gateway's Programmed condition ("True", "False", "Unknown"), if it has one. */
function programmedStatus(g: KubeObject): string | undefined {
  const conds = isRecord(g.status) && Array.isArray(g.status.conditions) ? (g.status.conditions as unknown[]) : [];
  const c = conds.find((x): x is Record<string, unknown> => isRecord(x) && x.type === 'Programmed');
  return c && typeof c.status === 'string' ? c.status : undefined;
}

/** "ns/name" of the Services whose EndpointSlices hold a ready endpoint (ready unset counts as ready, as in discovery/v1). */
export function readyServices(slices: readonly k8s.V1EndpointSlice[]): Set<string> {
  const out = new Set<string>();
  for (const sl of slices) {
    const svc = sl.metadata?.labels?.['kubernetes.io/service-name'];
    if (!svc) continue;
    if ((sl.endpoints ?? []).some((e) => e.conditions?.ready !== false)) out.add(`${namespaceOf(sl)}/${svc}`);
  }
  return out;
}

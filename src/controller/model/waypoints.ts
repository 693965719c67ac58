// Which waypoint a pod, service or namespace uses (Istio's istio.io/use-waypoint, ours
// mesh.io/use-waypoint), and whether that waypoint exists.
//
// A label naming a Gateway that does not exist (or is not of class mesh-waypoint) still sets the
// waypoint on the resource, with the hostname the waypoint's Service would have. No Service has
// that hostname, so ztunnel cannot reach the waypoint and refuses the traffic: fail closed
// (DESIGN.md "Policy"), where Istio instead leaves the waypoint unset and lets traffic bypass it.
// The operator learns why from MeshModel.waypoints and from the status of the policies involved.
import type { GatewayAddress } from '../../xds/index.ts';
import { isRecord, nameOf, namespaceOf, uniqSorted, type Labels } from './kube.ts';
import {
  HBONE_PORT,
  LABEL_GATEWAY_NAME,
  LABEL_USE_WAYPOINT,
  LABEL_USE_WAYPOINT_NAMESPACE,
  WAYPOINT_CLASS,
  type KubeObject,
  type WaypointUse,
} from './types.ts';

/** A waypoint reference as resolved for one user. */
export interface WaypointRef {
  /** "namespace/name" of the Gateway. */
  key: string;
  address: GatewayAddress;
  found: boolean;
}

interface Use {
  namespace: string;
  name: string;
  hostname: string;
  problem: string;
  users: string[];
  policies: string[];
}

export class Waypoints {
  readonly #clusterDomain: string;
  /** "ns/name" → gatewayClassName of every Gateway. */
  readonly #gateways = new Map<string, string>();
  readonly #uses = new Map<string, Use>();

  constructor(gateways: KubeObject[], clusterDomain: string) {
    this.#clusterDomain = clusterDomain;
    for (const g of gateways) {
      const cls = isRecord(g.spec) && typeof g.spec.gatewayClassName === 'string' ? g.spec.gatewayClassName : '';
      this.#gateways.set(`${namespaceOf(g)}/${nameOf(g)}`, cls);
    }
  }

  /**
   * The waypoint of an object with `labels` in namespace `ns` whose labels are `nsLabels`: the
   * object's own label wins, "none" opts out of the namespace's waypoint (as in Istio).
   * `user` ("Pod/ns/name", "Service/ns/name", "Namespace/ns") is recorded for the report unless "".
   */
  resolve(user: string, ns: string, labels: Labels, nsLabels: Labels): WaypointRef | null {
    const own = labels[LABEL_USE_WAYPOINT];
    const from = own !== undefined ? labels : nsLabels;
    const name = from[LABEL_USE_WAYPOINT];
    if (name === undefined || name === '' || name === 'none') return null;
    const wns = from[LABEL_USE_WAYPOINT_NAMESPACE] || ns;
    // A waypoint's own pods never go through a waypoint (that would loop).
    if (user.startsWith('Pod/') && wns === ns && labels[LABEL_GATEWAY_NAME] === name && this.#isWaypoint(`${wns}/${name}`)) return null;
    const key = `${wns}/${name}`;
    const use = this.#use(wns, name);
    if (user) use.users.push(user);
    return { key, found: use.problem === '', address: { hostname: use.hostname, hboneMtlsPort: HBONE_PORT } };
  }

  /** Records a policy handed to a waypoint for enforcement. */
  addPolicy(key: string, policy: string): void {
    this.#uses.get(key)?.policies.push(policy);
  }

  problem(key: string): string {
    return this.#uses.get(key)?.problem ?? '';
  }

  report(): Map<string, WaypointUse> {
    const out = new Map<string, WaypointUse>();
    for (const key of [...this.#uses.keys()].sort()) {
      const u = this.#uses.get(key)!;
      out.set(key, { gateway: key, hostname: u.hostname, found: u.problem === '', problem: u.problem, users: uniqSorted(u.users), policies: uniqSorted(u.policies) });
    }
    return out;
  }

  #isWaypoint(key: string): boolean {
    return this.#gateways.get(key) === WAYPOINT_CLASS;
  }

  #use(ns: string, name: string): Use {
    const key = `${ns}/${name}`;
    let use = this.#uses.get(key);
    if (!use) {
      const cls = this.#gateways.get(key);
      const problem =
        cls === undefined
          ? `Gateway ${key} does not exist`
          : cls !== WAYPOINT_CLASS
            ? `Gateway ${key} has gatewayClassName "${cls}", not "${WAYPOINT_CLASS}"`
            : '';
      use = { namespace: ns, name, hostname: `${ns}/${name}.${ns}.svc.${this.#clusterDomain}`, problem, users: [], policies: [] };
      this.#uses.set(key, use);
    }
    return use;
  }
}

/** The Gateway a policy's targetRefs name (Istio: "targetRef is not intended for ztunnel"), or null. */
export function targetGateways(spec: Record<string, unknown>, ns: string): string[] | null {
  const refs: unknown[] = [];
  if (isRecord(spec.targetRef)) refs.push(spec.targetRef);
  if (Array.isArray(spec.targetRefs)) refs.push(...(spec.targetRefs as unknown[]));
  if (refs.length === 0) return null;
  return uniqSorted(refs.filter(isRecord).map((r) => `${typeof r.namespace === 'string' && r.namespace ? r.namespace : ns}/${String(r.name ?? '')}`));
}

// Where each AuthorizationPolicy is enforced — by ztunnel, by a waypoint, or fail-closed by
// ztunnel because no waypoint can take it — and the status that says so.
//
// A policy that ztunnel can enforce as written (L4 fields only, ALLOW or DENY) goes to ztunnel
// whatever the waypoints, as in Istio. A policy that needs a waypoint (HTTP fields, CUSTOM,
// AUDIT, or targetRefs) is handed to the waypoint of each selected workload that has one, and
// compiled fail-closed for ztunnel on the selected workloads that have none, or whose waypoint is
// missing or not ready (DESIGN.md "Policy"; waypoints.ts says what ready means).
// When only some selected workloads have a waypoint, the fail-closed form is emitted with scope
// WORKLOAD_SELECTOR and listed by the others only, so it never blocks traffic a waypoint delivers.
import type { Authorization, L7Authorization, Scope } from '../../xds/index.ts';
import { ztunnelAction, type ParsedPolicy } from './authz.ts';
import { compileL7Authorization, withWaypointNote } from './l7authz.ts';
import { uniqSorted, type Labels } from './kube.ts';
import { hostnameOf } from './services.ts';
import { ACCEPTED, condition, ENFORCED, policyStatus, REASON } from './status.ts';
import { LABEL_USE_WAYPOINT, LABEL_USE_WAYPOINT_NAMESPACE, type KubeObject, type PolicyStatus } from './types.ts';
import type { WaypointRef, Waypoints } from './waypoints.ts';
import type { PodWorkload } from './workloads.ts';

export interface PlacementInput {
  /** The workloads of namespace `ns` (every namespace when null) whose pod labels include all of `selector`. */
  select: (ns: string | null, selector: Labels) => PodWorkload[];
  rootNamespace: string;
  /** The namespace's own waypoint (label on the Namespace), if any. */
  nsWaypoint: (ns: string) => WaypointRef | null;
  /** The waypoint of Service "ns/name", if any (for targetRefs of kind Service). */
  serviceWaypoint: (ns: string, name: string) => WaypointRef | null;
  waypoints: Waypoints;
  clusterDomain: string;
}

/** What a waypoint enforces of the policy (l7authz.ts compiles it). */
export interface WaypointPlacement {
  /** L7Authorization.targets: "Gateway/ns/name" or "Service/ns/hostname". */
  targets: string[];
  /** "ns/name" of the waypoints that enforce it. */
  waypoints: string[];
}

export interface Placement {
  authorization: Authorization | null;
  /** uids of the workloads that list the authorization (WORKLOAD_SELECTOR scope). */
  attachTo: string[];
  status: PolicyStatus;
  /** Set when a waypoint enforces the policy (for some or all of what it selects). */
  waypoint?: WaypointPlacement;
}

const list = (xs: readonly (string | number)[]): string => xs.join(', ');

/** One AuthorizationPolicy as the model emits it: for ztunnel, for a waypoint, and its status. */
export interface PlacedPolicy {
  authorization: Authorization | null;
  attachTo: string[];
  l7Authorization: L7Authorization | null;
  status: PolicyStatus;
}

/** place() and, where a waypoint takes the policy, its L7 compilation and the status note about it. */
export function placePolicy(obj: KubeObject, p: ParsedPolicy, input: PlacementInput, trustDomain: string): PlacedPolicy {
  const r = place(p, input);
  let status = r.status;
  let l7Authorization: L7Authorization | null = null;
  if (r.waypoint && r.waypoint.targets.length > 0) {
    const l7 = compileL7Authorization(obj, p, r.waypoint.targets, trustDomain);
    l7Authorization = l7.authorization;
    status = withWaypointNote(r.status, p, l7, r.waypoint.waypoints);
  }
  return { authorization: r.authorization, attachTo: r.authorization ? r.attachTo : [], l7Authorization, status };
}

export function place(p: ParsedPolicy, input: PlacementInput): Placement {
  const gen = p.generation;
  const accepted = (msg = 'the policy is valid'): ReturnType<typeof condition> =>
    condition(ACCEPTED, true, REASON.accepted, p.warnings.length ? `${msg}; warning: ${p.warnings.join('; ')}` : msg, gen);
  const enforced = (ok: boolean, reason: string, msg: string): ReturnType<typeof condition> => condition(ENFORCED, ok, reason, msg, gen);

  if (p.errors.length > 0) {
    const shown = p.errors.slice(0, 5).map((e) => e.message);
    if (p.errors.length > 5) shown.push(`and ${p.errors.length - 5} more`);
    return {
      authorization: null,
      attachTo: [],
      status: policyStatus(
        condition(ACCEPTED, false, p.errors[0]!.reason, shown.join('; '), gen),
        enforced(false, REASON.invalid, 'not enforced anywhere until the spec is fixed; other policies are unaffected'),
      ),
    };
  }

  if (p.targetRefs) return placeTargeted(p, input, accepted());

  const selected = selectedWorkloads(p, input);
  const authorization = (scope: Scope): Authorization => ({
    name: p.name,
    namespace: p.namespace,
    scope,
    action: ztunnelAction(p),
    rules: p.rules,
    dryRun: p.dryRun,
    origin: 'AUTHORIZATION_POLICY',
  });
  if (!needsWaypoint(p)) {
    return {
      authorization: authorization(p.scope),
      attachTo: p.scope === 'WORKLOAD_SELECTOR' ? selected.map((w) => w.workload.uid) : [],
      status: policyStatus(accepted(), enforced(true, REASON.enforced, `enforced by ztunnel at L4 (${p.action}, scope ${p.scope})`)),
    };
  }

  const inMesh = selected.filter((w) => w.workload.tunnelProtocol === 'HBONE');
  // Only a ready waypoint takes a policy over: until a waypoint carries a workload's traffic, the
  // fail-closed L4 form stays in force for that workload (and ztunnel refuses traffic to it).
  const ready = (w: PodWorkload): boolean => w.waypoint !== null && w.waypoint.ready;
  const withWp = inMesh.filter(ready);
  const withoutWp = inMesh.filter((w) => !ready(w));
  const scopeWp = p.scope === 'GLOBAL' ? null : input.nsWaypoint(p.namespace);
  const wpKeys = uniqSorted([...inMesh.flatMap((w) => (w.waypoint ? [w.waypoint.key] : [])), ...(inMesh.length === 0 && scopeWp ? [scopeWp.key] : [])]);
  for (const k of wpKeys) input.waypoints.addPolicy(k, p.key);
  const readyKeys = wpKeys.filter((k) => !input.waypoints.problem(k));
  const unready = wpKeys.filter((k) => input.waypoints.problem(k));
  const unreadyNote = unready.length
    ? ` Waypoint ${list(unready)} cannot take traffic yet (${list(unready.map((k) => input.waypoints.problem(k)))}): until it can, ztunnel refuses all traffic to the workloads that use it, and enforces this policy fail-closed for them as below.`
    : '';
  // The Services of the workloads a ready waypoint serves: the waypoint enforces the policy on
  // requests for them. (A request addressed to a pod, not a Service, is not covered yet.)
  const waypoint: WaypointPlacement | undefined =
    withWp.length > 0
      ? { targets: uniqSorted(withWp.flatMap((w) => Object.keys(w.workload.services).map((s) => `Service/${s}`))), waypoints: uniqSorted(withWp.map((w) => w.waypoint!.key)) }
      : undefined;
  const what = p.action === 'CUSTOM' ? 'a CUSTOM (external authorizer) policy' : p.action === 'AUDIT' ? 'an AUDIT policy' : `HTTP fields (${list(p.l7Fields)})`;

  if (withoutWp.length === 0 && readyKeys.length > 0) {
    const msg = `${what} cannot be enforced by ztunnel; enforced by waypoint ${list(readyKeys)}, not by ztunnel.`;
    return { authorization: null, attachTo: [], status: policyStatus(accepted(), enforced(true, REASON.enforcedByWaypoint, msg)), ...(waypoint ? { waypoint } : {}) };
  }
  if (inMesh.length === 0 && unready.length > 0) {
    // Nothing selected yet; the namespace's waypoint would take it, and it is not ready.
    const msg = `${what} cannot be enforced by ztunnel and is meant for waypoint ${list(unready)}, which cannot take traffic yet (${list(unready.map((k) => input.waypoints.problem(k)))}); traffic to workloads that use it is refused until it can.`;
    return { authorization: null, attachTo: [], status: policyStatus(accepted(), enforced(false, REASON.waypointNotFound, msg)) };
  }

  const partly = `${readyKeys.length ? `Workloads using waypoint ${list(readyKeys)} have it enforced there.` : ''}${unreadyNote}${wpKeys.length ? ' For the others: ' : ''}`.trimStart();
  const fix = 'Label the workloads or their namespace mesh.io/use-waypoint=<waypoint> to enforce it as written.';
  if (p.action === 'AUDIT') {
    // AUDIT only marks requests for logging at L7; ignoring it blocks nothing and allows nothing.
    const msg = `${partly}an AUDIT policy only takes effect at a waypoint and no ready waypoint serves the selected workloads, so it has no effect. ${fix}`;
    return { authorization: null, attachTo: [], status: policyStatus(accepted(), enforced(false, REASON.auditWithoutWaypoint, msg)) };
  }
  let how: string;
  let reason: string = REASON.l7WithoutWaypoint;
  if (p.action === 'ALLOW') {
    const left = p.rules.length === 0 ? ' No rule is left, so it allows nothing: every connection to the selected workloads is denied.' : '';
    how = `ztunnel cannot see ${what} and no ready waypoint serves the selected workloads, so this ALLOW policy is enforced fail-closed at L4 without rule ${list(p.l7Rules)}: it allows less than written.${left}`;
  } else if (p.action === 'DENY') {
    how = `ztunnel cannot see ${what} and no ready waypoint serves the selected workloads, so this DENY policy is enforced fail-closed at L4 with rule ${list(p.l7Rules)} applied without those fields: it denies more than written.`;
  } else {
    reason = REASON.customWithoutWaypoint;
    const l7 = p.l7Fields.length ? ` (its HTTP fields ${list(p.l7Fields)} dropped)` : '';
    how = `a CUSTOM policy needs a waypoint to consult its provider and no ready waypoint serves the selected workloads, so ztunnel enforces it fail-closed as a DENY of the connections its rules match${l7}.`;
  }
  const mixed = withWp.length > 0;
  return {
    authorization: authorization(mixed ? 'WORKLOAD_SELECTOR' : p.scope),
    attachTo: mixed || p.scope === 'WORKLOAD_SELECTOR' ? selected.filter((w) => !ready(w)).map((w) => w.workload.uid) : [],
    status: policyStatus(accepted(), enforced(false, unready.length ? REASON.waypointNotFound : reason, `${partly}${how} ${fix}`)),
    ...(waypoint ? { waypoint } : {}),
  };
}

/** A policy ztunnel cannot enforce as written: a ready waypoint must take it, or it fails closed. */
export function needsWaypoint(p: ParsedPolicy): boolean {
  return p.l7Fields.length > 0 || p.action === 'CUSTOM' || p.action === 'AUDIT';
}

/** The workloads a policy applies to by its scope; a selector in the root namespace applies in every namespace (Istio). */
function selectedWorkloads(p: ParsedPolicy, input: PlacementInput): PodWorkload[] {
  if (p.scope === 'GLOBAL') return input.select(null, {});
  const ns = p.namespace === input.rootNamespace ? null : p.namespace;
  return input.select(ns, p.scope === 'NAMESPACE' ? {} : (p.selector ?? {}));
}

/** targetRefs: the policy is for the waypoint named (or the waypoint of the Service named); ztunnel never sees it (istiod: "TargetRef is not intended for ztunnel"). */
function placeTargeted(p: ParsedPolicy, input: PlacementInput, accepted: ReturnType<typeof condition>): Placement {
  const keys: string[] = [];
  const problems: string[] = [];
  const targets: string[] = [];
  for (const r of p.targetRefs ?? []) {
    if (r.kind === 'Gateway') {
      targets.push(`Gateway/${r.namespace}/${r.name}`);
      const ref = input.waypoints.resolve('', r.namespace, { [LABEL_USE_WAYPOINT]: r.name, [LABEL_USE_WAYPOINT_NAMESPACE]: r.namespace }, {});
      if (ref) keys.push(ref.key);
    } else {
      targets.push(`Service/${r.namespace}/${hostnameOf(r.name, r.namespace, input.clusterDomain)}`);
      const ref = input.serviceWaypoint(r.namespace, r.name);
      if (ref) keys.push(ref.key);
      else problems.push(`Service ${r.namespace}/${r.name} has no waypoint (label it mesh.io/use-waypoint=<waypoint>)`);
    }
  }
  const wps = uniqSorted(keys);
  for (const k of wps) {
    input.waypoints.addPolicy(k, p.key);
    const why = input.waypoints.problem(k);
    if (why) problems.push(why);
  }
  const msg = problems.length
    ? `not enforced: ${problems.join('; ')}`
    : `attached by targetRefs to waypoint ${list(wps)}, which enforces it; ztunnel does not`;
  return {
    authorization: null,
    attachTo: [],
    status: { conditions: [accepted, condition(ENFORCED, problems.length === 0, problems.length ? REASON.waypointNotFound : REASON.enforcedByWaypoint, msg, p.generation)] },
    // Sent even while the waypoint cannot take traffic: it enforces the policy from its first request.
    waypoint: { targets: uniqSorted(targets), waypoints: wps },
  };
}

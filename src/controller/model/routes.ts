// Gateway API v1 HTTPRoutes and GRPCRoutes attached to Services (GAMMA: parentRefs of group ""
// and kind Service) → one Route per Service for the waypoints (src/xds/routes.ts), plus the
// status of each route (status.parents, one entry per Service parentRef). parentRefs to Gateways
// belong to whichever controller runs those Gateways: we neither read nor report them.
//
// Follows the spec (gateway-api/apis/v1/httproute_types.go, grpcroute_types.go):
// - Rules are split into one RouteRule per match and ordered by match precedence across every
//   route of the Service (HTTPRouteRule: exact path, then longest prefix, then method, then most
//   header matches, then most query matches; ties: oldest route, then namespace/name, then rule
//   order). Regular-expression paths (implementation-specific in the spec) rank between exact and
//   prefix paths, so that a catch-all "/" never hides them.
// - A route with anything we cannot honour (an unsupported filter such as ExtensionRef or CORS, a
//   malformed duration or regular expression, a backendRef without a port) is Accepted=False and
//   contributes nothing; every other route keeps serving.
// - A backendRef that cannot be resolved (no such Service, not a Service, another namespace
//   without a ReferenceGrant) makes ResolvedRefs=False and stays in the rule as a backend with
//   service '': the waypoint answers 500 for its share of requests (HTTPBackendRef: "requests
//   that would have been sent to that backend MUST receive a 500 status code").
// Pure: no clock, no I/O; every output is sorted.
import type * as k8s from '@kubernetes/client-node';
import type { Route, RouteMatch, RouteRule } from '../../xds/index.ts';
import { compare, isRecord, nameOf, namespaceOf, olderFirst, sortedMap } from './kube.ts';
import { compileRule, GATEWAY_GROUP, ReferenceGrants, ROUTE_REASON, type RouteKind, type RouteProblems, type RuleContext } from './route-rules.ts';
import { hostnameOf } from './services.ts';
import { condition } from './status.ts';
import type { Condition, KubeObject } from './types.ts';
import { compileTrafficPolicies, type TrafficPolicyStatus } from './traffic-policy.ts';

export { GATEWAY_GROUP, ROUTE_REASON };

export const ROUTE_CONTROLLER = 'mesh.io/waypoint-controller';

export interface ParentRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

/** One entry of a route's status.parents (RouteParentStatus). */
export interface RouteParentStatus {
  parentRef: ParentRef;
  controllerName: string;
  conditions: Condition[];
}

/** What we own of a route's status: our entries of status.parents. */
export interface RouteStatus {
  parents: RouteParentStatus[];
}

export interface RoutesInput {
  httpRoutes: KubeObject[];
  grpcRoutes: KubeObject[];
  services: k8s.V1Service[];
  /** gateway.networking.k8s.io/v1beta1 */
  referenceGrants: KubeObject[];
  /** networking.mesh.io/v1alpha1 */
  trafficPolicies: KubeObject[];
}

export interface RoutesOutput {
  /** By routeName() ("ns/hostname"): every Service with an accepted route or a TrafficPolicy. */
  routes: Map<string, Route>;
  /** By "HTTPRoute/ns/name" or "GRPCRoute/ns/name": every route with a Service parentRef. */
  routeStatus: Map<string, RouteStatus>;
  /** By "TrafficPolicy/ns/name": every TrafficPolicy. */
  trafficPolicyStatus: Map<string, TrafficPolicyStatus>;
}

type Kind = RouteKind;

/** One rule of one route for one parent, before ordering. */
interface Candidate {
  rule: RouteRule;
  route: KubeObject;
  ruleIndex: number;
  matchIndex: number;
}

export function buildRoutes(input: RoutesInput, clusterDomain: string): RoutesOutput {
  const services = new Map<string, k8s.V1Service>();
  for (const s of input.services) services.set(`${namespaceOf(s)}/${nameOf(s)}`, s);
  const grants = new ReferenceGrants(input.referenceGrants);
  const ctx: Ctx = { services, grants, clusterDomain };

  const candidates = new Map<string, Candidate[]>();
  const routeStatus = new Map<string, RouteStatus>();
  const routes = [...input.httpRoutes.map((r) => ['HTTPRoute', r] as const), ...input.grpcRoutes.map((r) => ['GRPCRoute', r] as const)];
  for (const [kind, obj] of routes) {
    const result = compileRoute(kind, obj, ctx);
    if (!result) continue;
    routeStatus.set(`${kind}/${namespaceOf(obj)}/${nameOf(obj)}`, { parents: result.parents });
    for (const [svcKey, rules] of result.rules) {
      const list = candidates.get(svcKey) ?? [];
      list.push(...rules);
      candidates.set(svcKey, list);
    }
  }

  const tp = compileTrafficPolicies(input.trafficPolicies, services);
  const out = new Map<string, Route>();
  for (const svcKey of new Set([...candidates.keys(), ...tp.resilience.keys()])) {
    const svc = services.get(svcKey)!;
    const ns = namespaceOf(svc);
    const hostname = hostnameOf(nameOf(svc), ns, clusterDomain);
    const rules = (candidates.get(svcKey) ?? []).sort(precedence).map((c) => c.rule);
    out.set(`${ns}/${hostname}`, { service: `${ns}/${hostname}`, namespace: ns, hostname, rules, resilience: tp.resilience.get(svcKey) ?? null });
  }
  return { routes: sortedMap(out), routeStatus: sortedMap(routeStatus), trafficPolicyStatus: tp.status };
}

// ---- precedence ---------------------------------------------------------------------------

/** Larger is more specific. GRPC method matches rank as the paths they stand for (/service/method). */
function pathRank(m: RouteMatch): [number, number] {
  if (m.grpc) {
    const exact = m.grpc.type === 'EXACT';
    if (exact && m.grpc.service && m.grpc.method) return [3, m.grpc.service.length + m.grpc.method.length + 2];
    if (exact && m.grpc.service) return [1, m.grpc.service.length + 2];
    return [2, m.grpc.service.length + m.grpc.method.length];
  }
  if (!m.path) return [1, 1];
  if (m.path.type === 'EXACT') return [3, m.path.value.length];
  if (m.path.type === 'REGULAR_EXPRESSION') return [2, m.path.value.length];
  return [1, m.path.value.length];
}

function precedence(a: Candidate, b: Candidate): number {
  const ma = a.rule.matches[0]!;
  const mb = b.rule.matches[0]!;
  const [ta, la] = pathRank(ma);
  const [tb, lb] = pathRank(mb);
  return (
    tb - ta ||
    lb - la ||
    Number(mb.method !== '') - Number(ma.method !== '') ||
    mb.headers.length - ma.headers.length ||
    mb.queryParams.length - ma.queryParams.length ||
    olderFirst(a.route, b.route) ||
    compare(a.rule.kind, b.rule.kind) ||
    a.ruleIndex - b.ruleIndex ||
    a.matchIndex - b.matchIndex ||
    a.rule.port - b.rule.port
  );
}

// ---- one route ----------------------------------------------------------------------------

type Ctx = RuleContext;

interface ServiceParent {
  ref: ParentRef;
  /** "ns/name" of the Service. */
  key: string;
  /** The parentRef's port (or its sectionName's), 0 = every port; null when the Service has no such port. */
  port: number | null;
}

/** null when the route has no Service parentRef (it is not ours). */
function compileRoute(kind: Kind, obj: KubeObject, ctx: Ctx): { parents: RouteParentStatus[]; rules: Map<string, Candidate[]> } | null {
  const ns = namespaceOf(obj);
  const spec = isRecord(obj.spec) ? obj.spec : {};
  const parents = serviceParents(spec.parentRefs, ns, ctx);
  if (parents.length === 0) return null;
  const gen = obj.metadata?.generation ?? 0;
  const problems: RouteProblems = { invalid: [], unresolved: [] };
  const rawRules = Array.isArray(spec.rules) ? (spec.rules as unknown[]) : [];
  const compiled = rawRules.map((r, i) => compileRule(kind, obj, r, i, problems, ctx));

  const rules = new Map<string, Candidate[]>();
  const statuses: RouteParentStatus[] = [];
  for (const p of parents) {
    let accepted: Condition;
    const svc = ctx.services.get(p.key);
    if (!svc || svc.spec?.type === 'ExternalName') {
      accepted = condition('Accepted', false, ROUTE_REASON.noMatchingParent, `Service ${p.key} ${svc ? 'is of type ExternalName, which has no waypoint' : 'does not exist'}`, gen);
    } else if (p.port === null) {
      accepted = condition('Accepted', false, ROUTE_REASON.noMatchingParent, `Service ${p.key} has no port ${p.ref.sectionName ?? p.ref.port}`, gen);
    } else if (p.key.split('/')[0] !== ns) {
      // GAMMA "consumer routes" (a route for a Service of another namespace, applied to the
      // route's own namespace's clients only) need the client's namespace in the waypoint.
      accepted = condition('Accepted', false, ROUTE_REASON.unsupportedValue, `a parentRef to Service ${p.key} in another namespace (a consumer route) is not supported; create the route in namespace ${p.key.split('/')[0]}`, gen);
    } else if (problems.invalid.length > 0) {
      const shown = problems.invalid.slice(0, 5);
      if (problems.invalid.length > 5) shown.push(`and ${problems.invalid.length - 5} more`);
      accepted = condition('Accepted', false, ROUTE_REASON.unsupportedValue, `${shown.join('; ')}; the route is not served, other routes are unaffected`, gen);
    } else {
      accepted = condition('Accepted', true, ROUTE_REASON.accepted, `attached to Service ${p.key}`, gen);
      const list = rules.get(p.key) ?? [];
      for (const [ruleIndex, r] of compiled.entries()) {
        if (!r) continue;
        r.matches.forEach((m, matchIndex) => list.push({ route: obj, ruleIndex, matchIndex, rule: { ...r, port: p.port!, matches: [m] } }));
      }
      rules.set(p.key, list);
    }
    const u = problems.unresolved;
    const resolved =
      u.length === 0
        ? condition('ResolvedRefs', true, ROUTE_REASON.resolvedRefs, 'every backendRef resolved', gen)
        : condition('ResolvedRefs', false, u[0]!.reason, `${u.map((x) => x.message).join('; ')} (a backend that cannot be resolved gets its share of requests answered 500; a mirror to one mirrors nothing)`, gen);
    statuses.push({ parentRef: p.ref, controllerName: ROUTE_CONTROLLER, conditions: [accepted, resolved] });
  }
  return { parents: statuses, rules };
}

function serviceParents(raw: unknown, ns: string, ctx: Ctx): ServiceParent[] {
  const out: ServiceParent[] = [];
  for (const r of Array.isArray(raw) ? (raw as unknown[]) : []) {
    if (!isRecord(r) || typeof r.name !== 'string') continue;
    // The CRD defaults group to gateway.networking.k8s.io and kind to Gateway.
    if ((r.group ?? GATEWAY_GROUP) !== '' || (r.kind ?? 'Gateway') !== 'Service') continue;
    const ref: ParentRef = { group: '', kind: 'Service', name: r.name };
    if (typeof r.namespace === 'string') ref.namespace = r.namespace;
    if (typeof r.sectionName === 'string') ref.sectionName = r.sectionName;
    if (typeof r.port === 'number') ref.port = r.port;
    const key = `${ref.namespace ?? ns}/${r.name}`;
    const svcPorts = ctx.services.get(key)?.spec?.ports ?? [];
    let port: number | null = 0;
    if (ref.port !== undefined) port = svcPorts.some((p) => p.port === ref.port) ? ref.port : null;
    if (ref.sectionName !== undefined) {
      const p = svcPorts.find((x) => x.name === ref.sectionName);
      port = p && (ref.port === undefined || p.port === ref.port) ? p.port : null;
    }
    out.push({ ref, key, port });
  }
  return out;
}

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
import type {
  Backend,
  GrpcMethodMatch,
  HeaderModifier,
  PathMatch,
  PathModifier,
  Route,
  RouteFilter,
  RouteMatch,
  RouteRule,
  Retry,
  ValueMatch,
} from '../../xds/index.ts';
import { compare, isRecord, nameOf, namespaceOf, olderFirst, parseDuration, sortedMap } from './kube.ts';
import { hostnameOf } from './services.ts';
import { condition } from './status.ts';
import type { Condition, KubeObject } from './types.ts';
import { compileTrafficPolicies, type TrafficPolicyStatus } from './traffic-policy.ts';

export const ROUTE_CONTROLLER = 'mesh.io/waypoint-controller';
export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** Gateway API's RouteConditionReason values we use. */
export const ROUTE_REASON = Object.freeze({
  accepted: 'Accepted',
  unsupportedValue: 'UnsupportedValue',
  noMatchingParent: 'NoMatchingParent',
  resolvedRefs: 'ResolvedRefs',
  backendNotFound: 'BackendNotFound',
  invalidKind: 'InvalidKind',
  refNotPermitted: 'RefNotPermitted',
});

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

type Kind = 'HTTPRoute' | 'GRPCRoute';

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

interface Ctx {
  services: Map<string, k8s.V1Service>;
  grants: ReferenceGrants;
  clusterDomain: string;
}

interface Unresolved {
  reason: string;
  message: string;
}

interface RouteProblems {
  /** Accepted=False: the route contributes nothing. */
  invalid: string[];
  /** ResolvedRefs=False: those backends answer 500. */
  unresolved: Unresolved[];
}

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
        : condition('ResolvedRefs', false, u[0]!.reason, `${u.map((x) => x.message).join('; ')}; requests for those backends are answered 500`, gen);
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

const HTTP_FILTERS = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier', 'URLRewrite', 'RequestRedirect', 'RequestMirror']);
const GRPC_FILTERS = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror']);

/** A rule with its matches unsplit and port 0; null when invalid (the problem is recorded). */
function compileRule(kind: Kind, route: KubeObject, raw: unknown, index: number, problems: RouteProblems, ctx: Ctx): RouteRule | null {
  const at = `spec.rules[${index}]`;
  const before = problems.invalid.length;
  const bad = (msg: string): void => void problems.invalid.push(`${at}${msg}`);
  const r = isRecord(raw) ? raw : {};
  const ns = namespaceOf(route);

  const rawMatches = Array.isArray(r.matches) && r.matches.length > 0 ? (r.matches as unknown[]) : [{}];
  const matches = rawMatches.map((m, i) => (kind === 'HTTPRoute' ? httpMatch(m, `.matches[${i}]`, bad) : grpcMatch(m, `.matches[${i}]`, bad)));

  const filters: RouteFilter[] = [];
  const allowed = kind === 'HTTPRoute' ? HTTP_FILTERS : GRPC_FILTERS;
  const rawFilters = Array.isArray(r.filters) ? (r.filters as unknown[]) : [];
  rawFilters.forEach((f, i) => {
    const type = isRecord(f) && typeof f.type === 'string' ? f.type : '';
    if (!allowed.has(type)) return bad(`.filters[${i}]: filter type ${JSON.stringify(type)} is not supported (supported: ${[...allowed].join(', ')})`);
    const out = filter(type, f as Record<string, unknown>, `.filters[${i}]`, bad, (ref, where) => backend(kind, ref, ns, `${at}${where}`, problems, ctx));
    if (out) filters.push(out);
  });
  const types = filters.map((f) => f.type);
  if (types.includes('URL_REWRITE') && types.includes('REQUEST_REDIRECT')) bad('.filters: URLRewrite and RequestRedirect cannot be used together');
  const prefixRewrite = filters.some((f) => f.urlRewrite?.path?.type === 'REPLACE_PREFIX_MATCH' || f.requestRedirect?.path?.type === 'REPLACE_PREFIX_MATCH');
  if (prefixRewrite && matches.some((m) => m.path?.type !== 'PATH_PREFIX')) bad('.filters: ReplacePrefixMatch needs every match of the rule to be a PathPrefix match');

  const backends: Backend[] = [];
  const rawBackends = Array.isArray(r.backendRefs) ? (r.backendRefs as unknown[]) : [];
  rawBackends.forEach((b, i) => {
    const where = `.backendRefs[${i}]`;
    if (isRecord(b) && Array.isArray(b.filters) && b.filters.length > 0) bad(`${where}.filters: filters on a backendRef are not supported; put them on the rule`);
    const out = backend(kind, b, ns, `${at}${where}`, problems, ctx, bad);
    if (out) backends.push(out);
  });

  const timeouts = { requestMs: 0, backendRequestMs: 0 };
  let retry: Retry | null = null;
  if (kind === 'HTTPRoute') {
    const t = isRecord(r.timeouts) ? r.timeouts : {};
    timeouts.requestMs = durationField(t.request, '.timeouts.request', bad);
    timeouts.backendRequestMs = durationField(t.backendRequest, '.timeouts.backendRequest', bad);
    if (timeouts.requestMs > 0 && timeouts.backendRequestMs > timeouts.requestMs) bad('.timeouts: backendRequest must not be longer than request');
    retry = compileRetry(r.retry, bad);
  }
  if (problems.invalid.length > before) return null;
  return { origin: `${kind}/${ns}/${nameOf(route)}/${index}`, kind: kind === 'HTTPRoute' ? 'HTTP' : 'GRPC', port: 0, matches, filters, backends, timeouts, retry };
}

type Bad = (msg: string) => void;

const emptyMatch = (): RouteMatch => ({ path: null, method: '', headers: [], queryParams: [], grpc: null });

function regexOk(value: string, where: string, bad: Bad): void {
  try {
    new RegExp(value);
  } catch (e) {
    bad(`${where}: ${JSON.stringify(value)} is not a valid regular expression (${(e as Error).message})`);
  }
}

function valueMatches(raw: unknown, where: string, bad: Bad, lower: boolean): ValueMatch[] {
  const out: ValueMatch[] = [];
  (Array.isArray(raw) ? (raw as unknown[]) : []).forEach((h, i) => {
    const x = isRecord(h) ? h : {};
    const type = x.type ?? 'Exact';
    const name = typeof x.name === 'string' ? x.name : '';
    const value = typeof x.value === 'string' ? x.value : '';
    if (type !== 'Exact' && type !== 'RegularExpression') return bad(`${where}[${i}].type: ${JSON.stringify(type)} is not supported (Exact, RegularExpression)`);
    if (!name) return bad(`${where}[${i}].name is required`);
    if (type === 'RegularExpression') regexOk(value, `${where}[${i}].value`, bad);
    out.push({ type: type === 'Exact' ? 'EXACT' : 'REGULAR_EXPRESSION', name: lower ? name.toLowerCase() : name, value });
  });
  return out;
}

function httpMatch(raw: unknown, where: string, bad: Bad): RouteMatch {
  const m = isRecord(raw) ? raw : {};
  const p = isRecord(m.path) ? m.path : {};
  const type = p.type ?? 'PathPrefix';
  const value = typeof p.value === 'string' ? p.value : '/';
  let path: PathMatch = { type: 'PATH_PREFIX', value: '/' };
  if (type === 'Exact' || type === 'PathPrefix') {
    if (!value.startsWith('/')) bad(`${where}.path.value: ${JSON.stringify(value)} must start with "/"`);
    path = { type: type === 'Exact' ? 'EXACT' : 'PATH_PREFIX', value };
  } else if (type === 'RegularExpression') {
    regexOk(value, `${where}.path.value`, bad);
    path = { type: 'REGULAR_EXPRESSION', value };
  } else bad(`${where}.path.type: ${JSON.stringify(type)} is not supported (Exact, PathPrefix, RegularExpression)`);
  return {
    path,
    method: typeof m.method === 'string' ? m.method.toUpperCase() : '',
    headers: valueMatches(m.headers, `${where}.headers`, bad, true),
    queryParams: valueMatches(m.queryParams, `${where}.queryParams`, bad, false),
    grpc: null,
  };
}

function grpcMatch(raw: unknown, where: string, bad: Bad): RouteMatch {
  const m = isRecord(raw) ? raw : {};
  const out = emptyMatch();
  out.headers = valueMatches(m.headers, `${where}.headers`, bad, true);
  if (isRecord(m.method)) {
    const type = m.method.type ?? 'Exact';
    const service = typeof m.method.service === 'string' ? m.method.service : '';
    const method = typeof m.method.method === 'string' ? m.method.method : '';
    if (type !== 'Exact' && type !== 'RegularExpression') bad(`${where}.method.type: ${JSON.stringify(type)} is not supported (Exact, RegularExpression)`);
    if (!service && !method) bad(`${where}.method needs a service or a method`);
    if (type === 'RegularExpression') for (const v of [service, method]) if (v) regexOk(v, `${where}.method`, bad);
    const grpc: GrpcMethodMatch = { type: type === 'RegularExpression' ? 'REGULAR_EXPRESSION' : 'EXACT', service, method };
    out.grpc = grpc;
  }
  return out;
}

function headerModifier(raw: unknown, where: string, bad: Bad): HeaderModifier | null {
  if (!isRecord(raw)) return bad(`${where} is required by its filter type`), null;
  const headers = (v: unknown) =>
    (Array.isArray(v) ? (v as unknown[]) : []).flatMap((h) => (isRecord(h) && typeof h.name === 'string' ? [{ name: h.name.toLowerCase(), value: typeof h.value === 'string' ? h.value : '' }] : []));
  const remove = (Array.isArray(raw.remove) ? (raw.remove as unknown[]) : []).filter((x): x is string => typeof x === 'string').map((x) => x.toLowerCase());
  return { set: headers(raw.set), add: headers(raw.add), remove };
}

function pathModifier(raw: unknown, where: string, bad: Bad): PathModifier | null {
  if (!isRecord(raw)) return null;
  if (raw.type === 'ReplaceFullPath' && typeof raw.replaceFullPath === 'string') return { type: 'REPLACE_FULL_PATH', value: raw.replaceFullPath };
  if (raw.type === 'ReplacePrefixMatch' && typeof raw.replacePrefixMatch === 'string') return { type: 'REPLACE_PREFIX_MATCH', value: raw.replacePrefixMatch };
  bad(`${where}: type ${JSON.stringify(raw.type)} needs its value (replaceFullPath or replacePrefixMatch)`);
  return null;
}

const NO_FILTER = { requestHeaderModifier: null, responseHeaderModifier: null, urlRewrite: null, requestRedirect: null, requestMirror: null };

function filter(type: string, f: Record<string, unknown>, where: string, bad: Bad, resolve: (ref: unknown, where: string) => Backend | null): RouteFilter | null {
  const before = { n: 0 };
  const mark: Bad = (m) => {
    before.n++;
    bad(m);
  };
  switch (type) {
    case 'RequestHeaderModifier': {
      const h = headerModifier(f.requestHeaderModifier, `${where}.requestHeaderModifier`, mark);
      return h && { ...NO_FILTER, type: 'REQUEST_HEADER_MODIFIER', requestHeaderModifier: h };
    }
    case 'ResponseHeaderModifier': {
      const h = headerModifier(f.responseHeaderModifier, `${where}.responseHeaderModifier`, mark);
      return h && { ...NO_FILTER, type: 'RESPONSE_HEADER_MODIFIER', responseHeaderModifier: h };
    }
    case 'URLRewrite': {
      const u = isRecord(f.urlRewrite) ? f.urlRewrite : {};
      const path = pathModifier(u.path, `${where}.urlRewrite.path`, mark);
      return before.n ? null : { ...NO_FILTER, type: 'URL_REWRITE', urlRewrite: { hostname: typeof u.hostname === 'string' ? u.hostname : '', path } };
    }
    case 'RequestRedirect': {
      const r = isRecord(f.requestRedirect) ? f.requestRedirect : {};
      const statusCode = r.statusCode ?? 302;
      if (statusCode !== 301 && statusCode !== 302) mark(`${where}.requestRedirect.statusCode: ${JSON.stringify(statusCode)} is not supported (301, 302)`);
      const scheme = typeof r.scheme === 'string' ? r.scheme : '';
      if (scheme !== '' && scheme !== 'http' && scheme !== 'https') mark(`${where}.requestRedirect.scheme: ${JSON.stringify(scheme)} is not supported (http, https)`);
      const path = pathModifier(r.path, `${where}.requestRedirect.path`, mark);
      if (before.n) return null;
      return {
        ...NO_FILTER,
        type: 'REQUEST_REDIRECT',
        requestRedirect: { scheme, hostname: typeof r.hostname === 'string' ? r.hostname : '', path, port: typeof r.port === 'number' ? r.port : 0, statusCode: statusCode as number },
      };
    }
    case 'RequestMirror': {
      const m = isRecord(f.requestMirror) ? f.requestMirror : {};
      let percent = 100;
      if (typeof m.percent === 'number') percent = m.percent;
      else if (isRecord(m.fraction) && typeof m.fraction.numerator === 'number') {
        const d = typeof m.fraction.denominator === 'number' ? m.fraction.denominator : 100;
        if (d <= 0 || m.fraction.numerator > d) mark(`${where}.requestMirror.fraction: numerator must be between 0 and the denominator (> 0)`);
        else percent = (m.fraction.numerator / d) * 100;
      }
      if (percent < 0 || percent > 100) mark(`${where}.requestMirror.percent: ${percent} is not between 0 and 100`);
      const b = resolve(m.backendRef, `${where}.requestMirror.backendRef`);
      if (before.n) return null;
      // A mirror whose backend cannot be resolved mirrors nothing (ResolvedRefs says why); the
      // client's request is unaffected either way.
      if (!b || b.service === '') return null;
      return { ...NO_FILTER, type: 'REQUEST_MIRROR', requestMirror: { backend: { ...b, weight: 1 }, percent } };
    }
  }
  return null;
}

/**
 * A backendRef resolved to a Service; service '' when it cannot be (recorded as unresolved).
 * null when the ref itself is invalid (recorded as invalid when `bad` is given).
 */
function backend(kind: Kind, raw: unknown, routeNs: string, where: string, problems: RouteProblems, ctx: Ctx, bad?: Bad): Backend | null {
  const b = isRecord(raw) ? raw : {};
  const invalid = (m: string): null => {
    if (bad) bad(`${where.replace(/^spec\.rules\[\d+\]/, '')}${m}`);
    else problems.invalid.push(`${where}${m}`);
    return null;
  };
  if (typeof b.name !== 'string' || !b.name) return invalid('.name is required');
  const weight = b.weight ?? 1;
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > 1_000_000) return invalid(`.weight: ${JSON.stringify(weight)} is not an integer between 0 and 1000000`);
  const group = typeof b.group === 'string' ? b.group : '';
  const refKind = typeof b.kind === 'string' ? b.kind : 'Service';
  const ns = typeof b.namespace === 'string' && b.namespace ? b.namespace : routeNs;
  const port = typeof b.port === 'number' ? b.port : 0;
  const unresolved = (reason: string, message: string): Backend => {
    problems.unresolved.push({ reason, message: `${where}: ${message}` });
    return { service: '', port, weight };
  };
  if (group !== '' || refKind !== 'Service') return unresolved(ROUTE_REASON.invalidKind, `${group ? `${group}/` : ''}${refKind} ${b.name} is not a Service (only Services are supported backends)`);
  if (port === 0) return invalid('.port is required for a Service backend');
  if (ns !== routeNs && !ctx.grants.permits(kind, routeNs, ns, b.name)) {
    return unresolved(ROUTE_REASON.refNotPermitted, `Service ${ns}/${b.name} is in another namespace and no ReferenceGrant in ${ns} allows ${kind}s from ${routeNs} to refer to it`);
  }
  const svc = ctx.services.get(`${ns}/${b.name}`);
  if (!svc) return unresolved(ROUTE_REASON.backendNotFound, `Service ${ns}/${b.name} does not exist`);
  return { service: `${ns}/${hostnameOf(b.name, ns, ctx.clusterDomain)}`, port, weight };
}

// ---- durations, retries -------------------------------------------------------------------

function durationField(v: unknown, where: string, bad: Bad): number {
  if (v === undefined || v === null) return 0;
  const ms = typeof v === 'string' ? parseDuration(v) : null;
  if (ms === null) {
    bad(`${where}: ${JSON.stringify(v)} is not a duration (e.g. "500ms", "2s", "1m30s")`);
    return 0;
  }
  return ms;
}

/** Istio's default retry policy: 2 attempts, on 503 (and on connection failures, which are always retried). */
const DEFAULT_RETRY_ATTEMPTS = 2;
const DEFAULT_RETRY_CODES = [503];

function compileRetry(raw: unknown, bad: Bad): Retry | null {
  if (raw === undefined || raw === null) return null;
  if (!isRecord(raw)) return bad('.retry must be an object'), null;
  const attempts = raw.attempts ?? DEFAULT_RETRY_ATTEMPTS;
  if (typeof attempts !== 'number' || !Number.isInteger(attempts) || attempts < 0) return bad(`.retry.attempts: ${JSON.stringify(attempts)} is not a non-negative integer`), null;
  const codes = raw.codes === undefined ? DEFAULT_RETRY_CODES : raw.codes;
  if (!Array.isArray(codes) || codes.some((c) => typeof c !== 'number' || !Number.isInteger(c) || c < 400 || c > 599)) {
    return bad(`.retry.codes: ${JSON.stringify(codes)} must be HTTP status codes between 400 and 599`), null;
  }
  const backoffMs = durationField(raw.backoff, '.retry.backoff', bad);
  if (attempts === 0) return null;
  return { attempts, codes: [...new Set(codes as number[])].sort((a, b) => a - b), backoffMs };
}

// ---- ReferenceGrants ----------------------------------------------------------------------

/** gateway.networking.k8s.io ReferenceGrants: which routes of which namespace may refer to which Services. */
class ReferenceGrants {
  /** "toNs\0fromKind\0fromNs" → Service names allowed ('' = any). */
  readonly #allowed = new Map<string, Set<string>>();

  constructor(grants: KubeObject[]) {
    for (const g of grants) {
      const spec = isRecord(g.spec) ? g.spec : {};
      const from = Array.isArray(spec.from) ? (spec.from as unknown[]).filter(isRecord) : [];
      const to = Array.isArray(spec.to) ? (spec.to as unknown[]).filter(isRecord) : [];
      const names = to.filter((t) => (t.group ?? '') === '' && t.kind === 'Service').map((t) => (typeof t.name === 'string' ? t.name : ''));
      if (names.length === 0) continue;
      for (const f of from) {
        if (f.group !== GATEWAY_GROUP || typeof f.kind !== 'string' || typeof f.namespace !== 'string') continue;
        const key = `${namespaceOf(g)}\0${f.kind}\0${f.namespace}`;
        const set = this.#allowed.get(key) ?? new Set<string>();
        for (const n of names) set.add(n);
        this.#allowed.set(key, set);
      }
    }
  }

  permits(fromKind: string, fromNs: string, toNs: string, name: string): boolean {
    const set = this.#allowed.get(`${toNs}\0${fromKind}\0${fromNs}`);
    return set !== undefined && (set.has('') || set.has(name));
  }
}

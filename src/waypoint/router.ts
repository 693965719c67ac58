// Which rule of a Service's Route a request takes and which backend it goes to, with the
// semantics of the Gateway API's HTTPRoute and GRPCRoute (gateway-api/apis/v1/httproute_types.go,
// grpcroute_types.go). The controller has already ordered the rules by precedence, so the first
// rule with a matching match wins (Route.rules).
import type { Backend, GrpcMethodMatch, PathMatch, Route, RouteMatch, RouteRule, ValueMatch } from '../xds/routes.ts';

/** The parts of a request that routing looks at. */
export interface RoutableRequest {
  /** Upper case. */
  method: string;
  /** Path and query, as received. */
  path: string;
  /** Lower-case names. */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** The Service port the client dialled. */
  port: number;
}

export interface RouteDecision {
  rule: RouteRule;
  /** The match that selected the rule; null for a rule without matches (every request). */
  match: RouteMatch | null;
}

/**
 * The first rule of `route` that applies to the request's port and has a match it satisfies;
 * undefined when none does (the request then goes to the Service itself).
 */
export function selectRule(route: Route | undefined, req: RoutableRequest): RouteDecision | undefined {
  if (!route) return undefined;
  const { pathname, query } = splitTarget(req.path);
  let params: URLSearchParams | undefined;
  const search = (): URLSearchParams => (params ??= new URLSearchParams(query));
  for (const rule of route.rules) {
    if (rule.port !== 0 && rule.port !== req.port) continue;
    if (rule.matches.length === 0) return { rule, match: null };
    for (const m of rule.matches) {
      if (matches(m, req, pathname, search)) return { rule, match: m };
    }
  }
  return undefined;
}

function matches(m: RouteMatch, req: RoutableRequest, pathname: string, search: () => URLSearchParams): boolean {
  if (m.method && m.method !== req.method) return false;
  if (m.path && !pathMatches(m.path, pathname)) return false;
  if (m.grpc && !grpcMatches(m.grpc, pathname)) return false;
  for (const h of m.headers) {
    if (!valueMatches(h, headerValue(req.headers[h.name]))) return false;
  }
  for (const q of m.queryParams) {
    if (!valueMatches(q, search().get(q.name) ?? undefined)) return false;
  }
  return true;
}

export function pathMatches(p: PathMatch, pathname: string): boolean {
  switch (p.type) {
    case 'EXACT':
      return pathname === p.value;
    case 'PATH_PREFIX':
      return prefixMatches(p.value, pathname);
    case 'REGULAR_EXPRESSION':
      return fullMatch(p.value, pathname);
  }
}

/**
 * PathPrefix is element-wise: "/abc" matches "/abc", "/abc/" and "/abc/def" but not "/abcd"; a
 * trailing "/" in the prefix is ignored (HTTPPathMatch's doc comment).
 */
export function prefixMatches(prefix: string, pathname: string): boolean {
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (p === '') return true;
  return pathname === p || pathname.startsWith(`${p}/`);
}

/** GRPCMethodMatch against ":path" = "/<service>/<method>"; an empty field matches any. */
function grpcMatches(g: GrpcMethodMatch, pathname: string): boolean {
  const m = /^\/([^/]+)\/([^/]+)$/.exec(pathname);
  if (!m) return false;
  const [, service, method] = m;
  const one = (want: string, got: string): boolean => want === '' || (g.type === 'EXACT' ? want === got : fullMatch(want, got));
  return one(g.service, service!) && one(g.method, method!);
}

function valueMatches(v: ValueMatch, got: string | undefined): boolean {
  if (got === undefined) return false;
  return v.type === 'EXACT' ? got === v.value : fullMatch(v.value, got);
}

/** Multiple header lines of one name compare as one comma-joined value (RFC 9110 §5.3). */
function headerValue(v: string | readonly string[] | undefined): string | undefined {
  return v === undefined ? undefined : typeof v === 'string' ? v : v.join(',');
}

// Route regexes are compiled once; the controller validated them (RE2 syntax, which JavaScript's
// RegExp accepts as a superset for what the Gateway API conformance tests use).
const compiled = new Map<string, RegExp>();
const MAX_COMPILED = 1024;

/** Regex matches in the Gateway API match the whole value, as Envoy's RE2 safe_regex does. */
function fullMatch(pattern: string, value: string): boolean {
  let re = compiled.get(pattern);
  if (!re) {
    if (compiled.size >= MAX_COMPILED) compiled.clear();
    try {
      re = new RegExp(`^(?:${pattern})$`);
    } catch {
      // Unreachable with a validated config; a pattern we cannot compile matches nothing.
      re = /(?!)/;
    }
    compiled.set(pattern, re);
  }
  return re.test(value);
}

export function splitTarget(target: string): { pathname: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { pathname: target, query: '' } : { pathname: target.slice(0, q), query: target.slice(q + 1) };
}

/**
 * A backend chosen in proportion to the weights; undefined when there is none with weight > 0
 * (the Gateway API answers such a rule with 500).
 */
export function pickBackend(backends: readonly Backend[], random: () => number = Math.random): Backend | undefined {
  let total = 0;
  for (const b of backends) total += Math.max(0, b.weight);
  if (total <= 0) return undefined;
  let x = random() * total;
  for (const b of backends) {
    const w = Math.max(0, b.weight);
    if (x < w) return b;
    x -= w;
  }
  return backends.findLast((b) => b.weight > 0);
}

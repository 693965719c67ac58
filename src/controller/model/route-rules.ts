// One rule of an HTTPRoute or GRPCRoute → a RouteRule (src/xds/routes.ts), its matches not yet
// split: matches, filters, backendRefs, timeouts and retry, with the spec's defaults applied.
// What we cannot honour is recorded as invalid (the route becomes Accepted=False); a backendRef
// that cannot be resolved is recorded as unresolved (ResolvedRefs=False) and kept as a backend
// with service '', which the waypoint answers 500 for. routes.ts puts the rules together.
import type * as k8s from '@kubernetes/client-node';
import type { Backend, GrpcMethodMatch, HeaderModifier, PathMatch, PathModifier, Retry, RouteFilter, RouteMatch, RouteRule, ValueMatch } from '../../xds/index.ts';
import { isRecord, nameOf, namespaceOf, parseDuration } from './kube.ts';
import { hostnameOf } from './services.ts';
import type { KubeObject } from './types.ts';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

export type RouteKind = 'HTTPRoute' | 'GRPCRoute';
type Kind = RouteKind;

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

export interface RuleContext {
  services: Map<string, k8s.V1Service>;
  grants: ReferenceGrants;
  clusterDomain: string;
}

interface Unresolved {
  reason: string;
  message: string;
}

export interface RouteProblems {
  /** Accepted=False: the route contributes nothing. */
  invalid: string[];
  /** ResolvedRefs=False: those backends answer 500. */
  unresolved: Unresolved[];
}

const HTTP_FILTERS = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier', 'URLRewrite', 'RequestRedirect', 'RequestMirror']);
const GRPC_FILTERS = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror']);

/** A rule with its matches unsplit and port 0; null when invalid (the problem is recorded). */
export function compileRule(kind: Kind, route: KubeObject, raw: unknown, index: number, problems: RouteProblems, ctx: RuleContext): RouteRule | null {
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
function backend(kind: Kind, raw: unknown, routeNs: string, where: string, problems: RouteProblems, ctx: RuleContext, bad?: Bad): Backend | null {
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
export class ReferenceGrants {
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

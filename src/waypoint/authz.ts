// L7 authorization at the waypoint: Istio's AuthorizationPolicy (security/v1), HTTP fields
// included, judged per request. The controller hands the waypoint every policy that targets it
// (targetRefs: its Gateway or a Service it serves, src/xds/routes.ts L7Authorization); the proxy
// asks decide() with the targets a request falls under.
//
// Semantics are Istio's ("Authorization Policy" reference and its evaluation order):
// - DENY policies first: any match denies. Then, if any ALLOW policy applies, the request must
//   match one of them; with no ALLOW policy the request is allowed. (CUSTOM and AUDIT are not in
//   the contract.)
// - Rules are OR-ed. A policy with no rules: ALLOW allows nothing, DENY denies nothing.
// - In a rule, some `from` must match (or there is none), some `to` (or none), and every `when`.
//   In a source or operation every non-empty list must hold: a positive list when any value
//   matches, a not* list when none does.
// - Strings: exact, "prefix*", "*suffix", "*" (any non-empty value). Hosts compare
//   case-insensitively, without the port unless the pattern names one. Paths compare without the
//   query string, after RFC 3986 normalization (Istio's default BASE path normalization), so
//   "/public/../admin" and "/%61dmin" meet a rule on "/admin".
// - What the waypoint cannot evaluate — a `when` key it does not know (request.auth.*,
//   remote.ip, connection.sni, …), a path template ("/a/{*}"), an unparsable address — fails
//   closed: the condition holds in a DENY policy and does not in an ALLOW policy (DESIGN.md
//   "Policy"). unsupportedL7Keys() lists these for the controller to put in the policy's status.
// - dryRun policies never change the decision; what they would have changed is logged.
import { normalizePath } from './path.ts';
import ipaddr from 'ipaddr.js';
import { cidrContains, compileCidr, type CompiledCidr, type Ip, parseIp } from '../authz/index.ts';
import { logger } from '../common/log.ts';
import { l7AuthorizationName, type L7Authorization, type L7Condition, type L7Operation, type L7Source } from '../xds/routes.ts';
import type { RequestInfo } from './request.ts';

const log = logger('waypoint-authz');

export interface L7Decision {
  allowed: boolean;
  /** "ns/name" of the policy that decided; '' when none did (no policy applies, or no ALLOW
   * policy matched). */
  policy: string;
}

/** Istio's string forms, compiled: exact values in a Set, the rest as lists. */
interface Patterns {
  readonly exact: ReadonlySet<string>;
  readonly prefixes: readonly string[];
  readonly suffixes: readonly string[];
  /** "*": any non-empty value. */
  readonly presence: boolean;
}

function patterns(values: readonly string[], fold = false): Patterns | null {
  if (values.length === 0) return null;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixes: string[] = [];
  let presence = false;
  for (const raw of values) {
    const v = fold ? raw.toLowerCase() : raw;
    if (v === '*') presence = true;
    else if (v.endsWith('*')) prefixes.push(v.slice(0, -1));
    else if (v.startsWith('*')) suffixes.push(v.slice(1));
    else exact.add(v);
  }
  return { exact, prefixes, suffixes, presence };
}

function matches(p: Patterns, v: string): boolean {
  if (p.presence && v !== '') return true;
  if (p.exact.has(v)) return true;
  for (const x of p.prefixes) if (v.startsWith(x)) return true;
  for (const x of p.suffixes) if (v.endsWith(x)) return true;
  return false;
}

/** An address or CIDR as Istio writes it ("10.0.0.0/8", "10.1.2.3", "fd00::/8"); throws when it is neither. */
export function parseCidrText(s: string): CompiledCidr {
  if (s.includes('/')) {
    const [addr, len] = ipaddr.parseCIDR(s);
    return compileCidr(Uint8Array.from(addr.toByteArray()), len);
  }
  const addr = ipaddr.parse(s);
  const bytes = Uint8Array.from(addr.toByteArray());
  return compileCidr(bytes, bytes.length * 8);
}

function inCidrs(list: readonly CompiledCidr[], ip: Ip | undefined): boolean {
  if (ip === undefined) return false;
  for (const c of list) if (cidrContains(c, ip)) return true;
  return false;
}

/** A compiled list that may hold values the waypoint cannot judge (then `broken`). */
interface CidrList {
  readonly cidrs: readonly CompiledCidr[];
  readonly broken: boolean;
}

function cidrList(values: readonly string[]): CidrList | null {
  if (values.length === 0) return null;
  const cidrs: CompiledCidr[] = [];
  let broken = false;
  for (const v of values) {
    try {
      cidrs.push(parseCidrText(v));
    } catch {
      broken = true;
    }
  }
  return { cidrs, broken };
}

interface CompiledSource {
  readonly principals: Patterns | null;
  readonly notPrincipals: Patterns | null;
  readonly namespaces: Patterns | null;
  readonly notNamespaces: Patterns | null;
  readonly ipBlocks: readonly CompiledCidr[] | null;
  readonly notIpBlocks: readonly CompiledCidr[] | null;
}

/** A host pattern: compared with the authority's host, or with host:port when it names a port. */
interface HostPatterns {
  readonly host: Patterns | null;
  readonly hostPort: Patterns | null;
}

interface CompiledOperation {
  readonly hosts: HostPatterns | null;
  readonly notHosts: HostPatterns | null;
  readonly ports: ReadonlySet<number> | null;
  readonly notPorts: ReadonlySet<number> | null;
  readonly methods: Patterns | null;
  readonly notMethods: Patterns | null;
  readonly paths: Patterns | null;
  readonly notPaths: Patterns | null;
}

type ConditionKind = 'header' | 'source.principal' | 'source.namespace' | 'source.ip' | 'destination.ip' | 'destination.port' | 'unsupported';

interface CompiledCondition {
  readonly kind: ConditionKind;
  /** The header name, lower case, for kind "header". */
  readonly header: string;
  readonly values: Patterns | null;
  readonly notValues: Patterns | null;
  readonly cidrs: readonly CompiledCidr[] | null;
  readonly notCidrs: readonly CompiledCidr[] | null;
}

interface CompiledRule {
  readonly from: readonly CompiledSource[];
  readonly to: readonly CompiledOperation[];
  readonly when: readonly CompiledCondition[];
  /** Something in the rule cannot be judged here: the rule matches in a DENY policy and not in
   * an ALLOW policy (fail closed), whatever the rest says. */
  readonly unsupported: boolean;
}

interface CompiledPolicy {
  readonly key: string;
  readonly action: 'ALLOW' | 'DENY';
  readonly dryRun: boolean;
  readonly rules: readonly CompiledRule[];
}

/** `request.headers[name]` → name. */
const HEADER_KEY = /^request\.headers\[([^\]]+)\]$/;
/** Istio path templates (`{*}`, `{**}`) are not supported here. */
const PATH_TEMPLATE = /[{}]/;

function conditionKind(key: string): { kind: ConditionKind; header: string } {
  const h = HEADER_KEY.exec(key);
  if (h) return { kind: 'header', header: h[1]!.toLowerCase() };
  switch (key) {
    case 'source.principal':
    case 'source.namespace':
    case 'source.ip':
    case 'destination.ip':
    case 'destination.port':
      return { kind: key, header: '' };
    default:
      return { kind: 'unsupported', header: '' };
  }
}

/**
 * The parts of a policy the waypoint cannot evaluate, for the controller to report in the
 * policy's status: unknown `when` keys (as written), path templates ("paths: /a/{*}") and
 * unparsable addresses ("ipBlocks: 10.0.0.0/33"). Deduplicated, in order of appearance. Each
 * makes its rule fail closed.
 */
export function unsupportedL7Keys(policy: Pick<L7Authorization, 'rules'>): string[] {
  const out = new Set<string>();
  const bad = (field: string, values: readonly string[]): void => {
    for (const v of values) {
      try {
        parseCidrText(v);
      } catch {
        out.add(`${field}: ${v}`);
      }
    }
  };
  for (const r of policy.rules) {
    for (const f of r.from) {
      bad('ipBlocks', f.ipBlocks);
      bad('notIpBlocks', f.notIpBlocks);
    }
    for (const t of r.to) {
      for (const p of t.paths) if (PATH_TEMPLATE.test(p)) out.add(`paths: ${p}`);
      for (const p of t.notPaths) if (PATH_TEMPLATE.test(p)) out.add(`notPaths: ${p}`);
    }
    for (const c of r.when) {
      const { kind } = conditionKind(c.key);
      if (kind === 'unsupported') out.add(c.key);
      else if (kind === 'source.ip' || kind === 'destination.ip') {
        bad(c.key, c.values);
        bad(c.key, c.notValues);
      }
    }
  }
  return [...out];
}

function hostPatterns(values: readonly string[]): HostPatterns | null {
  if (values.length === 0) return null;
  const withPort = values.filter(hasPort);
  const without = values.filter((v) => !hasPort(v));
  return { host: patterns(without, true), hostPort: patterns(withPort, true) };
}

/** "example.com:8080", "[::1]:80" — not "::1" or "example.com". */
function hasPort(v: string): boolean {
  if (v.startsWith('[')) return /\]:\d+$/.test(v);
  const i = v.indexOf(':');
  return i >= 0 && i === v.lastIndexOf(':') && /^\d+$/.test(v.slice(i + 1));
}

/** The authority without its port, lower case. */
function authorityHost(authority: string): string {
  const a = authority.toLowerCase();
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    return end < 0 ? a : a.slice(0, end + 1);
  }
  const i = a.indexOf(':');
  // More than one colon without brackets: a bare IPv6 address, no port.
  return i < 0 || i !== a.lastIndexOf(':') ? a : a.slice(0, i);
}

function hostMatches(h: HostPatterns, authority: string): boolean {
  if (h.host !== null && matches(h.host, authorityHost(authority))) return true;
  return h.hostPort !== null && matches(h.hostPort, authority.toLowerCase());
}

function compileSource(s: L7Source): { source: CompiledSource; broken: boolean } {
  const ip = cidrList(s.ipBlocks);
  const notIp = cidrList(s.notIpBlocks);
  return {
    source: {
      principals: patterns(s.principals),
      notPrincipals: patterns(s.notPrincipals),
      namespaces: patterns(s.namespaces),
      notNamespaces: patterns(s.notNamespaces),
      ipBlocks: ip ? ip.cidrs : null,
      notIpBlocks: notIp ? notIp.cidrs : null,
    },
    broken: (ip?.broken ?? false) || (notIp?.broken ?? false),
  };
}

function compileOperation(o: L7Operation): { op: CompiledOperation; broken: boolean } {
  return {
    op: {
      hosts: hostPatterns(o.hosts),
      notHosts: hostPatterns(o.notHosts),
      ports: o.ports.length > 0 ? new Set(o.ports) : null,
      notPorts: o.notPorts.length > 0 ? new Set(o.notPorts) : null,
      methods: patterns(o.methods),
      notMethods: patterns(o.notMethods),
      paths: patterns(o.paths),
      notPaths: patterns(o.notPaths),
    },
    broken: o.paths.some((p) => PATH_TEMPLATE.test(p)) || o.notPaths.some((p) => PATH_TEMPLATE.test(p)),
  };
}

function compileCondition(c: L7Condition): { cond: CompiledCondition; broken: boolean } {
  const { kind, header } = conditionKind(c.key);
  if (kind === 'source.ip' || kind === 'destination.ip') {
    const v = cidrList(c.values);
    const nv = cidrList(c.notValues);
    return {
      cond: { kind, header, values: null, notValues: null, cidrs: v ? v.cidrs : null, notCidrs: nv ? nv.cidrs : null },
      broken: (v?.broken ?? false) || (nv?.broken ?? false),
    };
  }
  return { cond: { kind, header, values: patterns(c.values), notValues: patterns(c.notValues), cidrs: null, notCidrs: null }, broken: kind === 'unsupported' };
}

const compiled = new WeakMap<L7Authorization, CompiledPolicy>();

function compilePolicy(a: L7Authorization): CompiledPolicy {
  const hit = compiled.get(a);
  if (hit) return hit;
  const rules = a.rules.map((r): CompiledRule => {
    let unsupported = false;
    const from = r.from.map((f) => {
      const c = compileSource(f);
      unsupported ||= c.broken;
      return c.source;
    });
    const to = r.to.map((t) => {
      const c = compileOperation(t);
      unsupported ||= c.broken;
      return c.op;
    });
    const when = r.when.map((w) => {
      const c = compileCondition(w);
      unsupported ||= c.broken;
      return c.cond;
    });
    return { from, to, when, unsupported };
  });
  const p: CompiledPolicy = { key: l7AuthorizationName(a), action: a.action === 'DENY' ? 'DENY' : 'ALLOW', dryRun: a.dryRun, rules };
  compiled.set(a, p);
  return p;
}

/** What the rules look at, prepared once per request. */
interface RequestView {
  readonly req: RequestInfo;
  readonly path: string;
  /** Parsed on first use: most policies never look at addresses. */
  src: Ip | undefined | null;
  dst: Ip | undefined | null;
}

function srcIp(v: RequestView): Ip | undefined {
  if (v.src === null) v.src = parseIp(v.req.source.ip);
  return v.src;
}

function dstIp(v: RequestView): Ip | undefined {
  if (v.dst === null) v.dst = parseIp(v.req.destination.ip);
  return v.dst;
}

function sourceMatches(s: CompiledSource, v: RequestView): boolean {
  const { principal, namespace } = v.req.source;
  // No verified identity: principals never match ("*" means any authenticated peer).
  if (s.principals !== null && !matches(s.principals, principal)) return false;
  if (s.notPrincipals !== null && matches(s.notPrincipals, principal)) return false;
  if (s.namespaces !== null && !matches(s.namespaces, namespace)) return false;
  if (s.notNamespaces !== null && matches(s.notNamespaces, namespace)) return false;
  if (s.ipBlocks !== null && !inCidrs(s.ipBlocks, srcIp(v))) return false;
  if (s.notIpBlocks !== null && inCidrs(s.notIpBlocks, srcIp(v))) return false;
  return true;
}

function operationMatches(o: CompiledOperation, v: RequestView): boolean {
  const r = v.req;
  if (o.hosts !== null && !hostMatches(o.hosts, r.authority)) return false;
  if (o.notHosts !== null && hostMatches(o.notHosts, r.authority)) return false;
  if (o.ports !== null && !o.ports.has(r.destination.port)) return false;
  if (o.notPorts !== null && o.notPorts.has(r.destination.port)) return false;
  if (o.methods !== null && !matches(o.methods, r.method)) return false;
  if (o.notMethods !== null && matches(o.notMethods, r.method)) return false;
  if (o.paths !== null && !matches(o.paths, v.path)) return false;
  if (o.notPaths !== null && matches(o.notPaths, v.path)) return false;
  return true;
}

/** Envoy's header matching: repeated headers are joined with "," before matching; an absent
 * header matches no value (so a notValues condition on it holds). */
function headerValue(req: RequestInfo, name: string): string | undefined {
  const h = req.headers[name];
  return h === undefined ? undefined : typeof h === 'string' ? h : h.join(',');
}

function conditionHolds(c: CompiledCondition, v: RequestView): boolean {
  let value: string | undefined;
  switch (c.kind) {
    case 'source.ip':
    case 'destination.ip': {
      const ip = c.kind === 'source.ip' ? srcIp(v) : dstIp(v);
      if (c.cidrs !== null && !inCidrs(c.cidrs, ip)) return false;
      if (c.notCidrs !== null && inCidrs(c.notCidrs, ip)) return false;
      return true;
    }
    case 'header':
      value = headerValue(v.req, c.header);
      break;
    case 'source.principal':
      value = v.req.source.principal;
      break;
    case 'source.namespace':
      value = v.req.source.namespace;
      break;
    case 'destination.port':
      value = String(v.req.destination.port);
      break;
    case 'unsupported':
      return false;
  }
  if (c.values !== null && (value === undefined || !matches(c.values, value))) return false;
  if (c.notValues !== null && value !== undefined && matches(c.notValues, value)) return false;
  return true;
}

function ruleMatches(r: CompiledRule, v: RequestView, action: 'ALLOW' | 'DENY'): boolean {
  if (r.unsupported) return action === 'DENY';
  if (r.from.length > 0 && !r.from.some((s) => sourceMatches(s, v))) return false;
  if (r.to.length > 0 && !r.to.some((o) => operationMatches(o, v))) return false;
  for (const c of r.when) if (!conditionHolds(c, v)) return false;
  return true;
}

function policyMatches(p: CompiledPolicy, v: RequestView): boolean {
  for (const r of p.rules) if (ruleMatches(r, v, p.action)) return true;
  return false;
}

function judge(policies: readonly CompiledPolicy[], v: RequestView): L7Decision {
  let anyAllow = false;
  for (const p of policies) if (p.action === 'DENY' && policyMatches(p, v)) return { allowed: false, policy: p.key };
  for (const p of policies) {
    if (p.action !== 'ALLOW') continue;
    anyAllow = true;
    if (policyMatches(p, v)) return { allowed: true, policy: p.key };
  }
  return { allowed: !anyAllow, policy: '' };
}

const NONE: readonly CompiledPolicy[] = Object.freeze([]);

function byKey(x: CompiledPolicy, y: CompiledPolicy): number {
  return x.key < y.key ? -1 : x.key > y.key ? 1 : 0;
}

/** How often a dry-run policy's would-be effect is logged at info, per policy. */
const DRY_RUN_LOG_INTERVAL_MS = 10_000;

/** The L7 policies a waypoint enforces, indexed by target. */
export class L7Authorizer {
  /** Per target: the enforced policies and, apart, every policy (dry-run ones included). */
  #byTarget = new Map<string, { enforced: CompiledPolicy[]; all: CompiledPolicy[] }>();
  #hasDryRun = false;
  readonly #dryRunSeen = new Map<string, { lastLog: number; count: number }>();

  constructor(policies?: Iterable<L7Authorization>) {
    if (policies) this.update(policies);
  }

  /** Replaces the whole set (the config stream's state of L7Authorization resources). */
  update(policies: Iterable<L7Authorization>): void {
    const byTarget = new Map<string, { enforced: CompiledPolicy[]; all: CompiledPolicy[] }>();
    let hasDryRun = false;
    for (const a of policies) {
      const p = compilePolicy(a);
      hasDryRun ||= p.dryRun;
      for (const t of new Set(a.targets)) {
        let lists = byTarget.get(t);
        if (!lists) byTarget.set(t, (lists = { enforced: [], all: [] }));
        lists.all.push(p);
        if (!p.dryRun) lists.enforced.push(p);
      }
    }
    // Deterministic order, so the deciding policy reported does not depend on arrival order.
    for (const lists of byTarget.values()) {
      lists.all.sort(byKey);
      lists.enforced.sort(byKey);
    }
    this.#byTarget = byTarget;
    this.#hasDryRun = hasDryRun;
  }

  /**
   * Judges a request against the policies targeting any of `targets` ("Gateway/ns/name",
   * "Service/ns/hostname").
   */
  decide(req: RequestInfo, targets: readonly string[]): L7Decision {
    const enforced = this.#applicable(targets, 'enforced');
    const view: RequestView = { req, path: normalizePath(req.path), src: null, dst: null };
    const decision = enforced.length === 0 ? { allowed: true, policy: '' } : judge(enforced, view);
    if (this.#hasDryRun) this.#dryRun(targets, view, decision);
    return decision;
  }

  #applicable(targets: readonly string[], which: 'enforced' | 'all'): readonly CompiledPolicy[] {
    if (targets.length === 1) return this.#byTarget.get(targets[0]!)?.[which] ?? NONE;
    const seen = new Set<CompiledPolicy>();
    for (const t of targets) for (const p of this.#byTarget.get(t)?.[which] ?? NONE) seen.add(p);
    return [...seen].sort(byKey);
  }

  /** Istio's shadow evaluation: the decision had dry-run policies been enforced too. Logged when
   * it differs — at debug per request, at info at most once per interval per policy. */
  #dryRun(targets: readonly string[], view: RequestView, actual: L7Decision): void {
    const all = this.#applicable(targets, 'all');
    if (!all.some((p) => p.dryRun)) return;
    const shadow = judge(all, view);
    if (shadow.allowed === actual.allowed) return;
    const key = shadow.policy || all.filter((p) => p.dryRun && p.action === 'ALLOW').map((p) => p.key).join(',');
    const rec = { dryRunPolicy: key, wouldAllow: shadow.allowed, method: view.req.method, path: view.path, source: view.req.source.principal || view.req.source.ip };
    log.debug(rec, 'dry-run authorization policy would change this decision');
    const now = Date.now();
    const seen = this.#dryRunSeen.get(key);
    if (!seen || now - seen.lastLog >= DRY_RUN_LOG_INTERVAL_MS) {
      log.info({ ...rec, requests: (seen?.count ?? 0) + 1 }, `dry-run authorization policy ${key} would have ${shadow.allowed ? 'allowed' : 'denied'} requests`);
      this.#dryRunSeen.set(key, { lastLog: now, count: 0 });
    } else seen.count++;
  }
}

export { normalizePath };

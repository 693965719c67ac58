// One Authorization (proto/mesh/config.proto) compiled into closures, once per policy version, so
// judging a connection is a handful of Set lookups and integer compares.
//
// Semantics are ztunnel's (istio/ztunnel src/rbac.rs, Authorization::matches): rules are OR-ed
// and a policy without rules matches nothing; the clauses of a rule are AND-ed and a rule without
// clauses matches everything; the matches of a clause are OR-ed; in a match every field that is
// set must hold, a positive field when any value matches, a not_ field when none does. The peer
// is judged by its verified identity only: no identity (plaintext) means principals and service
// accounts never match (so not_principals / not_service_accounts always do), and the namespace
// is "" (rbac.rs: `unwrap_or_default()`).
//
// One deliberate difference: ztunnel skips a Match with no field set, so a clause made only of
// such matches never matches. Our controller emits empty matches exactly where a rule used fields
// that ztunnel cannot see (HTTP methods, paths, request principals; controller/model/authz.ts),
// and for DENY it keeps those rules meaning "deny more" (DESIGN.md "Policy": fail closed). So an
// empty match *matches* in a DENY policy and does not in an ALLOW policy — both fail closed. With
// ztunnel's rule, `DENY to: methods: [POST]` would silently deny nothing at L4.
import type { Action, Authorization, Cidr, Match, PolicyOrigin, Scope, ServiceAccountMatch, StringMatch } from '../xds/index.ts';
import { AuthzInvalidError } from './errors.ts';
import { cidrContains, compileCidr, type CompiledCidr, type Ip } from './ip.ts';

/** What a compiled policy looks at, prepared once per connection by evaluate(). */
export interface PeerView {
  /** Whether the peer presented a verified identity (mTLS). */
  readonly authenticated: boolean;
  /** "<trust domain>/ns/<ns>/sa/<sa>" (SPIFFE without the scheme), "" without an identity. */
  readonly principal: string;
  /** The identity's namespace, "" without one. */
  readonly namespace: string;
  readonly serviceAccount: string;
  /** "<namespace>/<service account>", "" without an identity. */
  readonly nsSa: string;
  /** Parsed only when some policy in the set looks at addresses. */
  readonly src: Ip | undefined;
  readonly dst: Ip | undefined;
  readonly port: number;
}

/** A StringMatch list: exact values in a Set, the rest as plain arrays. */
interface StringSet {
  readonly exact: ReadonlySet<string> | null;
  readonly prefixes: readonly string[];
  readonly suffixes: readonly string[];
  readonly presence: boolean;
}

/** One Match, flat: every field null when unset. Judged by one monomorphic function (matchOne),
 * which V8 inlines; a closure per field made each policy ~10x slower (megamorphic calls). */
interface CompiledMatch {
  readonly dstIps: readonly CompiledCidr[] | null;
  readonly notDstIps: readonly CompiledCidr[] | null;
  readonly srcIps: readonly CompiledCidr[] | null;
  readonly notSrcIps: readonly CompiledCidr[] | null;
  readonly ports: ReadonlySet<number> | null;
  readonly notPorts: ReadonlySet<number> | null;
  /** "namespace/serviceAccount" keys. */
  readonly sas: ReadonlySet<string> | null;
  readonly notSas: ReadonlySet<string> | null;
  readonly principals: StringSet | null;
  readonly notPrincipals: StringSet | null;
  readonly namespaces: StringSet | null;
  readonly notNamespaces: StringSet | null;
  /** No field set: the policy's action decides (see the file comment). */
  readonly empty: boolean;
}

export interface CompiledAuthorization {
  /** "namespace/name". */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly scope: Scope;
  readonly action: Action;
  readonly dryRun: boolean;
  readonly origin: PolicyOrigin;
  /** Whether any match looks at source or destination addresses. */
  readonly usesAddresses: boolean;
  /** The Authorization it was compiled from. */
  readonly source: Authorization;
  /** rules[r][c][m]: OR over rules, AND over clauses, OR over matches. Null for a policy that
   * could not be compiled (then `matchesAll` decides). */
  readonly rules: readonly (readonly (readonly CompiledMatch[])[])[] | null;
  /** For a policy that could not be compiled: true for DENY (fail closed), false for ALLOW. */
  readonly matchesAll: boolean;
}

/** The oneof case of a StringMatch built by hand (decoded ones carry matchType). */
function matchKind(m: StringMatch): StringMatch['matchType'] {
  const kinds = (['exact', 'prefix', 'suffix'] as const).filter((k) => typeof m[k] === 'string');
  const nonEmpty = kinds.filter((k) => m[k] !== '');
  if (nonEmpty.length > 0) return nonEmpty[0];
  if (m.presence) return 'presence';
  return kinds.length === 1 ? kinds[0] : undefined;
}

function stringSet(list: StringMatch[] | undefined, where: string): StringSet | null {
  if (!list || list.length === 0) return null;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixes: string[] = [];
  let presence = false;
  list.forEach((m, i) => {
    const kind = m.matchType ?? matchKind(m);
    if (kind === 'exact') exact.add(m.exact ?? '');
    else if (kind === 'prefix') prefixes.push(m.prefix ?? '');
    else if (kind === 'suffix') suffixes.push(m.suffix ?? '');
    else if (kind === 'presence') presence = true;
    else throw new AuthzInvalidError(`${where}[${i}] is a string match with none of exact, prefix, suffix, presence set`);
  });
  return { exact: exact.size > 0 ? exact : null, prefixes, suffixes, presence };
}

function inStringSet(m: StringSet, v: string): boolean {
  if (m.presence && v !== '') return true;
  if (m.exact !== null && m.exact.has(v)) return true;
  for (const p of m.prefixes) if (v.startsWith(p)) return true;
  for (const x of m.suffixes) if (v.endsWith(x)) return true;
  return false;
}

function cidrList(list: Cidr[] | undefined, where: string): CompiledCidr[] | null {
  if (!list || list.length === 0) return null;
  return list.map((c, i) => {
    try {
      return compileCidr(c.address, c.length);
    } catch (e) {
      throw new AuthzInvalidError(`${where}[${i}]: ${(e as Error).message}`, { cause: e });
    }
  });
}

function inCidrs(list: readonly CompiledCidr[], ip: Ip | undefined): boolean {
  if (ip === undefined) return false;
  for (const c of list) if (cidrContains(c, ip)) return true;
  return false;
}

function portSet(list: number[] | undefined, where: string): Set<number> | null {
  if (!list || list.length === 0) return null;
  for (const port of list) {
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new AuthzInvalidError(`${where}: ${port} is not a port number (0-65535)`);
  }
  return new Set(list);
}

function saSet(list: ServiceAccountMatch[] | undefined): Set<string> | null {
  return list && list.length > 0 ? new Set(list.map((s) => `${s.namespace}/${s.serviceAccount}`)) : null;
}

function compileMatch(m: Match, where: string): CompiledMatch {
  const c: CompiledMatch = {
    dstIps: cidrList(m.destinationIps, `${where}.destination_ips`),
    notDstIps: cidrList(m.notDestinationIps, `${where}.not_destination_ips`),
    srcIps: cidrList(m.sourceIps, `${where}.source_ips`),
    notSrcIps: cidrList(m.notSourceIps, `${where}.not_source_ips`),
    ports: portSet(m.destinationPorts, `${where}.destination_ports`),
    notPorts: portSet(m.notDestinationPorts, `${where}.not_destination_ports`),
    sas: saSet(m.serviceAccounts),
    notSas: saSet(m.notServiceAccounts),
    principals: stringSet(m.principals, `${where}.principals`),
    notPrincipals: stringSet(m.notPrincipals, `${where}.not_principals`),
    namespaces: stringSet(m.namespaces, `${where}.namespaces`),
    notNamespaces: stringSet(m.notNamespaces, `${where}.not_namespaces`),
    empty: false,
  };
  const empty = Object.entries(c).every(([k, v]) => k === 'empty' || v === null);
  return { ...c, empty };
}

/** Every set field holds: a positive field when any value matches, a not_ field when none does. */
function matchOne(m: CompiledMatch, p: PeerView, action: Action): boolean {
  if (m.empty) return action === 'DENY';
  if (m.dstIps !== null && !inCidrs(m.dstIps, p.dst)) return false;
  if (m.notDstIps !== null && inCidrs(m.notDstIps, p.dst)) return false;
  if (m.srcIps !== null && !inCidrs(m.srcIps, p.src)) return false;
  if (m.notSrcIps !== null && inCidrs(m.notSrcIps, p.src)) return false;
  if (m.ports !== null && !m.ports.has(p.port)) return false;
  if (m.notPorts !== null && m.notPorts.has(p.port)) return false;
  // rbac.rs ServiceAccountMatch::matches: no identity never matches; the trust domain is not compared.
  if (m.sas !== null && !(p.authenticated && m.sas.has(p.nsSa))) return false;
  if (m.notSas !== null && p.authenticated && m.notSas.has(p.nsSa)) return false;
  // rbac.rs matches_principal: no identity ("" without "spiffe://") never matches.
  if (m.principals !== null && !(p.authenticated && inStringSet(m.principals, p.principal))) return false;
  if (m.notPrincipals !== null && p.authenticated && inStringSet(m.notPrincipals, p.principal)) return false;
  if (m.namespaces !== null && !inStringSet(m.namespaces, p.namespace)) return false;
  if (m.notNamespaces !== null && inStringSet(m.notNamespaces, p.namespace)) return false;
  return true;
}

/** Whether the policy's action applies to the connection. */
export function policyMatches(a: CompiledAuthorization, p: PeerView): boolean {
  const rules = a.rules;
  if (rules === null) return a.matchesAll;
  // Indexed loops: this is the per-connection hot path.
  for (let r = 0; r < rules.length; r++) {
    const rule = rules[r]!;
    let ok = true;
    for (let c = 0; c < rule.length; c++) {
      const clause = rule[c]!;
      // A clause with no matches matches (rbac.rs: `if clause.is_empty() { clause_match = true }`).
      if (clause.length === 0) continue;
      let any = false;
      for (let m = 0; m < clause.length; m++) {
        if (matchOne(clause[m]!, p, a.action)) {
          any = true;
          break;
        }
      }
      if (!any) {
        ok = false;
        break;
      }
    }
    if (ok) return true;
  }
  return false;
}

const cache = new WeakMap<Authorization, CompiledAuthorization>();

/**
 * Compiles one Authorization; throws AuthzInvalidError when it cannot be enforced as written.
 * Results are cached per object, so recompiling a set after one policy changed costs one compile.
 */
export function compileAuthorization(a: Authorization): CompiledAuthorization {
  const hit = cache.get(a);
  if (hit) return hit;
  const key = `${a.namespace}/${a.name}`;
  if (a.action !== 'ALLOW' && a.action !== 'DENY') throw new AuthzInvalidError(`policy ${key}: action ${String(a.action)} is not ALLOW or DENY`);
  if (a.scope !== 'GLOBAL' && a.scope !== 'NAMESPACE' && a.scope !== 'WORKLOAD_SELECTOR') {
    throw new AuthzInvalidError(`policy ${key}: scope ${String(a.scope)} is not GLOBAL, NAMESPACE or WORKLOAD_SELECTOR`);
  }
  const rules = (a.rules ?? []).map((r, ri) => (r.clauses ?? []).map((c, ci) => (c.matches ?? []).map((m, mi) => compileMatch(m, `policy ${key} rules[${ri}].clauses[${ci}].matches[${mi}]`))));
  const usesAddresses = rules.some((r) => r.some((c) => c.some((m) => m.srcIps || m.notSrcIps || m.dstIps || m.notDstIps)));
  const compiled: CompiledAuthorization = {
    key,
    name: a.name,
    namespace: a.namespace,
    scope: a.scope,
    action: a.action,
    dryRun: a.dryRun === true,
    origin: a.origin ?? 'AUTHORIZATION_POLICY',
    usesAddresses,
    source: a,
    rules,
    matchesAll: false,
  };
  cache.set(a, compiled);
  return compiled;
}

/** For a config client's validator: the reason an Authorization would be refused, or undefined. */
export function validateAuthorization(a: Authorization): string | undefined {
  try {
    compileAuthorization(a);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

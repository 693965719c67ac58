// The L4 authorization decision ztunnel makes at the destination for every inbound connection
// (HBONE or plaintext), after Istio's rules (istio.io reference/config/security/
// authorization-policy, "Policy evaluation", as ztunnel implements them in src/state/mod.rs
// assert_rbac):
//   - the policies that apply are every GLOBAL one, every NAMESPACE one of the destination
//     workload's namespace, and those the workload lists (WORKLOAD_SELECTOR);
//   - "If there are any DENY policies that match the request, deny the request";
//   - "If there are no ALLOW policies for the workload, allow the request";
//   - "If any of the ALLOW policies match the request, allow the request"; otherwise deny.
// PeerAuthentication STRICT arrives compiled as a DENY policy (origin PEER_AUTHENTICATION) that
// matches connections without a verified identity, so it needs no path of its own here.
//
// Compile a set once per config version (compilePolicies) and evaluate each connection against
// it; evaluate() also takes the raw { byKey } map and compiles it on first use, recompiling only
// when the map's entries changed (compiled policies are cached per Authorization object).
import type { SpiffeId } from '../identity/index.ts';
import type { Authorization, Workload } from '../xds/index.ts';
import { compileAuthorization, policyMatches, type CompiledAuthorization, type PeerView } from './compile.ts';
import { parseIp } from './ip.ts';

/** One inbound connection as the destination's ztunnel sees it. */
export interface ConnectionInfo {
  srcIp: string;
  /** The peer's verified identity (mTLS); undefined for plaintext. */
  srcIdentity?: SpiffeId | undefined;
  /** Only its namespace, name and authorizationPolicies are read. */
  dstWorkload: Pick<Workload, 'namespace' | 'name' | 'authorizationPolicies'>;
  dstIp: string;
  dstPort: number;
}

/** The Authorizations as the config client holds them: "namespace/name" → resource. */
export interface PolicySource {
  byKey: ReadonlyMap<string, Authorization>;
}

export type DecisionKind =
  /** No ALLOW policy applies and no DENY matched. */
  | 'no-allow-policies'
  /** An ALLOW policy matched. */
  | 'allow-matched'
  /** A DENY AuthorizationPolicy matched. */
  | 'deny-matched'
  /** A compiled PeerAuthentication STRICT refused a connection without a verified identity. */
  | 'strict-mtls'
  /** ALLOW policies apply and none matched. */
  | 'no-allow-matched'
  /** A policy that applies could not be compiled, or an address could not be parsed: fail closed. */
  | 'invalid'
  /** The workload lists a policy the set does not hold (not arrived yet): fail closed. */
  | 'missing-policy';

export interface Decision {
  allowed: boolean;
  /** The deciding policy ("namespace/name"), when one decided. */
  policy?: string;
  /** For logs and the 401 body: why, in words. */
  reason: string;
  kind: DecisionKind;
  /** Set when dry-run policies apply and would have changed the outcome: what it would be. */
  dryRun?: { allowed: boolean; policy?: string; reason: string };
  /** Keys the workload lists that the set does not hold (usually a policy the control plane has
   * not sent yet or just removed). Unlike ztunnel, which skips them, the connection is denied. */
  missing?: string[];
}

/** A set of policies compiled for evaluation. Immutable; build a new one per config version. */
export interface CompiledPolicies {
  readonly compiled: true;
  readonly byKey: ReadonlyMap<string, CompiledAuthorization>;
  readonly global: readonly CompiledAuthorization[];
  readonly byNamespace: ReadonlyMap<string, readonly CompiledAuthorization[]>;
  /** Policies that could not be compiled → why. They are enforced fail-closed: an invalid DENY
   * denies everything it applies to, an invalid ALLOW allows nothing. */
  readonly errors: ReadonlyMap<string, string>;
  /** Whether any policy looks at addresses (otherwise evaluate() does not parse them). */
  readonly usesAddresses: boolean;
}

function invalidStandIn(a: Authorization, key: string): CompiledAuthorization {
  const deny = a.action !== 'ALLOW';
  return Object.freeze({
    key,
    name: a.name,
    namespace: a.namespace,
    scope: a.scope === 'GLOBAL' || a.scope === 'NAMESPACE' ? a.scope : 'WORKLOAD_SELECTOR',
    action: deny ? 'DENY' : 'ALLOW',
    dryRun: false,
    origin: a.origin ?? 'AUTHORIZATION_POLICY',
    usesAddresses: false,
    source: a,
    rules: null,
    matchesAll: deny,
  });
}

/** Compiles every policy of a source. Never throws: invalid policies land in `errors`. */
export function compilePolicies(src: PolicySource): CompiledPolicies {
  const byKey = new Map<string, CompiledAuthorization>();
  const global: CompiledAuthorization[] = [];
  const byNamespace = new Map<string, CompiledAuthorization[]>();
  const errors = new Map<string, string>();
  let usesAddresses = false;
  for (const [key, a] of src.byKey) {
    let c: CompiledAuthorization;
    try {
      c = compileAuthorization(a);
    } catch (e) {
      errors.set(key, (e as Error).message);
      c = invalidStandIn(a, key);
    }
    byKey.set(key, c);
    usesAddresses ||= c.usesAddresses;
    if (c.scope === 'GLOBAL') global.push(c);
    else if (c.scope === 'NAMESPACE') {
      const list = byNamespace.get(c.namespace);
      if (list) list.push(c);
      else byNamespace.set(c.namespace, [c]);
    }
  }
  return Object.freeze({ compiled: true as const, byKey, global, byNamespace, errors, usesAddresses });
}

const rawCache = new WeakMap<ReadonlyMap<string, Authorization>, { snapshot: [string, Authorization][]; set: CompiledPolicies }>();

function compiledFor(src: PolicySource): CompiledPolicies {
  const hit = rawCache.get(src.byKey);
  if (hit && hit.snapshot.length === src.byKey.size) {
    let i = 0;
    let same = true;
    for (const [k, v] of src.byKey) {
      const s = hit.snapshot[i++]!;
      if (s[0] !== k || s[1] !== v) {
        same = false;
        break;
      }
    }
    if (same) return hit.set;
  }
  const set = compilePolicies(src);
  rawCache.set(src.byKey, { snapshot: [...src.byKey], set });
  return set;
}

const EMPTY: readonly CompiledAuthorization[] = [];

/** Judges one connection: a peer view, then only the policies that apply, DENY before ALLOW. */
export function evaluate(conn: ConnectionInfo, policies: CompiledPolicies | PolicySource): Decision {
  const set = 'compiled' in policies && policies.compiled === true ? policies : compiledFor(policies as PolicySource);
  const wl = conn.dstWorkload;
  const nsList = set.byNamespace.get(wl.namespace) ?? EMPTY;
  const listed = wl.authorizationPolicies ?? [];
  const id = conn.srcIdentity;

  let src, dst;
  if (set.usesAddresses) {
    src = parseIp(conn.srcIp);
    dst = parseIp(conn.dstIp);
    if (!src || !dst) {
      const bad = !src ? conn.srcIp : conn.dstIp;
      return { allowed: false, kind: 'invalid', reason: `address ${JSON.stringify(bad)} is not an IP address, so address-based policies cannot be checked (denied: fail closed)` };
    }
  }
  const peer: PeerView = {
    authenticated: id !== undefined,
    principal: id ? `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}` : '',
    namespace: id ? id.namespace : '',
    serviceAccount: id ? id.serviceAccount : '',
    nsSa: id ? `${id.namespace}/${id.serviceAccount}` : '',
    src,
    dst,
    port: conn.dstPort,
  };

  // DENY first, over the three sources in ztunnel's order (namespace, global, workload); the
  // same pass counts the ALLOW policies and notes the first matching dry-run DENY.
  const scan: Scan = { deny: undefined, dryDeny: undefined, allowCount: 0, dryAllowCount: 0, missing: undefined };
  if (!scanDeny(nsList, scan, peer) && !scanDeny(set.global, scan, peer)) {
    for (const k of listed) {
      const p = set.byKey.get(k);
      if (!p) (scan.missing ??= []).push(k);
      else if (scanOne(p, scan, peer)) break;
    }
  }
  const { deny, dryDeny, allowCount, dryAllowCount, missing } = scan;
  let decision: Decision;
  let allowMatch: CompiledAuthorization | undefined;
  if (deny) decision = denied(deny, set, wl);
  else if (allowCount === 0) decision = { allowed: true, kind: 'no-allow-policies', reason: `no ALLOW policy applies to ${wl.namespace}/${wl.name} and no DENY policy matched` };
  else {
    allowMatch = findAllow(nsList, set, listed, peer, false);
    decision = allowMatch
      ? { allowed: true, kind: 'allow-matched', policy: allowMatch.key, reason: `allowed by ALLOW policy ${allowMatch.key}` }
      : { allowed: false, kind: 'no-allow-matched', reason: notAllowedReason(nsList, set, listed, wl) };
  }
  if (missing) {
    // A policy the workload lists but the set lacks has not arrived yet (or was just removed): it
    // may be a DENY or STRICT. ztunnel skips it; we fail closed until the set is consistent.
    if (decision.allowed) {
      decision = {
        allowed: false,
        kind: 'missing-policy',
        reason: `${wl.namespace}/${wl.name} is governed by ${missing.join(', ')}, which this ztunnel has not received; denied until it arrives (fail closed)`,
      };
    }
    decision.missing = missing;
  }
  if (dryDeny || dryAllowCount > 0) {
    const shadow = shadowDecision(decision, deny, dryDeny, allowCount + dryAllowCount, allowMatch, nsList, set, listed, peer, wl);
    if (shadow.allowed !== decision.allowed) decision.dryRun = shadow;
  }
  return decision;
}

interface Scan {
  deny: CompiledAuthorization | undefined;
  dryDeny: CompiledAuthorization | undefined;
  allowCount: number;
  dryAllowCount: number;
  missing: string[] | undefined;
}

/** True when an enforced DENY matched (and stops the scan). */
function scanOne(p: CompiledAuthorization, s: Scan, peer: PeerView): boolean {
  if (p.action !== 'DENY') {
    if (p.dryRun) s.dryAllowCount++;
    else s.allowCount++;
    return false;
  }
  if (p.dryRun) {
    if (s.dryDeny === undefined && policyMatches(p, peer)) s.dryDeny = p;
    return false;
  }
  if (policyMatches(p, peer)) {
    s.deny = p;
    return true;
  }
  return false;
}

function scanDeny(list: readonly CompiledAuthorization[], s: Scan, peer: PeerView): boolean {
  for (const p of list) if (scanOne(p, s, peer)) return true;
  return false;
}

function denied(p: CompiledAuthorization, set: CompiledPolicies, wl: ConnectionInfo['dstWorkload']): Decision {
  const err = set.errors.get(p.key);
  if (err) return { allowed: false, kind: 'invalid', policy: p.key, reason: `DENY policy ${p.key} could not be compiled and is enforced fail-closed (denies everything it applies to): ${err}` };
  if (p.origin === 'PEER_AUTHENTICATION') {
    return { allowed: false, kind: 'strict-mtls', policy: p.key, reason: `${wl.namespace}/${wl.name} requires mutual TLS (PeerAuthentication STRICT, ${p.key}) and the connection presented no verified identity` };
  }
  return { allowed: false, kind: 'deny-matched', policy: p.key, reason: `denied by DENY policy ${p.key}` };
}

function findAllow(nsList: readonly CompiledAuthorization[], set: CompiledPolicies, listed: readonly string[], peer: PeerView, withDry: boolean): CompiledAuthorization | undefined {
  const ok = (p: CompiledAuthorization | undefined): boolean => p !== undefined && p.action === 'ALLOW' && (withDry || !p.dryRun) && policyMatches(p, peer);
  for (const p of nsList) if (ok(p)) return p;
  for (const p of set.global) if (ok(p)) return p;
  for (const k of listed) {
    const p = set.byKey.get(k);
    if (ok(p)) return p;
  }
  return undefined;
}

function notAllowedReason(nsList: readonly CompiledAuthorization[], set: CompiledPolicies, listed: readonly string[], wl: ConnectionInfo['dstWorkload']): string {
  const keys = new Set<string>();
  for (const p of [...nsList, ...set.global]) if (p.action === 'ALLOW' && !p.dryRun) keys.add(p.key);
  for (const k of listed) {
    const p = set.byKey.get(k);
    if (p && p.action === 'ALLOW' && !p.dryRun) keys.add(k);
  }
  const names = [...keys];
  const shown = names.slice(0, 5).join(', ') + (names.length > 5 ? `, … (${names.length - 5} more)` : '');
  const invalid = names.filter((k) => set.errors.has(k));
  const note = invalid.length ? `; ${invalid.join(', ')} could not be compiled and allow nothing` : '';
  return `no ALLOW policy matched (${names.length} apply to ${wl.namespace}/${wl.name}: ${shown})${note}`;
}

function shadowDecision(
  real: Decision,
  deny: CompiledAuthorization | undefined,
  dryDeny: CompiledAuthorization | undefined,
  allAllowCount: number,
  allowMatch: CompiledAuthorization | undefined,
  nsList: readonly CompiledAuthorization[],
  set: CompiledPolicies,
  listed: readonly string[],
  peer: PeerView,
  wl: ConnectionInfo['dstWorkload'],
): { allowed: boolean; policy?: string; reason: string } {
  if (deny) return real;
  if (dryDeny) return { allowed: false, policy: dryDeny.key, reason: `dry-run DENY policy ${dryDeny.key} would deny` };
  if (allAllowCount === 0) return real;
  const a = allowMatch ?? findAllow(nsList, set, listed, peer, true);
  if (a) return { allowed: true, policy: a.key, reason: `${a.dryRun ? 'dry-run ' : ''}ALLOW policy ${a.key} would allow` };
  return { allowed: false, reason: `no ALLOW policy would match once the dry-run ALLOW policies of ${wl.namespace}/${wl.name} are enforced` };
}

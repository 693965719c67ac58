// AuthorizationPolicies handed to waypoints (placement.ts decides which) → the L7Authorization the
// waypoint enforces (src/xds/routes.ts), HTTP fields included, and what the status must add.
//
// A waypoint sees the HTTP request and the peer identity of the HBONE connection it came on, so it
// can enforce every field of Istio's schema but the ones that need more than that: request
// principals and `request.auth.*` (JWT, RequestAuthentication), `remoteIpBlocks` / `remote.ip`
// (X-Forwarded-For, which nothing in the mesh vouches for), `connection.sni` and
// `experimental.*`. Those fail closed exactly as HTTP fields do at ztunnel (authz.ts, after istiod's
// handleRule): an ALLOW rule that uses one is dropped (it allows less), a DENY rule keeps the rest
// of its fields without it (it denies more), and the status says so.
// CUSTOM (an external authorizer) is not supported in the waypoint either: it is enforced as a
// DENY of what its rules match; AUDIT has no effect and produces nothing.
import type { L7Authorization, L7Condition, L7Operation, L7Rule, L7Source } from '../../xds/index.ts';
import type { ParsedPolicy } from './authz.ts';
import { isRecord, uniqSorted } from './kube.ts';
import { condition, ENFORCED } from './status.ts';
import type { KubeObject, PolicyStatus } from './types.ts';

export const REASON_UNSUPPORTED_IN_WAYPOINT = 'UnsupportedInWaypoint';

const SOURCE_UNSUPPORTED = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks'];
/** The `when` keys the waypoint evaluates. */
const WHEN_SUPPORTED = new Set(['source.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port']);
const HEADER_KEY = /^request\.headers\[[^\]]+\]$/;

export interface CompiledL7 {
  /** null for AUDIT (nothing to enforce). */
  authorization: L7Authorization | null;
  /** The fields the waypoint cannot enforce, e.g. "when request.auth.claims[iss]", sorted. */
  unsupported: string[];
  /** 1-based indexes of the rules that use them. */
  unsupportedRules: number[];
}

/** `p` must be valid (no errors): parseAuthorizationPolicy has checked the spec's shape. */
export function compileL7Authorization(obj: KubeObject, p: ParsedPolicy, targets: string[], trustDomain: string): CompiledL7 {
  const spec = isRecord(obj.spec) ? obj.spec : {};
  const rawRules = Array.isArray(spec.rules) ? (spec.rules as unknown[]) : [];
  const action = p.action === 'ALLOW' ? 'ALLOW' : 'DENY';
  const unsupported = new Set<string>();
  const unsupportedRules: number[] = [];
  const rules: L7Rule[] = [];
  rawRules.forEach((raw, i) => {
    const seen: string[] = [];
    const rule = compileRule(isRecord(raw) ? raw : {}, p.namespace, trustDomain, seen);
    if (seen.length > 0) {
      for (const s of seen) unsupported.add(s);
      unsupportedRules.push(i + 1);
      if (action === 'ALLOW') return;
    }
    rules.push(rule);
  });
  if (p.action === 'AUDIT') return { authorization: null, unsupported: [], unsupportedRules: [] };
  return {
    authorization: { name: p.name, namespace: p.namespace, targets: uniqSorted(targets), action, rules, dryRun: p.dryRun },
    unsupported: uniqSorted(unsupported),
    unsupportedRules,
  };
}

/**
 * The status once the policy is also compiled for a waypoint: the Enforced condition names what
 * the waypoint could not enforce and how it fails closed (False: not enforced as written).
 */
export function withWaypointNote(status: PolicyStatus, p: ParsedPolicy, l7: CompiledL7, waypoints: string[]): PolicyStatus {
  const notes: string[] = [];
  if (l7.unsupported.length > 0) {
    const how =
      p.action === 'ALLOW'
        ? `this ALLOW policy is enforced there without rule ${l7.unsupportedRules.join(', ')}: it allows less than written${l7.authorization?.rules.length === 0 ? ' (no rule is left, so it allows nothing)' : ''}`
        : `rule ${l7.unsupportedRules.join(', ')} of this ${p.action} policy is enforced there without those fields: it denies more than written`;
    notes.push(`waypoint ${waypoints.join(', ')} cannot enforce ${l7.unsupported.join(', ')}, so ${how}`);
  }
  if (p.action === 'CUSTOM') notes.push(`waypoint ${waypoints.join(', ')} cannot consult an external authorizer, so it denies what the CUSTOM policy's rules match`);
  if (p.action === 'AUDIT') notes.push(`waypoint ${waypoints.join(', ')} does not audit: an AUDIT policy has no effect`);
  if (notes.length === 0) return status;
  const conditions = status.conditions.map((c) => {
    if (c.type !== ENFORCED) return c;
    const msg = `${c.message} Not as written: ${notes.join('; ')}.`;
    return c.status === 'True' ? condition(ENFORCED, false, REASON_UNSUPPORTED_IN_WAYPOINT, msg, c.observedGeneration) : { ...c, message: msg };
  });
  return { conditions };
}

const strs = (v: unknown): string[] => (Array.isArray(v) ? (v as unknown[]).map((x) => String(x)) : []);
const nums = (v: unknown): number[] => strs(v).map(Number);

function compileRule(r: Record<string, unknown>, ns: string, trustDomain: string, unsupported: string[]): L7Rule {
  const from = (Array.isArray(r.from) ? (r.from as unknown[]) : []).map((e): L7Source => {
    const s = isRecord(e) && isRecord(e.source) ? e.source : {};
    for (const k of SOURCE_UNSUPPORTED) if (s[k] !== undefined) unsupported.push(k);
    // serviceAccounts are principals of the mesh's trust domain (istiod's stringToServiceAccountMatch).
    const sa = (v: unknown) => strs(v).map((x) => (x.includes('/') ? `${trustDomain}/ns/${x.split('/')[0]}/sa/${x.split('/')[1]}` : `${trustDomain}/ns/${ns}/sa/${x}`));
    return {
      principals: [...strs(s.principals), ...sa(s.serviceAccounts)],
      notPrincipals: [...strs(s.notPrincipals), ...sa(s.notServiceAccounts)],
      namespaces: strs(s.namespaces),
      notNamespaces: strs(s.notNamespaces),
      ipBlocks: strs(s.ipBlocks),
      notIpBlocks: strs(s.notIpBlocks),
    };
  });
  const to = (Array.isArray(r.to) ? (r.to as unknown[]) : []).map((e): L7Operation => {
    const o = isRecord(e) && isRecord(e.operation) ? e.operation : {};
    return {
      hosts: strs(o.hosts),
      notHosts: strs(o.notHosts),
      ports: nums(o.ports),
      notPorts: nums(o.notPorts),
      methods: strs(o.methods),
      notMethods: strs(o.notMethods),
      paths: strs(o.paths),
      notPaths: strs(o.notPaths),
    };
  });
  const when: L7Condition[] = [];
  for (const c of Array.isArray(r.when) ? (r.when as unknown[]) : []) {
    if (!isRecord(c) || typeof c.key !== 'string') continue;
    if (!WHEN_SUPPORTED.has(c.key) && !HEADER_KEY.test(c.key)) {
      unsupported.push(`when ${c.key}`);
      continue;
    }
    // Header names are case-insensitive: the waypoint looks them up lower case.
    const key = HEADER_KEY.test(c.key) ? c.key.toLowerCase() : c.key;
    when.push({ key, values: strs(c.values), notValues: strs(c.notValues) });
  }
  return { from, to, when };
}

// AuthorizationPolicy (security.mesh.io/v1, Istio's security/v1 schema) → the L4 Authorization
// ztunnel enforces, following istiod's ambient conversion (istio/istio
// pilot/pkg/serviceregistry/kube/controller/ambient/authorization.go, convertAuthorizationPolicy
// and handleRule) where it is sound, and stricter where Istio is silent:
//
// - A policy's rules are OR-ed; in a rule, `to`, `from` and each `when` are AND-ed clauses, the
//   entries of one `from`/`to` list are OR-ed, the fields of one source/operation are AND-ed
//   (Istio docs, reference/config/security/authorization-policy: "A match occurs when at least one
//   source, one operation and all conditions matches the request. An empty rule is always
//   matched."). So `rules: [{}]` allows (or denies) everything, and an ALLOW policy with no rules
//   ("allow-nothing", `spec: {}`) matches nothing, which denies every request once it is the only
//   ALLOW policy ("If there are no ALLOW policies for the workload, allow the request. If any of
//   the ALLOW policies match the request, allow the request. Deny the request.").
// - Fields ztunnel cannot see (HTTP: hosts, methods, paths, requestPrincipals, remoteIpBlocks,
//   `when` keys other than source.ip/namespace/principal and destination.ip/port) make the rule
//   fail closed, as istiod does: an ALLOW rule that uses them is dropped (it allows less); a DENY
//   rule is kept without them (it denies more). Unlike Istio the status says so as a failed
//   Enforced condition, not a warning, and a policy whose workloads have a waypoint is left to it.
// - Principals stay as written, in the form ztunnel matches ("<trust domain>/ns/<ns>/sa/<sa>",
//   SPIFFE without the scheme; config.proto Match.principals): "*", "prefix*" and "*suffix" become
//   presence/prefix/suffix matches as in istiod's stringToMatch. Trust-domain aliases are not
//   rewritten (istiod's ambient path does not either: "TODO: TDA"); a principal naming another
//   trust domain gets a warning in the status because it can never match.
// - Where istiod skips a malformed value silently (a bad CIDR or port widens a DENY or narrows an
//   ALLOW without a word), the policy is rejected: Accepted=False, nothing emitted.
import { type Action, type Cidr, type Clause, emptyMatch, type Rule, type Scope, type StringMatch } from '../../xds/index.ts';
import { isRecord, nameOf, namespaceOf, parseCidr, uniqSorted, type Labels } from './kube.ts';
import { REASON } from './status.ts';
import { ANNOTATION_DRY_RUN, type KubeObject } from './types.ts';

export type PolicyAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

export interface PolicyError {
  reason: string;
  message: string;
}

export interface TargetRef {
  kind: string;
  namespace: string;
  name: string;
}

export interface ParsedPolicy {
  /** "AuthorizationPolicy/ns/name", the policyStatus key. */
  key: string;
  namespace: string;
  name: string;
  generation: number;
  errors: PolicyError[];
  warnings: string[];
  action: PolicyAction;
  scope: Scope;
  /** matchLabels; null for NAMESPACE and GLOBAL scope. */
  selector: Labels | null;
  /** Set when the policy targets a waypoint or service directly (Istio: not for ztunnel). */
  targetRefs: TargetRef[] | null;
  /** The rules in the form ztunnel gets when no waypoint can take the policy (fail-closed). */
  rules: Rule[];
  /** The fields that need a waypoint, sorted. */
  l7Fields: string[];
  /** 1-based indexes of the rules that use them. */
  l7Rules: number[];
  dryRun: boolean;
}

const ACTIONS: readonly string[] = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'];
const SPEC_KEYS = new Set(['selector', 'action', 'rules', 'provider', 'targetRef', 'targetRefs']);
const RULE_KEYS = new Set(['from', 'to', 'when']);
const SOURCE_L4 = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks', 'serviceAccounts', 'notServiceAccounts'];
const SOURCE_L7 = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks'];
const OPERATION_L4 = ['ports', 'notPorts'];
const OPERATION_L7 = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];
/** istiod's l4WhenAttributes. */
const WHEN_L4 = new Set(['source.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port']);
/** The condition keys Istio accepts (istio/istio pkg/config/security ValidateAttribute). */
const WHEN_KEYS = new Set([...WHEN_L4, 'remote.ip', 'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter', 'connection.sni']);
const WHEN_PREFIXES = ['request.headers[', 'request.auth.claims[', 'experimental.envoy.filters.'];
const PRINCIPAL = /^[^/*]+\/ns\/[^/*]+\/sa\/[^/*]+$/;

export { emptyMatch };

/** Parses and compiles one policy. Never throws: problems land in `errors`. */
export function parseAuthorizationPolicy(obj: KubeObject, rootNamespace: string, trustDomain: string): ParsedPolicy {
  const namespace = namespaceOf(obj);
  const name = nameOf(obj);
  const errors: PolicyError[] = [];
  const warnings: string[] = [];
  const ctx: Ctx = { errors, warnings, trustDomain, namespace };
  const spec = isRecord(obj.spec) ? obj.spec : {};
  if (obj.spec !== undefined && !isRecord(obj.spec)) fail(ctx, REASON.invalidSpec, 'spec must be an object');
  for (const k of Object.keys(spec)) if (!SPEC_KEYS.has(k)) fail(ctx, REASON.invalidSpec, `unknown field spec.${k}`);

  const rawAction = spec.action ?? 'ALLOW';
  let action: PolicyAction = 'ALLOW';
  if (typeof rawAction === 'string' && ACTIONS.includes(rawAction)) action = rawAction as PolicyAction;
  else fail(ctx, REASON.unknownAction, `spec.action ${JSON.stringify(rawAction)} is not one of ALLOW, DENY, AUDIT, CUSTOM`);
  if (action === 'CUSTOM' && !(isRecord(spec.provider) && typeof spec.provider.name === 'string' && spec.provider.name)) {
    fail(ctx, REASON.invalidSpec, 'a CUSTOM policy needs spec.provider.name');
  }

  const selector = parseSelector(ctx, spec.selector);
  const scope: Scope = selector ? 'WORKLOAD_SELECTOR' : namespace === rootNamespace ? 'GLOBAL' : 'NAMESPACE';
  const targetRefs = parseTargetRefs(ctx, spec, namespace);
  if (targetRefs && selector) fail(ctx, REASON.invalidSpec, 'spec.selector and spec.targetRefs cannot be used together');

  const rules: Rule[] = [];
  const l7 = new Set<string>();
  const l7Rules: number[] = [];
  const specRules = spec.rules ?? [];
  if (!Array.isArray(specRules)) fail(ctx, REASON.invalidSpec, 'spec.rules must be a list');
  else {
    specRules.forEach((r: unknown, i) => {
      const { rule, l7Fields } = compileRule(ctx, r, `spec.rules[${i}]`);
      for (const f of l7Fields) l7.add(f);
      if (l7Fields.length > 0) l7Rules.push(i + 1);
      // istiod handleRule: "L7 policies never match for ALLOW; for DENY they will always match, so it is more restrictive".
      if (!(l7Fields.length > 0 && action === 'ALLOW')) rules.push(rule);
    });
  }
  const dryRun = obj.metadata?.annotations?.[ANNOTATION_DRY_RUN] === 'true';
  return {
    key: `AuthorizationPolicy/${namespace}/${name}`,
    namespace,
    name,
    generation: obj.metadata?.generation ?? 0,
    errors,
    warnings: uniqSorted(warnings),
    action,
    scope,
    selector,
    targetRefs,
    rules,
    l7Fields: uniqSorted(l7),
    l7Rules,
    dryRun,
  };
}

/** The Authorization ztunnel enforces; CUSTOM (an external authorizer only a waypoint can call) fails closed as DENY. */
export function ztunnelAction(p: ParsedPolicy): Action {
  return p.action === 'ALLOW' ? 'ALLOW' : 'DENY';
}

interface Ctx {
  errors: PolicyError[];
  warnings: string[];
  trustDomain: string;
  namespace: string;
}

function fail(ctx: Ctx, reason: string, message: string): void {
  ctx.errors.push({ reason, message });
}

function parseSelector(ctx: Ctx, sel: unknown): Labels | null {
  if (sel === undefined || sel === null) return null;
  if (!isRecord(sel)) return fail(ctx, REASON.invalidSpec, 'spec.selector must be an object'), null;
  const ml = sel.matchLabels ?? {};
  if (!isRecord(ml) || Object.values(ml).some((v) => typeof v !== 'string')) {
    return fail(ctx, REASON.invalidSpec, 'spec.selector.matchLabels must map label names to strings'), null;
  }
  for (const k of Object.keys(sel)) if (k !== 'matchLabels') fail(ctx, REASON.invalidSpec, `unknown field spec.selector.${k}`);
  // An empty selector selects the whole namespace, exactly what no selector does.
  return Object.keys(ml).length > 0 ? (ml as Labels) : null;
}

function parseTargetRefs(ctx: Ctx, spec: Record<string, unknown>, ns: string): TargetRef[] | null {
  const raw: unknown[] = [];
  if (spec.targetRef !== undefined) raw.push(spec.targetRef);
  if (Array.isArray(spec.targetRefs)) raw.push(...(spec.targetRefs as unknown[]));
  else if (spec.targetRefs !== undefined) fail(ctx, REASON.invalidSpec, 'spec.targetRefs must be a list');
  if (raw.length === 0) return null;
  const refs: TargetRef[] = [];
  for (const r of raw) {
    if (!isRecord(r) || typeof r.kind !== 'string' || typeof r.name !== 'string' || !r.name) {
      fail(ctx, REASON.invalidSpec, 'each targetRef needs a kind and a name');
      continue;
    }
    if (r.kind !== 'Gateway' && r.kind !== 'Service') {
      fail(ctx, REASON.invalidSpec, `targetRef kind ${r.kind} is not supported (Gateway or Service)`);
      continue;
    }
    refs.push({ kind: r.kind, namespace: typeof r.namespace === 'string' && r.namespace ? r.namespace : ns, name: r.name });
  }
  return refs;
}

function strings(ctx: Ctx, v: unknown, path: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) return fail(ctx, REASON.invalidSpec, `${path} must be a list of strings`), [];
  const out: string[] = [];
  for (const x of v as unknown[]) {
    const s = typeof x === 'number' ? String(x) : x;
    if (typeof s !== 'string' || s === '') fail(ctx, REASON.invalidSpec, `${path} has an empty or non-string value`);
    else out.push(s);
  }
  return out;
}

/** istiod's stringToMatch, after Istio's validation: one "*", at the start or the end. */
function stringMatches(ctx: Ctx, values: string[], path: string): StringMatch[] {
  return values.flatMap((v): StringMatch[] => {
    if (v === '*') return [{ presence: {} }];
    const inner = v.slice(1, -1);
    if (inner.includes('*') || (v.startsWith('*') && v.endsWith('*'))) {
      fail(ctx, REASON.invalidSpec, `${path}: "${v}" may only have one "*", at the start or the end`);
      return [];
    }
    if (v.startsWith('*')) return [{ suffix: v.slice(1) }];
    if (v.endsWith('*')) return [{ prefix: v.slice(0, -1) }];
    return [{ exact: v }];
  });
}

function principals(ctx: Ctx, values: string[], path: string): StringMatch[] {
  const ok = values.filter((v) => {
    if (v.startsWith('spiffe://')) {
      ctx.errors.push({ reason: REASON.invalidPrincipal, message: `${path}: "${v}" must be written without "spiffe://" (e.g. "${v.slice(9)}")` });
      return false;
    }
    if (!v.includes('*') && !PRINCIPAL.test(v)) {
      ctx.errors.push({ reason: REASON.invalidPrincipal, message: `${path}: "${v}" is not a principal (expected "<trust domain>/ns/<namespace>/sa/<service account>")` });
      return false;
    }
    const td = v.split('/')[0]!;
    if (!td.includes('*') && v.includes('/') && td !== ctx.trustDomain) {
      ctx.warnings.push(`${path}: "${v}" names trust domain "${td}" but the mesh's is "${ctx.trustDomain}", so it matches no workload of this mesh`);
    }
    return true;
  });
  return stringMatches(ctx, ok, path);
}

function cidrs(ctx: Ctx, values: string[], path: string): Cidr[] {
  return values.flatMap((v) => {
    const c = parseCidr(v);
    if (!c) ctx.errors.push({ reason: REASON.invalidCidr, message: `${path}: "${v}" is not an IP address or CIDR` });
    return c ? [c] : [];
  });
}

function ports(ctx: Ctx, values: string[], path: string): number[] {
  return values.flatMap((v) => {
    const n = /^\d{1,5}$/.test(v) ? Number(v) : 0;
    if (n < 1 || n > 65535) ctx.errors.push({ reason: REASON.invalidPort, message: `${path}: "${v}" is not a port number (1-65535)` });
    return n >= 1 && n <= 65535 ? [n] : [];
  });
}

function serviceAccounts(ctx: Ctx, values: string[], path: string): { namespace: string; serviceAccount: string }[] {
  return values.flatMap((v) => {
    const parts = v.split('/');
    if (parts.length > 2 || parts.some((p) => !p || p.includes('*'))) {
      fail(ctx, REASON.invalidSpec, `${path}: "${v}" is not "<service account>" or "<namespace>/<service account>"`);
      return [];
    }
    // istiod's stringToServiceAccountMatch: a bare name is in the policy's namespace.
    return [parts.length === 2 ? { namespace: parts[0]!, serviceAccount: parts[1]! } : { namespace: ctx.namespace, serviceAccount: v }];
  });
}

/** One list of `from` or `to` entries → one clause; reports the L7 fields it saw. */
function entries(ctx: Ctx, list: unknown, path: string, inner: 'source' | 'operation', l7: string[]): Clause | null {
  if (list === undefined || list === null) return null;
  if (!Array.isArray(list)) return fail(ctx, REASON.invalidSpec, `${path} must be a list`), null;
  if (list.length === 0) return null;
  const l4Keys = inner === 'source' ? SOURCE_L4 : OPERATION_L4;
  const l7Keys = inner === 'source' ? SOURCE_L7 : OPERATION_L7;
  const matches = (list as unknown[]).map((e, i) => {
    const p = `${path}[${i}].${inner}`;
    const body = isRecord(e) ? e[inner] : undefined;
    const m = emptyMatch();
    if (!isRecord(e) || Object.keys(e).some((k) => k !== inner) || !isRecord(body) || Object.keys(body).length === 0) {
      // Istio's validation: "`from.source` must not be empty" / "`to.operation` must not be empty".
      fail(ctx, REASON.invalidSpec, `${p} must be a non-empty object`);
      return m;
    }
    for (const k of Object.keys(body)) {
      if (l7Keys.includes(k)) {
        strings(ctx, body[k], `${p}.${k}`);
        l7.push(k);
      } else if (!l4Keys.includes(k)) fail(ctx, REASON.invalidSpec, `unknown field ${p}.${k}`);
    }
    const s = (k: string): string[] => strings(ctx, body[k], `${p}.${k}`);
    if (inner === 'operation') {
      m.destinationPorts = ports(ctx, s('ports'), `${p}.ports`);
      m.notDestinationPorts = ports(ctx, s('notPorts'), `${p}.notPorts`);
      return m;
    }
    if ((body.principals !== undefined || body.notPrincipals !== undefined) && (body.serviceAccounts !== undefined || body.notServiceAccounts !== undefined)) {
      fail(ctx, REASON.invalidSpec, `${p}: principals and serviceAccounts cannot be set together`);
    }
    m.principals = principals(ctx, s('principals'), `${p}.principals`);
    m.notPrincipals = principals(ctx, s('notPrincipals'), `${p}.notPrincipals`);
    m.namespaces = stringMatches(ctx, s('namespaces'), `${p}.namespaces`);
    m.notNamespaces = stringMatches(ctx, s('notNamespaces'), `${p}.notNamespaces`);
    m.sourceIps = cidrs(ctx, s('ipBlocks'), `${p}.ipBlocks`);
    m.notSourceIps = cidrs(ctx, s('notIpBlocks'), `${p}.notIpBlocks`);
    m.serviceAccounts = serviceAccounts(ctx, s('serviceAccounts'), `${p}.serviceAccounts`);
    m.notServiceAccounts = serviceAccounts(ctx, s('notServiceAccounts'), `${p}.notServiceAccounts`);
    return m;
  });
  return { matches };
}

/** One `when` condition → one clause (istiod: a positive and a negated match in one Match). */
function when(ctx: Ctx, c: unknown, path: string, l7: string[]): Clause | null {
  if (!isRecord(c) || typeof c.key !== 'string' || !c.key) return fail(ctx, REASON.invalidSpec, `${path} needs a key`), null;
  for (const k of Object.keys(c)) if (k !== 'key' && k !== 'values' && k !== 'notValues') fail(ctx, REASON.invalidSpec, `unknown field ${path}.${k}`);
  const key = c.key;
  const values = strings(ctx, c.values, `${path}.values`);
  const notValues = strings(ctx, c.notValues, `${path}.notValues`);
  if (values.length === 0 && notValues.length === 0) fail(ctx, REASON.invalidSpec, `${path} (${key}) needs values or notValues`);
  if (!WHEN_KEYS.has(key) && !WHEN_PREFIXES.some((p) => key.startsWith(p) && (p.endsWith('.') || key.endsWith(']')))) {
    return fail(ctx, REASON.invalidSpec, `${path}: "${key}" is not a supported condition key`), null;
  }
  const m = emptyMatch();
  if (!WHEN_L4.has(key)) {
    l7.push(`when ${key}`);
    return { matches: [m] };
  }
  const p = `${path} (${key})`;
  switch (key) {
    case 'source.ip':
      m.sourceIps = cidrs(ctx, values, p);
      m.notSourceIps = cidrs(ctx, notValues, p);
      break;
    case 'destination.ip':
      m.destinationIps = cidrs(ctx, values, p);
      m.notDestinationIps = cidrs(ctx, notValues, p);
      break;
    case 'destination.port':
      m.destinationPorts = ports(ctx, values, p);
      m.notDestinationPorts = ports(ctx, notValues, p);
      break;
    case 'source.namespace':
      m.namespaces = stringMatches(ctx, values, p);
      m.notNamespaces = stringMatches(ctx, notValues, p);
      break;
    case 'source.principal':
      m.principals = principals(ctx, values, p);
      m.notPrincipals = principals(ctx, notValues, p);
      break;
  }
  return { matches: [m] };
}

function compileRule(ctx: Ctx, r: unknown, path: string): { rule: Rule; l7Fields: string[] } {
  const l7: string[] = [];
  if (!isRecord(r)) return fail(ctx, REASON.invalidSpec, `${path} must be an object`), { rule: { clauses: [] }, l7Fields: [] };
  for (const k of Object.keys(r)) if (!RULE_KEYS.has(k)) fail(ctx, REASON.invalidSpec, `unknown field ${path}.${k}`);
  const clauses: Clause[] = [];
  // istiod's order: the `to` clause, then `from`, then one per `when`.
  const to = entries(ctx, r.to, `${path}.to`, 'operation', l7);
  if (to) clauses.push(to);
  const from = entries(ctx, r.from, `${path}.from`, 'source', l7);
  if (from) clauses.push(from);
  if (r.when !== undefined) {
    if (!Array.isArray(r.when)) fail(ctx, REASON.invalidSpec, `${path}.when must be a list`);
    else
      (r.when as unknown[]).forEach((c, i) => {
        const cl = when(ctx, c, `${path}.when[${i}]`, l7);
        if (cl) clauses.push(cl);
      });
  }
  return { rule: { clauses }, l7Fields: uniqSorted(l7) };
}

// PeerAuthentication (security.mesh.io/v1, Istio's schema) compiled into DENY Authorizations with
// origin PEER_AUTHENTICATION (proto/mesh/config.proto, "Authorization"): STRICT is "deny any
// connection without a verified peer identity", port-level modes narrow or exempt ports.
//
// Precedence is Istio's: a workload policy (selector) over the namespace's over the mesh-wide one
// (root namespace, no selector); UNSET inherits; among policies of one level the oldest wins
// (istio/istio .../ambient/authorization.go, convertedSelectorPeerAuthentications). Because a
// namespace's PERMISSIVE must override a mesh-wide STRICT, and a GLOBAL DENY cannot be
// overridden, STRICT is resolved per workload as istiod does: every workload whose effective mode
// is STRICT lists one shared policy, "<root>/converted_static_strict"; a workload policy with
// port-level exceptions compiles to its own "<ns>/converted_peer_authentication_<name>" instead.
// Names contain "_", which no Kubernetes object name can, so they never collide with an
// AuthorizationPolicy's. Only workloads in the mesh get them: ztunnel does not capture the others.
import type { Authorization, Match } from '../../xds/index.ts';
import { emptyMatch } from './authz.ts';
import { isRecord, nameOf, namespaceOf, olderFirst, selects, type Labels } from './kube.ts';
import { ACCEPTED, condition, ENFORCED, policyStatus, REASON } from './status.ts';
import type { KubeObject, PolicyStatus } from './types.ts';
import type { PodWorkload } from './workloads.ts';

type Mode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';
const MODES: readonly string[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];
export const STATIC_STRICT = 'converted_static_strict';

export interface ParsedPeerAuthn {
  obj: KubeObject;
  key: string;
  namespace: string;
  name: string;
  generation: number;
  errors: string[];
  selector: Labels | null;
  mode: Mode;
  ports: Map<number, Mode>;
}

function readMode(v: unknown, path: string, errors: string[]): Mode {
  if (v === undefined || v === null) return 'UNSET';
  if (!isRecord(v)) return errors.push(`${path} must be an object`), 'UNSET';
  const m = v.mode ?? 'UNSET';
  if (typeof m === 'string' && MODES.includes(m)) return m as Mode;
  errors.push(`${path}.mode ${JSON.stringify(m)} is not one of ${MODES.join(', ')}`);
  return 'UNSET';
}

function parse(obj: KubeObject): ParsedPeerAuthn {
  const errors: string[] = [];
  const spec = isRecord(obj.spec) ? obj.spec : {};
  for (const k of Object.keys(spec)) if (!['selector', 'mtls', 'portLevelMtls'].includes(k)) errors.push(`unknown field spec.${k}`);
  let selector: Labels | null = null;
  if (spec.selector !== undefined) {
    const ml = isRecord(spec.selector) ? spec.selector.matchLabels : undefined;
    if (!isRecord(spec.selector) || (ml !== undefined && (!isRecord(ml) || Object.values(ml).some((x) => typeof x !== 'string')))) {
      errors.push('spec.selector.matchLabels must map label names to strings');
    } else if (isRecord(ml) && Object.keys(ml).length > 0) selector = ml as Labels;
  }
  const mode = readMode(spec.mtls, 'spec.mtls', errors);
  const ports = new Map<number, Mode>();
  if (spec.portLevelMtls !== undefined) {
    if (!isRecord(spec.portLevelMtls)) errors.push('spec.portLevelMtls must map port numbers to {mode}');
    else {
      // Istio's validation: "mesh/namespace-wide PeerAuthentication cannot have port level mTLS".
      if (!selector && Object.keys(spec.portLevelMtls).length > 0) errors.push('spec.portLevelMtls needs a spec.selector (port-level mTLS applies to the ports of selected workloads)');
      for (const [p, v] of Object.entries(spec.portLevelMtls)) {
        const n = /^\d{1,5}$/.test(p) ? Number(p) : 0;
        if (n < 1 || n > 65535) errors.push(`spec.portLevelMtls: "${p}" is not a port number (1-65535)`);
        else ports.set(n, readMode(v, `spec.portLevelMtls.${p}`, errors));
      }
    }
  }
  const namespace = namespaceOf(obj);
  const name = nameOf(obj);
  return { obj, key: `PeerAuthentication/${namespace}/${name}`, namespace, name, generation: obj.metadata?.generation ?? 0, errors, selector, mode, ports };
}

const strictMatch = (extra: Partial<Match>): Match => ({ ...emptyMatch(), notPrincipals: [{ presence: {} }], ...extra });

function denyAuthorization(name: string, namespace: string, match: Match): Authorization {
  return { name, namespace, scope: 'WORKLOAD_SELECTOR', action: 'DENY', rules: [{ clauses: [{ matches: [match] }] }], dryRun: false, origin: 'PEER_AUTHENTICATION' };
}

export interface PeerAuthnResult {
  authorizations: Map<string, Authorization>;
  /** uid → keys of the Authorizations the workload lists. */
  attach: Map<string, string[]>;
  status: Map<string, PolicyStatus>;
}

export function compilePeerAuthentications(objs: KubeObject[], workloads: PodWorkload[], rootNamespace: string): PeerAuthnResult {
  const index = indexPeerAuthentications(objs, rootNamespace);
  const authorizations = new Map<string, Authorization>();
  const attach = new Map<string, string[]>();
  const effectiveOn = new Map<string, number>();
  const selectedBy = new Map<string, number>();
  const count = (m: Map<string, number>, k: string): void => void m.set(k, (m.get(k) ?? 0) + 1);
  for (const w of workloads) {
    const r = peerAuthnOf(index, w);
    if (!r) continue;
    for (const k of r.selectedBy) count(selectedBy, k);
    for (const k of r.effectiveOn) count(effectiveOn, k);
    for (const [k, a] of r.authorizations) authorizations.set(k, a);
    if (r.keys.length) attach.set(w.workload.uid, r.keys);
  }
  const status = peerAuthnStatus(index, (k) => (selectedBy.get(k) ?? 0) > 0, (k) => effectiveOn.has(k));
  return { authorizations, attach, status };
}

/** The PeerAuthentications parsed and ordered for lookups per workload. */
export interface PeerAuthnIndex {
  rootNamespace: string;
  /** Oldest first. */
  parsed: ParsedPeerAuthn[];
  /** The oldest namespace-wide policy of each namespace (the root namespace's is the mesh-wide one). */
  nsWide: Map<string, ParsedPeerAuthn>;
  selectorsByNs: Map<string, ParsedPeerAuthn[]>;
}

export function indexPeerAuthentications(objs: KubeObject[], rootNamespace: string): PeerAuthnIndex {
  const parsed = objs.map(parse).sort((a, b) => olderFirst(a.obj, b.obj));
  const valid = parsed.filter((p) => p.errors.length === 0);
  const nsWide = new Map<string, ParsedPeerAuthn>();
  for (const p of valid) if (!p.selector && !nsWide.has(p.namespace)) nsWide.set(p.namespace, p);
  const selectorsByNs = new Map<string, ParsedPeerAuthn[]>();
  for (const p of valid) if (p.selector) selectorsByNs.set(p.namespace, [...(selectorsByNs.get(p.namespace) ?? []), p]);
  return { rootNamespace, parsed, nsWide, selectorsByNs };
}

/** What the PeerAuthentications make of one workload. */
export interface WorkloadPeerAuthn {
  /** Keys of the Authorizations the workload lists. */
  keys: string[];
  /** Those Authorizations (one workload's value of a key is every workload's). */
  authorizations: [string, Authorization][];
  /** policyStatus keys of the workload policies that select it. */
  selectedBy: string[];
  /** policyStatus keys of the policies in effect on it. */
  effectiveOn: string[];
}

/** null for a workload outside the mesh: ztunnel does not capture it, so nothing applies. */
export function peerAuthnOf(index: PeerAuthnIndex, w: PodWorkload): WorkloadPeerAuthn | null {
  if (w.workload.tunnelProtocol !== 'HBONE') return null;
  const { rootNamespace, nsWide, selectorsByNs } = index;
  const ns = w.workload.namespace;
  const labels = w.pod.metadata?.labels ?? {};
  const mesh = nsWide.get(rootNamespace);
  const nsPol = ns === rootNamespace ? undefined : nsWide.get(ns);
  const candidates = (selectorsByNs.get(ns) ?? []).filter((p) => selects(p.selector!, labels));
  const out: WorkloadPeerAuthn = { keys: [], authorizations: [], selectedBy: candidates.map((c) => c.key), effectiveOn: [] };
  const wl = candidates[0];
  let strict = mesh?.mode === 'STRICT';
  if (mesh) out.effectiveOn.push(mesh.key);
  if (nsPol) out.effectiveOn.push(nsPol.key);
  if (nsPol && nsPol.mode !== 'UNSET') strict = nsPol.mode === 'STRICT';
  if (wl) {
    out.effectiveOn.push(wl.key);
    if (wl.mode !== 'UNSET') strict = wl.mode === 'STRICT';
  }
  const relaxed = wl ? [...wl.ports].filter(([, m]) => m === 'PERMISSIVE' || m === 'DISABLE').map(([p]) => p).sort((a, b) => a - b) : [];
  const strictPorts = wl ? [...wl.ports].filter(([, m]) => m === 'STRICT').map(([p]) => p).sort((a, b) => a - b) : [];
  const emit = (key: string, a: Authorization): void => {
    out.authorizations.push([key, a]);
    out.keys.push(key);
  };
  if (wl && strict && relaxed.length > 0) {
    const name = `converted_peer_authentication_${wl.name}`;
    emit(`${ns}/${name}`, denyAuthorization(name, ns, strictMatch({ notDestinationPorts: relaxed })));
  } else if (wl && !strict && strictPorts.length > 0) {
    const name = `converted_peer_authentication_${wl.name}`;
    emit(`${ns}/${name}`, denyAuthorization(name, ns, strictMatch({ destinationPorts: strictPorts })));
  } else if (strict) {
    emit(`${rootNamespace}/${STATIC_STRICT}`, denyAuthorization(STATIC_STRICT, rootNamespace, strictMatch({})));
  }
  return out;
}

/** Every PeerAuthentication's status, given which policies select and which are in effect on some workload. */
export function peerAuthnStatus(index: PeerAuthnIndex, selectsSome: (key: string) => boolean, effectiveOnSome: (key: string) => boolean): Map<string, PolicyStatus> {
  const status = new Map<string, PolicyStatus>();
  for (const p of index.parsed) {
    const gen = p.generation;
    if (p.errors.length > 0) {
      status.set(p.key, policyStatus(condition(ACCEPTED, false, REASON.invalidSpec, p.errors.join('; '), gen), condition(ENFORCED, false, REASON.invalid, 'not enforced until the spec is fixed; other policies are unaffected', gen)));
      continue;
    }
    const winner = p.selector ? null : index.nsWide.get(p.namespace);
    const accepted = condition(ACCEPTED, true, REASON.accepted, 'the policy is valid', gen);
    if (winner && winner !== p) {
      status.set(p.key, policyStatus(accepted, condition(ENFORCED, false, REASON.conflicted, `PeerAuthentication ${winner.namespace}/${winner.name} is older and takes precedence (Istio: the oldest policy wins)`, gen)));
      continue;
    }
    if (p.selector && selectsSome(p.key) && !effectiveOnSome(p.key)) {
      status.set(p.key, policyStatus(accepted, condition(ENFORCED, false, REASON.conflicted, 'an older PeerAuthentication selects the same workloads and takes precedence (Istio: the oldest policy wins)', gen)));
      continue;
    }
    status.set(p.key, policyStatus(accepted, condition(ENFORCED, true, REASON.enforced, describe(p, index.rootNamespace), gen)));
  }
  return status;
}

function describe(p: ParsedPeerAuthn, rootNamespace: string): string {
  const where = p.selector ? 'the selected workloads' : p.namespace === rootNamespace ? 'every mesh workload without a namespace or workload policy' : `mesh workloads of namespace ${p.namespace} without a workload policy`;
  const base: Record<Mode, string> = {
    STRICT: `STRICT: ztunnel refuses plaintext connections to ${where}`,
    PERMISSIVE: `PERMISSIVE: ztunnel accepts plaintext and mTLS connections to ${where}`,
    // Ambient has no "plaintext between mesh pods" mode (Istio docs: DISABLE is treated as PERMISSIVE in ambient).
    DISABLE: `DISABLE acts as PERMISSIVE in the mesh: connections between mesh workloads stay mTLS, plaintext is accepted by ${where}`,
    UNSET: `UNSET: ${where} inherit the mode of the enclosing policy`,
  };
  const ports = [...p.ports].sort((a, b) => a[0] - b[0]).map(([port, m]) => `${port}=${m}`);
  return ports.length ? `${base[p.mode]}; ports ${ports.join(', ')}` : base[p.mode];
}

// The analysis: pure functions from what was read (the cluster's objects, the controller's model
// of them, the flows the relay still keeps, the ztunnels' certificates) to findings. Reading is
// gather.ts's job, so that every rule is tested on plain objects.
import type * as k8s from '@kubernetes/client-node';
import {
  type ClusterSnapshot,
  type Condition,
  DATAPLANE_MODES,
  DEFAULT_MODEL_OPTIONS,
  type KubeObject,
  LABEL_DATAPLANE_MODE,
  LABEL_GATEWAY_NAME,
  type MeshModel,
  ROUTE_CONTROLLER,
  type RouteParentStatus,
} from '../../controller/model/index.ts';
import type { Flow } from '../../flows/types.ts';
import type { DumpedCertificate } from '../ztunnel-config-format.ts';
import { type Finding, finding } from './findings.ts';

export interface AnalyzeInput {
  snapshot: ClusterSnapshot;
  model: MeshModel;
  /** Flows the relay keeps (the DROPPED ones are enough), or why they could not be read. */
  flows: Flow[] | { error: string };
  /** Each node's ztunnel certificates, or why they could not be read. */
  certificates: { node: string; certificates: DumpedCertificate[] }[] | { error: string };
  now: Date;
}

const meta = (o: { metadata?: k8s.V1ObjectMeta }) => ({ namespace: o.metadata?.namespace ?? '', name: o.metadata?.name ?? '', labels: o.metadata?.labels ?? {} });
const MODES = DATAPLANE_MODES as readonly string[];
const quoteModes = MODES.join(', ');

/** Namespace and pod labels whose dataplane mode is not one we know; pods opted out, and why. */
export function labelFindings(s: ClusterSnapshot): Finding[] {
  const out: Finding[] = [];
  const nsMode = new Map<string, string | undefined>();
  for (const ns of s.namespaces) {
    const { name, labels } = meta(ns);
    const mode = labels[LABEL_DATAPLANE_MODE];
    nsMode.set(name, mode);
    if (mode !== undefined && !MODES.includes(mode)) {
      out.push(
        finding(
          'MESH0101',
          { kind: 'Namespace', name },
          `label ${LABEL_DATAPLANE_MODE}=${mode} is not a mode the mesh knows (${quoteModes}): none of the namespace's pods are captured, and its traffic is plaintext`,
          `kubectl label namespace ${name} ${LABEL_DATAPLANE_MODE}=ambient --overwrite (or ${LABEL_DATAPLANE_MODE}- to leave the mesh on purpose)`,
        ),
      );
    }
  }
  for (const pod of s.pods) {
    const { namespace, name, labels } = meta(pod);
    const mode = labels[LABEL_DATAPLANE_MODE];
    const nsAmbient = nsMode.get(namespace) === 'ambient';
    // Waypoints label their own pods out of capture: a waypoint never routes through itself.
    if (labels[LABEL_GATEWAY_NAME] !== undefined) continue;
    const obj = { kind: 'Pod', namespace, name };
    if (mode !== undefined && !MODES.includes(mode)) {
      out.push(
        finding(
          'MESH0102',
          obj,
          `label ${LABEL_DATAPLANE_MODE}=${mode} is not a mode the mesh knows (${quoteModes}); ${nsAmbient ? 'the pod is captured anyway (only "none" opts a pod out)' : "the pod is not captured (its namespace is not in the mesh)"}`,
          `set the label to none to opt the pod out, or remove it (kubectl label pod -n ${namespace} ${name} ${LABEL_DATAPLANE_MODE}-); for a Deployment's pods, change the pod template`,
        ),
      );
      continue;
    }
    // A pod that finished or is leaving has no traffic to speak of.
    const phase = pod.status?.phase;
    if (!nsAmbient || phase === 'Succeeded' || phase === 'Failed' || pod.metadata?.deletionTimestamp) continue;
    if (pod.spec?.hostNetwork) {
      out.push(
        finding(
          'MESH0104',
          obj,
          `the pod uses the host network in mesh namespace ${namespace}: the mesh captures only pods with their own network namespace, so its traffic is plaintext and not authorized by the mesh`,
          'nothing to do if this is intended (node agents, CNI pods); otherwise run it without hostNetwork',
        ),
      );
    } else if (mode === 'none') {
      out.push(
        finding(
          'MESH0103',
          obj,
          `opted out by its label ${LABEL_DATAPLANE_MODE}=none although namespace ${namespace} is in the mesh: its connections are plaintext and STRICT destinations refuse them`,
          `remove the label to bring the pod into the mesh (kubectl label pod -n ${namespace} ${name} ${LABEL_DATAPLANE_MODE}-; for a Deployment's pods, change the pod template)`,
        ),
      );
    }
  }
  return out;
}

/** Why a policy condition is False, and what to do about it, by the controller's reason. */
function policyFix(kind: string, namespace: string, name: string, c: Condition): string {
  switch (c.reason) {
    case 'L7FieldsWithoutWaypoint':
    case 'CustomWithoutWaypoint':
    case 'AuditWithoutWaypoint':
      return `give namespace ${namespace} a waypoint (meshctl waypoint apply -n ${namespace} --enroll-namespace) and target it with targetRefs, or remove the L7 fields so that ztunnel can enforce the policy as written`;
    case 'WaypointNotFound':
      return `create the waypoint the policy targets (meshctl waypoint apply -n ${namespace} --name <name>) or correct its targetRefs`;
    case 'Conflicted':
      return `keep one of the conflicting ${kind}s (kubectl get ${kind.toLowerCase()} -n ${namespace})`;
    default:
      return `correct the spec (kubectl edit ${kind.toLowerCase()} -n ${namespace} ${name}); the condition's message says what is wrong`;
  }
}

/** Policies not accepted, or not enforced as written where they apply — from their status, or
 * from the controller's model when no controller has written one. */
export function policyFindings(s: ClusterSnapshot, m: MeshModel): Finding[] {
  const out: Finding[] = [];
  const all: [string, KubeObject][] = [...s.authorizationPolicies.map((o) => ['AuthorizationPolicy', o] as [string, KubeObject]), ...s.peerAuthentications.map((o) => ['PeerAuthentication', o] as [string, KubeObject])];
  for (const [kind, obj] of all) {
    const { namespace, name } = meta(obj);
    const written = (obj as { status?: { conditions?: Condition[] } }).status?.conditions;
    const conditions = written?.length ? written : (m.policyStatus.get(`${kind}/${namespace}/${name}`)?.conditions ?? []);
    const note = written?.length ? '' : ' (as meshctl computes it: no controller has written this status yet)';
    for (const c of conditions) {
      if (c.status !== 'False') continue;
      if (c.type === 'Accepted') out.push(finding('MESH0201', { kind, namespace, name }, `not accepted (${c.reason}): ${c.message.replace(/\.$/, '')}${note}`, policyFix(kind, namespace, name, c)));
      else if (c.type === 'Enforced') out.push(finding('MESH0202', { kind, namespace, name }, `cannot be enforced as written where it applies (${c.reason}): ${c.message.replace(/\.$/, '')}${note}`, policyFix(kind, namespace, name, c)));
    }
  }
  return out;
}

/** Waypoints something uses that are missing or cannot take traffic (both fail closed). */
export function waypointFindings(m: MeshModel): Finding[] {
  const out: Finding[] = [];
  for (const w of m.waypoints.values()) {
    const [namespace = '', name = ''] = w.gateway.split('/');
    const users = w.users.length ? w.users.join(', ') : 'nothing yet';
    const obj = { kind: 'Gateway', namespace, name };
    if (!w.found) {
      out.push(finding('MESH0301', obj, `waypoint ${w.gateway} is used by ${users} but does not exist: their traffic is refused until it does (fail closed)`, `meshctl waypoint apply -n ${namespace} --name ${name} --wait, or remove the mesh.io/use-waypoint label from its users`));
    } else if (!w.ready) {
      out.push(finding('MESH0302', obj, `waypoint ${w.gateway} is not ready (${w.problem || 'not programmed'}); ${users} cannot be reached until it is (fail closed)`, `meshctl waypoint status -n ${namespace} ${name}; kubectl -n ${namespace} get deploy,pods -l ${LABEL_GATEWAY_NAME}=${name}`));
    }
  }
  return out;
}

/** Services that select pods but have no ready endpoint: ztunnel refuses connections to them. */
export function serviceFindings(s: ClusterSnapshot): Finding[] {
  const out: Finding[] = [];
  const ready = new Map<string, number>();
  for (const sl of s.endpointSlices) {
    const { namespace, labels } = meta(sl);
    const svc = labels['kubernetes.io/service-name'];
    if (!svc) continue;
    const n = (sl.endpoints ?? []).filter((e) => e.conditions?.ready !== false && (e.addresses?.length ?? 0) > 0).length;
    ready.set(`${namespace}/${svc}`, (ready.get(`${namespace}/${svc}`) ?? 0) + n);
  }
  for (const svc of s.services) {
    const { namespace, name, labels } = meta(svc);
    const selector = svc.spec?.selector ?? {};
    if (svc.spec?.type === 'ExternalName' || Object.keys(selector).length === 0) continue;
    if (labels[LABEL_GATEWAY_NAME] !== undefined) continue; // a waypoint's own: MESH0302 says more
    if ((ready.get(`${namespace}/${name}`) ?? 0) > 0) continue;
    const sel = Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(',');
    const matching = s.pods.filter((p) => meta(p).namespace === namespace && Object.entries(selector).every(([k, v]) => meta(p).labels[k] === v));
    const why = matching.length === 0 ? `no pod matches its selector ${sel}` : `${matching.length} pod(s) match its selector ${sel} but none is ready`;
    out.push(
      finding('MESH0401', { kind: 'Service', namespace, name }, `has no ready endpoint: ${why}; connections to it are refused (ztunnel: no healthy endpoint)`, `start ready pods labelled ${sel} (kubectl get pods -n ${namespace} -l ${sel}), or correct the Service's selector`),
    );
  }
  return out;
}

/** A plaintext connection a STRICT PeerAuthentication refused, as the destination's ztunnel reported it. */
function strictRefusal(f: Flow): boolean {
  if (f.verdict !== 'DROPPED' || f.type === 'L7') return false;
  if (f.ingressDeniedBy?.some((p) => p.kind === 'PeerAuthentication')) return true;
  return /requires mutual TLS \(PeerAuthentication STRICT/.test(f.dropReasonDesc);
}

/** STRICT namespaces that clients outside the mesh still call, from the flows the relay keeps. */
export function strictFindings(flows: AnalyzeInput['flows'], ambientNamespaces: ReadonlySet<string> = new Set(), strictIn: (ns: string) => string[] = () => []): Finding[] {
  if (!Array.isArray(flows)) {
    return [finding('MESH0502', { kind: 'Flows', name: 'relay' }, `the flows could not be read (${flows.error}), so STRICT namespaces called in plaintext were not looked for`, 'pass the relay with --server (kubectl -n mesh-system port-forward deploy/mesh-controller 4245), or run on the local cluster')];
  }
  const byNs = new Map<string, { count: number; clients: Map<string, string>; policies: Set<string> }>();
  for (const f of flows) {
    if (!strictRefusal(f)) continue;
    const ns = f.destination.namespace;
    if (!ns) continue;
    const e = byNs.get(ns) ?? { count: 0, clients: new Map<string, string>(), policies: new Set<string>() };
    e.count++;
    const client = f.source.podName ? `${f.source.namespace}/${f.source.podName}` : f.ip.source;
    e.clients.set(client, f.source.namespace);
    for (const p of f.ingressDeniedBy ?? []) if (p.kind === 'PeerAuthentication') e.policies.add(`${p.namespace}/${p.name}`);
    byNs.set(ns, e);
  }
  return [...byNs].map(([ns, e]) => {
    const clients = [...e.clients.keys()].sort();
    const shown = clients.slice(0, 5).join(', ') + (clients.length > 5 ? `, … (${clients.length - 5} more)` : '');
    // A client in a mesh namespace is outside the mesh only by its own opt-out label.
    const clientNs = [...new Set([...e.clients.values()].filter((n) => n && !ambientNamespaces.has(n)))].sort();
    const optedOut = [...e.clients].filter(([, n]) => n && ambientNamespaces.has(n)).map(([c]) => c).sort();
    const steps = [
      ...clientNs.map((n) => `kubectl label namespace ${n} ${LABEL_DATAPLANE_MODE}=ambient`),
      ...(optedOut.length ? [`remove the ${LABEL_DATAPLANE_MODE}=none label of ${optedOut.join(', ')}`] : []),
    ];
    const enrol = steps.length ? steps.join('; ') : 'enrol the clients in the mesh';
    // ztunnel names the compiled policy (Istio's converted_static_strict); the user wrote a PeerAuthentication.
    const written = strictIn(ns);
    const by = written.length ? ` (PeerAuthentication ${written.join(', ')})` : e.policies.size ? ` (${[...e.policies].sort().join(', ')})` : '';
    return finding(
      'MESH0501',
      { kind: 'Namespace', name: ns },
      `namespace ${ns} requires mutual TLS${by} and clients outside the mesh still call it in plaintext: ${e.count} connection(s) refused, from ${shown}`,
      `bring the clients into the mesh (${enrol}), or allow plaintext on that port with a PeerAuthentication portLevelMtls PERMISSIVE`,
    );
  });
}

/** The STRICT PeerAuthentications that apply in `ns`: its own, and the mesh-wide ones of the root namespace. */
function strictPeerAuthentications(s: ClusterSnapshot, ns: string): string[] {
  return s.peerAuthentications
    .filter((p) => {
      const m = meta(p);
      const mode = (p as { spec?: { mtls?: { mode?: string } } }).spec?.mtls?.mode;
      return mode === 'STRICT' && (m.namespace === ns || m.namespace === DEFAULT_MODEL_OPTIONS.rootNamespace);
    })
    .map((p) => `${meta(p).namespace}/${meta(p).name}`)
    .sort();
}

function routeFix(kind: string, namespace: string, name: string, c: Condition): string {
  switch (c.reason) {
    case 'BackendNotFound':
      return `create the Service named in backendRefs, or correct its name and port (kubectl get ${kind.toLowerCase()} -n ${namespace} ${name} -o yaml)`;
    case 'RefNotPermitted':
      return "add a ReferenceGrant in the backend's namespace that allows this route to reference it";
    case 'InvalidKind':
      return 'point backendRefs at Services (group "", kind Service)';
    default:
      return `correct the route (kubectl edit ${kind.toLowerCase()} -n ${namespace} ${name}); the condition's message says what is wrong`;
  }
}

/** Routes our controller does not accept or whose references do not resolve (route status). */
export function routeFindings(s: ClusterSnapshot, m: MeshModel): Finding[] {
  const out: Finding[] = [];
  const routes: [string, KubeObject][] = [...s.httpRoutes.map((o) => ['HTTPRoute', o] as [string, KubeObject]), ...(s.grpcRoutes ?? []).map((o) => ['GRPCRoute', o] as [string, KubeObject])];
  for (const [kind, obj] of routes) {
    const { namespace, name } = meta(obj);
    const written = ((obj as { status?: { parents?: RouteParentStatus[] } }).status?.parents ?? []).filter((p) => p.controllerName === ROUTE_CONTROLLER);
    const parents = written.length ? written : (m.routeStatus.get(`${kind}/${namespace}/${name}`)?.parents ?? []);
    const note = written.length ? '' : ' (as meshctl computes it: no controller has written this status yet)';
    for (const p of parents) {
      const parent = `${p.parentRef.kind ?? 'Service'} ${p.parentRef.namespace ?? namespace}/${p.parentRef.name}`;
      for (const c of p.conditions) {
        if (c.status !== 'False') continue;
        out.push(finding('MESH0601', { kind, namespace, name }, `does not resolve for ${parent}: ${c.type}=False (${c.reason}): ${c.message.replace(/\.$/, '')}${note}`, routeFix(kind, namespace, name, c)));
      }
    }
  }
  return out;
}

/** How long past its refresh time a certificate may still be waiting before it counts as failing to renew. */
const REFRESH_GRACE_MS = 60_000;

/** Workload certificates that expired or failed, or that are retrying their renewal. */
export function certificateFindings(certs: AnalyzeInput['certificates'], now: Date): Finding[] {
  if (!Array.isArray(certs)) {
    return [finding('MESH0703', { kind: 'ztunnel', name: 'admin' }, `the ztunnels' certificates could not be read (${certs.error}), so renewals were not checked`, 'pass the admin address with --admin (kubectl port-forward -n mesh-system <ztunnel pod> 15000), or run on the local cluster')];
  }
  const out: Finding[] = [];
  const t = now.getTime();
  for (const { node, certificates } of certs) {
    for (const c of certificates) {
      const m = /\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(c.identity);
      const obj = { kind: 'Certificate', namespace: m?.[1] ?? '', name: m ? `${m[2]} on ${node}` : `${c.identity} on ${node}` };
      const notAfter = c.notAfter ? Date.parse(c.notAfter) : NaN;
      const nextRefresh = c.nextRefresh ? Date.parse(c.nextRefresh) : NaN;
      const lastError = c.lastError ? `: ${c.lastError}` : '';
      const fix = `check the CA (kubectl -n mesh-system logs deploy/mesh-controller) and node ${node}'s ztunnel log; meshctl ztunnel-config certificates --node ${node}`;
      if (c.state === 'failed' || (Number.isFinite(notAfter) && notAfter <= t)) {
        out.push(finding('MESH0701', obj, `${c.identity}'s certificate on node ${node} ${Number.isFinite(notAfter) && notAfter <= t ? `expired at ${c.notAfter}` : 'could not be issued'} (state ${c.state}, ${c.failures} failed attempts${lastError}): new connections for it fail`, fix));
      } else if (c.failures > 0 || (Number.isFinite(nextRefresh) && nextRefresh < t - REFRESH_GRACE_MS && c.state !== 'refreshing')) {
        out.push(finding('MESH0702', obj, `${c.identity}'s certificate on node ${node} is not renewing (${c.failures} failed attempts${lastError}); it is valid until ${c.notAfter ?? 'unknown'}`, fix));
      }
    }
  }
  return out;
}

export function analyze(input: AnalyzeInput): Finding[] {
  return [
    ...labelFindings(input.snapshot),
    ...policyFindings(input.snapshot, input.model),
    ...waypointFindings(input.model),
    ...serviceFindings(input.snapshot),
    ...strictFindings(
      input.flows,
      new Set(input.snapshot.namespaces.filter((n) => n.metadata?.labels?.[LABEL_DATAPLANE_MODE] === 'ambient').map((n) => n.metadata?.name ?? '')),
      (ns) => strictPeerAuthentications(input.snapshot, ns),
    ),
    ...routeFindings(input.snapshot, input.model),
    ...certificateFindings(input.certificates, input.now),
  ];
}

// The verdicts of `meshctl check --pre-install`: can this cluster take the chart? Pure, like
// checks.ts — the API reads and the node pods live in precheck-cluster.ts — so the tests feed
// it listed objects.
import type { CheckResult } from './checks.ts';

// ---------------------------------------------------------------------------------------------
// Kubernetes version

/** major.minor from /version; GKE/EKS report minors such as "30+". */
export function parseServerVersion(v: { major?: string; minor?: string; gitVersion?: string }): readonly [number, number] | undefined {
  const major = Number.parseInt(v.major ?? '', 10);
  const minor = Number.parseInt(v.minor ?? '', 10);
  if (Number.isFinite(major) && Number.isFinite(minor)) return [major, minor];
  const m = /^v?(\d+)\.(\d+)/.exec(v.gitVersion ?? '');
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export function checkKubernetesVersion(v: { major?: string; minor?: string; gitVersion?: string }): CheckResult {
  const name = 'kubernetes-version';
  const parsed = parseServerVersion(v);
  const shown = v.gitVersion || `${v.major ?? '?'}.${v.minor ?? '?'}`;
  if (!parsed) return { name, status: 'warn', detail: `cannot read a version from the API server's /version (${shown})`, fix: 'make sure the cluster runs Kubernetes 1.30 or later' };
  const [major, minor] = parsed;
  if (major > 1 || minor >= 30) return { name, status: 'ok', detail: `Kubernetes ${shown} (>= 1.30: service account tokens carry the node, which the CA checks)` };
  if (minor >= 27) {
    return {
      name,
      status: 'warn',
      detail: `Kubernetes ${shown}: tokens do not carry the node (KEP-4193, 1.30); the CA falls back to looking up each pod, one more API read per certificate`,
      fix: 'upgrade to Kubernetes 1.30 or later',
    };
  }
  return { name, status: 'fail', detail: `Kubernetes ${shown} is older than 1.27, the mesh's floor`, fix: 'upgrade to Kubernetes 1.30 or later (1.27 at least)' };
}

// ---------------------------------------------------------------------------------------------
// RBAC to install the chart

export interface Permission {
  verb: string;
  group: string;
  resource: string;
  /** Set for namespaced resources: checked in the install namespace. */
  namespaced: boolean;
}

/** What `helm install` of daemonset/chart creates (templates/, crds/, files/rbac.yaml). */
export function installPermissions(): Permission[] {
  const p = (verb: string, group: string, resource: string, namespaced: boolean): Permission => ({ verb, group, resource, namespaced });
  return [
    p('create', '', 'namespaces', false),
    p('create', 'apiextensions.k8s.io', 'customresourcedefinitions', false),
    p('create', 'rbac.authorization.k8s.io', 'clusterroles', false),
    p('create', 'rbac.authorization.k8s.io', 'clusterrolebindings', false),
    p('create', 'rbac.authorization.k8s.io', 'roles', true),
    p('create', 'rbac.authorization.k8s.io', 'rolebindings', true),
    p('create', 'apps', 'daemonsets', true),
    p('create', 'apps', 'deployments', true),
    p('create', '', 'services', true),
    p('create', '', 'serviceaccounts', true),
    // The node checks below run as a pod.
    p('create', '', 'pods', true),
  ];
}

export function describePermission(p: Permission, namespace: string): string {
  return `${p.verb} ${p.resource}${p.group ? `.${p.group}` : ''}${p.namespaced ? ` in ${namespace}` : ''}`;
}

export function checkRbac(answers: ReadonlyArray<{ permission: Permission; allowed: boolean; error?: string }>, namespace: string): CheckResult {
  const name = 'rbac';
  const denied = answers.filter((a) => !a.allowed);
  if (!denied.length) return { name, status: 'ok', detail: `allowed to create all ${answers.length} kinds of object the chart installs` };
  const list = denied.map((a) => describePermission(a.permission, namespace) + (a.error ? ` (${a.error})` : '')).join(', ');
  return { name, status: 'fail', detail: `not allowed: ${list}`, fix: 'install as a cluster admin, or grant these verbs (check with `kubectl auth can-i create <resource>`)' };
}

// ---------------------------------------------------------------------------------------------
// Existing installs and other meshes

export interface ClusterObjects {
  namespaces: string[];
  daemonSets: Array<{ namespace: string; name: string }>;
  /** data of kube-system/cilium-config, when it exists. */
  ciliumConfig?: Record<string, string>;
}

export function checkConflicts(o: ClusterObjects, namespace: string): CheckResult[] {
  const results: CheckResult[] = [];
  const ds = (pred: (d: { namespace: string; name: string }) => boolean) => o.daemonSets.filter(pred).map((d) => `${d.namespace}/${d.name}`);
  const mine = ds((d) => d.namespace === namespace && (d.name === 'mesh-node' || d.name === 'mesh-cni'));
  if (mine.length) {
    results.push({ name: 'existing-install', status: 'warn', detail: `the mesh is already installed: ${mine.join(', ')}`, fix: `upgrade it (helm upgrade) instead of installing again, or pass --namespace for another namespace` });
  } else if (o.namespaces.includes(namespace)) {
    results.push({ name: 'existing-install', status: 'ok', detail: `namespace ${namespace} exists and has no mesh DaemonSets` });
  } else {
    results.push({ name: 'existing-install', status: 'ok', detail: `no install in ${namespace} (the namespace does not exist yet)` });
  }
  const ztunnel = ds((d) => d.name === 'ztunnel');
  if (ztunnel.length || o.namespaces.includes('istio-system')) {
    results.push({
      name: 'istio',
      status: 'warn',
      detail: `Istio is installed (${[...(o.namespaces.includes('istio-system') ? ['namespace istio-system'] : []), ...ztunnel.map((z) => `ztunnel DaemonSet ${z}`)].join(', ')}): its ztunnel and CNI redirect pod traffic as the mesh does, and both would capture the same connections`,
      fix: 'uninstall Istio ambient, or keep the two meshes on disjoint namespaces',
    });
  } else {
    results.push({ name: 'istio', status: 'ok', detail: 'no istio-system namespace and no ztunnel DaemonSet' });
  }
  const cilium = ds((d) => d.name === 'cilium');
  if (cilium.length) {
    const c = o.ciliumConfig ?? {};
    const socketLb = c['kube-proxy-replacement'] === 'true' || c['kube-proxy-replacement'] === 'strict' || c['bpf-lb-sock'] === 'true';
    results.push({
      name: 'cilium',
      status: 'warn',
      detail: socketLb
        ? `Cilium runs (${cilium.join(', ')}) with socket load balancing (kube-proxy-replacement/bpf-lb-sock): its programs at the root cgroup rewrite service addresses to pod addresses before the mesh sees them`
        : `Cilium runs (${cilium.join(', ')}): it is the primary CNI, and may attach programs at the root cgroup`,
      fix: socketLb
        ? 'set socketLB.hostNamespaceOnly=true (bpf-lb-sock-hostns-only) in Cilium, so pod connections keep their service address'
        : 'check that Cilium\'s socket LB is off or host-namespace-only (cilium-config: bpf-lb-sock, kube-proxy-replacement)',
    });
  } else {
    results.push({ name: 'cilium', status: 'ok', detail: 'no cilium DaemonSet' });
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// Node checks, from the node pod

/** The node pod's `meshctl check -o json`, each result prefixed with the node's name. */
export function nodeResults(node: string, logs: string): CheckResult[] {
  const start = logs.indexOf('[');
  let parsed: unknown;
  try {
    parsed = JSON.parse(logs.slice(Math.max(start, 0)));
  } catch {
    return [{ name: `node/${node}`, status: 'warn', detail: `the node pod's output is not meshctl check's JSON: ${logs.trim().slice(0, 200) || '(empty)'}`, fix: 'check that --node-image is this mesh\'s node image' }];
  }
  if (!Array.isArray(parsed)) return [{ name: `node/${node}`, status: 'warn', detail: 'the node pod printed JSON that is not a list of checks' }];
  return (parsed as CheckResult[]).map((r) => ({ ...r, name: `node/${node}/${r.name}` }));
}

/** Why a node's checks did not run; a warning, never a failure: the cluster may still be fine. */
export function nodeSkipped(node: string, reason: string, fix: string): CheckResult {
  return { name: `node/${node}`, status: 'warn', detail: `node checks skipped: ${reason}`, fix };
}

/** The waiting reason of a pod that cannot start its image, or undefined. */
export function imagePullProblem(statuses: ReadonlyArray<{ state?: { waiting?: { reason?: string; message?: string } } }> | undefined): string | undefined {
  for (const s of statuses ?? []) {
    const w = s.state?.waiting;
    if (w?.reason === 'ImagePullBackOff' || w?.reason === 'ErrImagePull' || w?.reason === 'InvalidImageName') return `${w.reason}${w.message ? `: ${w.message}` : ''}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// CNI conf dir (run on the node by `meshctl check --cni-conf-dir`)

export function checkCniConfDir(dir: string, entries: string[] | { error: string }): CheckResult {
  const name = 'cni-conf-dir';
  if (!Array.isArray(entries)) return { name, status: 'fail', detail: `${dir}: ${entries.error}`, fix: 'set cni.confDir to where the node\'s primary CNI writes its config (k3s: /var/lib/rancher/k3s/agent/etc/cni/net.d)' };
  const conf = entries.filter((e) => e.endsWith('.conflist') || e.endsWith('.conf')).sort();
  if (!conf.length) return { name, status: 'fail', detail: `${dir} has no .conflist: no primary CNI to chain into`, fix: 'install the primary CNI first, or set cni.confDir' };
  return { name, status: 'ok', detail: `${dir}: primary CNI config ${conf[0]}` };
}

export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s.trim());
  if (!m) throw new Error(`invalid duration "${s}" (use e.g. 60s, 2m)`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

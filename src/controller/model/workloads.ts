// Pods → Workloads: which pods are workloads, which of those are in the mesh, and the fields
// Istio's workload.proto has (istio/istio pilot/pkg/serviceregistry/kube/controller/ambient).
import type * as k8s from '@kubernetes/client-node';
import type { PortList, Workload, WorkloadType } from '../../xds/index.ts';
import { ipBytes, labelsOf, nameOf, namespaceOf, type Labels } from './kube.ts';
import { LABEL_DATAPLANE_MODE } from './types.ts';
import type { WaypointRef, Waypoints } from './waypoints.ts';

/**
 * A pod that has an address of its own and is alive. hostNetwork pods share their node's IP, so
 * an address would not identify them: they are left out, as a plaintext source from that IP is
 * then the node, not some pod.
 */
export function isWorkloadPod(pod: k8s.V1Pod): boolean {
  if (pod.spec?.hostNetwork) return false;
  if (pod.metadata?.deletionTimestamp) return false;
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return false;
  return podIps(pod).length > 0;
}

function podIps(pod: k8s.V1Pod): string[] {
  const ips = (pod.status?.podIPs ?? []).map((p) => p.ip).filter((ip): ip is string => !!ip);
  if (ips.length === 0 && pod.status?.podIP) ips.push(pod.status.podIP);
  return ips;
}

/** In the mesh: the namespace opted in and the pod did not opt out (DESIGN.md, Istio's istio.io/dataplane-mode). */
export function inMesh(pod: k8s.V1Pod, nsLabels: Labels): boolean {
  return nsLabels[LABEL_DATAPLANE_MODE] === 'ambient' && labelsOf(pod)[LABEL_DATAPLANE_MODE] !== 'none' && !pod.spec?.hostNetwork;
}

/** The values of mesh.io/dataplane-mode the mesh knows (Istio's istio.io/dataplane-mode: ambient, none). */
export const DATAPLANE_MODES = ['ambient', 'none'] as const;

/** Why a pod is not in the mesh, in words for its flows and `meshctl analyze`; '' when it is. */
export function notCapturedReason(pod: k8s.V1Pod, nsLabels: Labels): string {
  if (inMesh(pod, nsLabels)) return '';
  const ns = namespaceOf(pod);
  if (pod.spec?.hostNetwork) return 'the pod uses the host network: the mesh captures only pods with their own network namespace';
  const podMode = labelsOf(pod)[LABEL_DATAPLANE_MODE];
  const nsMode = nsLabels[LABEL_DATAPLANE_MODE];
  if (nsMode === 'ambient' && podMode === 'none') return `opted out by its label ${LABEL_DATAPLANE_MODE}=none`;
  if (nsMode === undefined) return `namespace ${ns} has no ${LABEL_DATAPLANE_MODE}=ambient label`;
  if (nsMode === 'none') return `namespace ${ns} is labelled ${LABEL_DATAPLANE_MODE}=none`;
  return `namespace ${ns} has ${LABEL_DATAPLANE_MODE}=${nsMode}, not a mode the mesh knows (${DATAPLANE_MODES.join(', ')})`;
}

/** A Job created by a CronJob is named "<cronjob>-<scheduled time in minutes>" (istio/istio pkg/kube GetDeployMetaFromPod). */
const CRONJOB_JOB_NAME = /^(.+)-\d{8,11}$/;

/** The owning controller's name and type, as Istio's GetDeployMetaFromPod derives them. */
export function workloadOwner(pod: k8s.V1Pod): { name: string; type: WorkloadType } {
  const ref = pod.metadata?.ownerReferences?.find((r) => r.controller) ?? null;
  if (!ref) return { name: nameOf(pod), type: 'POD' };
  if (ref.kind === 'ReplicaSet') {
    // A Deployment's ReplicaSet is "<deployment>-<pod-template-hash>".
    const hash = labelsOf(pod)['pod-template-hash'];
    if (hash && ref.name.endsWith(`-${hash}`)) return { name: ref.name.slice(0, -hash.length - 1), type: 'DEPLOYMENT' };
    return { name: ref.name, type: 'POD' };
  }
  if (ref.kind === 'Job') {
    const m = CRONJOB_JOB_NAME.exec(ref.name);
    return m ? { name: m[1]!, type: 'CRONJOB' } : { name: ref.name, type: 'JOB' };
  }
  // StatefulSet, DaemonSet, …: Istio names the workload after the controller; the proto has no type for them.
  return { name: ref.name, type: 'POD' };
}

export interface PodWorkload {
  pod: k8s.V1Pod;
  workload: Workload;
  /** The waypoint as resolved, including a missing one (workload.waypoint is then unresolvable). */
  waypoint: WaypointRef | null;
}

export function buildWorkload(
  pod: k8s.V1Pod,
  nsLabels: Labels,
  services: Record<string, PortList>,
  waypoints: Waypoints,
  opts: { trustDomain: string; clusterId: string },
): PodWorkload {
  const ns = namespaceOf(pod);
  const name = nameOf(pod);
  const labels = labelsOf(pod);
  const mesh = inMesh(pod, nsLabels);
  // Only captured workloads have a waypoint: ztunnel sends a plaintext workload's traffic as it is.
  const waypoint = mesh ? waypoints.resolve(`Pod/${ns}/${name}`, ns, labels, nsLabels) : null;
  const owner = workloadOwner(pod);
  const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  const workload: Workload = {
    uid: `${opts.clusterId}//v1/Pod/${ns}/${name}`,
    name,
    namespace: ns,
    addresses: podIps(pod)
      .map(ipBytes)
      .filter((a): a is Uint8Array => a !== null),
    hostname: '',
    network: '',
    trustDomain: opts.trustDomain,
    serviceAccount: pod.spec?.serviceAccountName || 'default',
    node: pod.spec?.nodeName ?? '',
    tunnelProtocol: mesh ? 'HBONE' : 'NONE',
    waypoint: waypoint?.address ?? null,
    // Istio's canonical service labels fall back to the workload name and "latest" (pkg/config/labels).
    canonicalName: labels['app.kubernetes.io/name'] || labels.app || owner.name,
    canonicalRevision: labels['app.kubernetes.io/version'] || labels.version || 'latest',
    workloadType: owner.type,
    workloadName: owner.name,
    status: ready ? 'HEALTHY' : 'UNHEALTHY',
    services,
    authorizationPolicies: [],
    clusterId: opts.clusterId,
    podUid: pod.metadata?.uid ?? '',
    labels: { ...labels },
    notCapturedReason: notCapturedReason(pod, nsLabels),
  };
  return { pod, workload, waypoint };
}

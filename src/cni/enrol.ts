// Enrolment at sandbox creation, one path for both places a sandbox is made: the CNI plugin on a
// real node (src/cni/plugin.ts) and the local kubelet's sandbox hook (src/local/mesh.ts). Both
// decide with podInMesh, send the agent this `cni-add` request, and judge its reply here.
import { CniError, CODES } from './protocol.ts';

const LABEL = 'mesh.io/dataplane-mode';

export interface MeshPodMeta {
  metadata?: { name?: string; namespace?: string; uid?: string; labels?: Record<string, string> };
  spec?: { hostNetwork?: boolean; serviceAccountName?: string };
}

/** The controller's decision (src/controller/model/workloads.ts inMesh), repeated here so the
 * plugin does not load the model; test/unit/cni-plugin.test.ts checks that the two agree. */
export function podInMesh(pod: MeshPodMeta, nsLabels: Record<string, string>): boolean {
  return nsLabels[LABEL] === 'ambient' && pod.metadata?.labels?.[LABEL] !== 'none' && !pod.spec?.hostNetwork;
}

/** The agent's `cni-add` (src/agent/control.ts) for a pod whose sandbox has just been made. */
export function cniAddRequest(pod: MeshPodMeta, sandbox: { netnsPath: string; addresses: string[]; cgroupPath?: string }, waitZtunnelMs: number): Record<string, unknown> {
  const m = pod.metadata ?? {};
  return {
    op: 'cni-add',
    pod: {
      uid: m.uid,
      name: `${m.namespace}/${m.name}`,
      netnsPath: sandbox.netnsPath,
      ...(sandbox.cgroupPath ? { cgroupPath: sandbox.cgroupPath } : {}),
      addresses: sandbox.addresses,
      workload: { name: m.name, namespace: m.namespace, serviceAccount: pod.spec?.serviceAccountName || 'default' },
    },
    waitZtunnelMs,
  };
}

/** Throws unless the agent's reply says ztunnel serves the pod (or no wait was asked for). The pod
 * is enrolled either way, so it fails closed: its connections are refused until ztunnel serves it. */
export function requireServed(reply: unknown, who: string, waitZtunnelMs: number): string {
  const z = (reply as { ztunnel?: string } | undefined)?.ztunnel;
  if (waitZtunnelMs > 0 && z !== 'served') {
    throw new CniError(
      CODES.TRY_AGAIN_LATER,
      `pod ${who} is enrolled but ztunnel did not serve it within ${waitZtunnelMs} ms (${z ?? 'no answer'})`,
      "Is ztunnel running on this node and connected to the agent's ZDS socket? Its log says why it cannot serve the pod (a certificate it cannot get, for one).",
    );
  }
  return z === 'served' ? 'ztunnel serves it' : `ztunnel: ${z ?? 'not asked'}`;
}

// A controller rollout on the local cluster: its replicas (src/local/rollout-controller.ts) are
// replaced one at a time as a Deployment with maxSurge 1, maxUnavailable 0 replaces them. Needs
// `meshctl dev up --controller-replicas N`: a single controller inside the daemon cannot be
// replaced without a gap.
import type { LocalMesh } from '../mesh.ts';
import type { RolloutResult } from './types.ts';

export async function rolloutController(mesh: LocalMesh, say: (m: string) => void): Promise<RolloutResult[]> {
  if (!mesh.replicas) {
    throw new Error('this local cluster runs one controller inside its daemon, which cannot be replaced without a gap; start it with `meshctl dev up --controller-replicas 2` to roll controller replicas');
  }
  const replaced = await mesh.replicas.rollout(say);
  return replaced.map((r) => ({ oldPid: r.fromPid, newPid: r.toPid, handoverMs: r.handoverMs, drained: Promise.resolve({ ms: r.stopMs, code: r.code }) }));
}

// `meshctl dev rollout <component>`: the handover a rolling update performs on a real cluster,
// on the local one. One module per component; a component is added here with one line
// (a controller rollout goes in ./controller.ts and into ROLLOUTS).
import type { LocalMesh } from '../mesh.ts';
import { rolloutAgent } from './agent.ts';
import { rolloutController } from './controller.ts';
import type { RolloutResult } from './types.ts';
import { rolloutZtunnel } from './ztunnel.ts';

export type { RolloutResult } from './types.ts';

interface Rollout {
  /** Per node (a DaemonSet's component) or once for the cluster (a Deployment's). */
  perNode: boolean;
  run(mesh: LocalMesh, node: string | undefined, say: (m: string) => void, opts: RolloutOptions): Promise<RolloutResult | RolloutResult[]>;
}

export interface RolloutOptions {
  node?: string | undefined;
  /** ztunnel: the new processes' MESH_DRAIN_TIMEOUT (the deadline of their own drain, later). */
  drainTimeoutMs?: number | undefined;
}

const ROLLOUTS: Record<string, Rollout> = {
  ztunnel: { perNode: true, run: (m, node, say, o) => rolloutZtunnel(m, node!, say, o.drainTimeoutMs !== undefined ? { drainTimeoutMs: o.drainTimeoutMs } : {}) },
  agent: { perNode: true, run: (m, node, say) => rolloutAgent(m, node!, say) },
  // A Deployment's replicas, one result per replica replaced.
  controller: { perNode: false, run: (m, _node, say) => rolloutController(m, say) },
};

export function rolloutTargets(): string[] {
  return Object.keys(ROLLOUTS);
}

/**
 * Rolls `component` out: on `node`, or node after node as a DaemonSet does (each node's new
 * process serving before the next node starts). Resolves once every new process serves; each
 * result's `drained` settles when its old process has exited.
 */
export async function rollout(mesh: LocalMesh, component: string, opts: RolloutOptions, say: (m: string) => void): Promise<RolloutResult[]> {
  const r = ROLLOUTS[component];
  if (!r) throw new Error(`cannot roll out '${component}': choose one of ${rolloutTargets().join(', ')}`);
  if (!r.perNode) {
    if (opts.node) throw new Error(`${component} is not a per-node component: --node does not apply`);
    return [await r.run(mesh, undefined, say, opts)].flat();
  }
  if (opts.node && !mesh.nodes.includes(opts.node)) throw new Error(`no node '${opts.node}' in the local cluster (nodes: ${mesh.nodes.join(', ')})`);
  const out: RolloutResult[] = [];
  for (const node of opts.node ? [opts.node] : mesh.nodes) out.push(...[await r.run(mesh, node, say, opts)].flat());
  return out;
}

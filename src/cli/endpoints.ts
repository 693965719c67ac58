// Where meshctl finds the mesh's components. The local cluster (`meshctl dev up`) writes
// <state dir>/mesh.json with the addresses its controller, agents and ztunnels listen on; on a
// real cluster the same addresses are given with flags (after `kubectl port-forward`).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const DEFAULT_STATE_DIR = process.env.MESH_DEV_STATE_DIR || '/var/lib/mesh/dev';

export interface NodeEndpoints {
  /** ztunnel's admin server (/config_dump, /logging), host:port. */
  ztunnelAdmin: string;
  /** ztunnel's metrics server, host:port. */
  ztunnelMetrics?: string;
  /** The node agent's metrics (datapath counters, flows), host:port. */
  agentMetrics?: string;
  /** The node agent's Observer gRPC API (flows), host:port. */
  observer?: string;
  /** Admin servers of ztunnels a rollout replaced, while they drain. */
  ztunnelDraining?: string[];
}

export interface MeshEndpoints {
  /** The controller's flow relay (Observer gRPC merging every node), host:port. */
  relay?: string;
  /** The controller's service map (`meshctl dashboard`), a URL. */
  dashboard?: string;
  /** The controller's config stream (xDS), host:port. */
  xds?: string;
  nodes: Record<string, NodeEndpoints>;
}

export function endpointsPath(stateDir: string): string {
  return join(stateDir, 'mesh.json');
}

/** The endpoints the local cluster recorded, or an error that says how to get some. */
export function loadEndpoints(stateDir: string): MeshEndpoints {
  let text: string;
  try {
    text = readFileSync(endpointsPath(stateDir), 'utf8');
  } catch {
    throw new Error(
      `no mesh is recorded in ${stateDir} (${endpointsPath(stateDir)} is missing): start one with \`meshctl dev up\`, ` +
        'or point meshctl at a running one with --state-dir or the address flags',
    );
  }
  try {
    const e = JSON.parse(text) as MeshEndpoints;
    if (typeof e !== 'object' || e === null || typeof e.nodes !== 'object' || e.nodes === null) throw new Error('no "nodes" object');
    return e;
  } catch (err) {
    throw new Error(`${endpointsPath(stateDir)} is not a mesh endpoints file: ${(err as Error).message}`, { cause: err });
  }
}

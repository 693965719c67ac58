// The node agent's configuration: read once from the environment into a frozen object.
import { dirname, join } from 'node:path';
import { findCgroup2Mount } from '../common/cgroup.ts';

export interface AgentConfig {
  /** bpffs directory for the datapath's pins. */
  readonly bpffsDir: string;
  /** cgroup v2 directory whose subtree holds the node's pods; the capture programs attach here. */
  readonly podCgroup: string;
  /** Unix socket of the agent's local control API. */
  readonly controlSocket: string;
  /** Unix socket where ztunnel learns the enrolled pods (ZDS); beside the control socket. */
  readonly zdsSocket: string;
  /** SO_MARK that ztunnel puts on its own sockets. */
  readonly mark: number;
  /** How many recent datapath events the agent keeps for inspection. */
  readonly eventRing: number;
  /** Whether connections of pods outside the mesh are reported (plaintext flows). */
  readonly observeUnenrolled: boolean;
  /** How many recent flows the agent keeps (Hubble: 4095). */
  readonly flowRing: number;
  /** Where the flows API (Observer gRPC, mutual TLS) listens, host:port; port 0 picks one. */
  readonly observerAddress: string;
  /** The address the controller's relay dials, host:port (default: the listen address, with
   * the node's IP for a wildcard host). */
  readonly observerAdvertise?: string;
  /** Set when the agent follows the controller (else it is driven by its control socket only). */
  readonly mesh?: {
    readonly nodeName: string;
    readonly xdsAddress: string;
    readonly caAddress: string;
    readonly serverName: string;
    readonly trustDomain: string;
    readonly caRootFile: string;
    readonly tokenFile: string;
    readonly namespace: string;
    readonly serviceAccount: string;
  };
}

const KNOWN = new Set([
  'MESH_BPFFS_DIR',
  'MESH_POD_CGROUP',
  'MESH_AGENT_SOCKET',
  'MESH_MARK',
  'MESH_EVENT_RING',
  'MESH_NODE_NAME',
  'MESH_CONTROLLER',
  'MESH_CA_ADDRESS',
  'MESH_CONTROLLER_NAME',
  'MESH_TRUST_DOMAIN',
  'MESH_CA_ROOT_FILE',
  'MESH_TOKEN_FILE',
  'MESH_POD_NAMESPACE',
  'MESH_SERVICE_ACCOUNT',
  'MESH_ZDS_SOCKET',
  'MESH_FLOW_RING',
  'MESH_FLOW_OBSERVE_PLAINTEXT',
  'MESH_OBSERVER_ADDRESS',
  'MESH_OBSERVER_ADVERTISE',
  // ztunnel's own ports (read in src/ztunnel/main.ts, which shares this configuration).
  'MESH_ADMIN_PORT',
  'MESH_METRICS_PORT',
  'MESH_READINESS_PORT',
]);

export class ConfigError extends Error {
  readonly code = 'MESH_ERR_CONFIG';
}

function int(name: string, raw: string | undefined, dflt: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max)
    throw new ConfigError(`${name}=${raw}: expected an integer in ${min}-${max}`);
  return v;
}

function bool(name: string, raw: string | undefined, fallback: boolean): boolean {
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'on', 'yes'].includes(raw.toLowerCase())) return true;
  if (['0', 'false', 'off', 'no'].includes(raw.toLowerCase())) return false;
  throw new ConfigError(`${name}=${raw}: expected true or false`);
}

export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  // A misspelt agent setting must not silently fall back to a default.
  for (const k of Object.keys(env)) {
    if (/^MESH_(AGENT_|BPFFS|POD_|MARK|EVENT|NODE|CONTROLLER|CA_|TOKEN|FLOW|OBSERVER)/.test(k) && !KNOWN.has(k)) {
      throw new ConfigError(`unknown setting ${k} (known: ${[...KNOWN].join(', ')})`);
    }
  }
  return Object.freeze({
    // /sys/fs/bpf is where Kubernetes nodes mount bpffs; the subdirectory keeps our pins apart.
    bpffsDir: env.MESH_BPFFS_DIR || '/sys/fs/bpf/mesh',
    // kubelet's pod subtree with the cgroupfs driver; the systemd driver uses kubepods.slice.
    podCgroup: env.MESH_POD_CGROUP || `${findCgroup2Mount()}/kubepods`,
    controlSocket: env.MESH_AGENT_SOCKET || '/var/run/mesh/agent.sock',
    zdsSocket: env.MESH_ZDS_SOCKET || join(dirname(env.MESH_AGENT_SOCKET || '/var/run/mesh/agent.sock'), 'zds.sock'),
    // 0x539: the mark Istio's ztunnel uses, so existing host rules that know it keep working.
    mark: int('MESH_MARK', env.MESH_MARK, 0x539, 1, 0xffffffff),
    // Hubble keeps 4095 flows per node by default; we match it.
    eventRing: int('MESH_EVENT_RING', env.MESH_EVENT_RING, 4095, 16, 1 << 20),
    flowRing: int('MESH_FLOW_RING', env.MESH_FLOW_RING, 4095, 1, 1 << 20),
    // Costs a pod outside the mesh two ring-buffer events per connection (bench/capture.ts).
    observeUnenrolled: bool('MESH_FLOW_OBSERVE_PLAINTEXT', env.MESH_FLOW_OBSERVE_PLAINTEXT, true),
    // Hubble's per-node port.
    observerAddress: env.MESH_OBSERVER_ADDRESS || '0.0.0.0:4244',
    ...(env.MESH_OBSERVER_ADVERTISE ? { observerAdvertise: env.MESH_OBSERVER_ADVERTISE } : {}),
    ...(env.MESH_NODE_NAME ? { mesh: meshSettings(env) } : {}),
  });
}

function meshSettings(env: NodeJS.ProcessEnv): NonNullable<AgentConfig['mesh']> {
  const controller = env.MESH_CONTROLLER || 'mesh-controller.mesh-system.svc:15010';
  const host = controller.replace(/:\d+$/, '');
  return Object.freeze({
    nodeName: env.MESH_NODE_NAME!,
    xdsAddress: controller,
    caAddress: env.MESH_CA_ADDRESS || `${host}:15012`,
    // The controller's certificate names its Service; an IP address is not on it.
    serverName: env.MESH_CONTROLLER_NAME || 'mesh-controller.mesh-system.svc',
    trustDomain: env.MESH_TRUST_DOMAIN || 'cluster.local',
    // Where Kubernetes mounts the mesh-ca-root-cert ConfigMap and the projected token.
    caRootFile: env.MESH_CA_ROOT_FILE || '/var/run/secrets/mesh/root-cert.pem',
    tokenFile: env.MESH_TOKEN_FILE || '/var/run/secrets/tokens/mesh-token',
    namespace: env.MESH_POD_NAMESPACE || 'mesh-system',
    serviceAccount: env.MESH_SERVICE_ACCOUNT || 'mesh-node',
  });
}

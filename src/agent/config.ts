// The node agent's configuration: read once from the environment into a frozen object, through
// one schema (the node's shared settings, src/common/shared-settings.ts, and the agent's own).
import { dirname, join } from 'node:path';
import { findCgroup2Mount } from '../common/cgroup.ts';
import { checkMark, NODE_SETTINGS } from '../common/shared-settings.ts';
import { bool, ConfigError, defineSettings, type Env, hostPort, int, str } from '../common/settings.ts';

export { ConfigError };

export interface AgentConfig {
  /** bpffs directory for the datapath's pins. */
  readonly bpffsDir: string;
  /** cgroup v2 directory whose subtree holds the node's pods; the capture programs attach here. */
  readonly podCgroup: string;
  /** Where the pods' net sysctls are written after entering their netns (/proc/sys/net, or a
   * writable mount of it when the agent's own /proc/sys is read-only, as in a container). */
  readonly sysctlNetDir: string;
  /** Unix socket of the agent's local control API. */
  readonly controlSocket: string;
  /** Unix socket where ztunnel learns the enrolled pods (ZDS); beside the control socket. */
  readonly zdsSocket: string;
  /** Unix socket where the node's waypoints send one record per HTTP request (L7 flows). */
  readonly l7FlowsSocket: string;
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
  /** Where the agent's Prometheus metrics (datapath counters, flows) are served, host:port; port 0 picks one. */
  readonly metricsAddress: string;
  /** The node's IP, advertised for the flows API when it listens on a wildcard address. */
  readonly nodeIp: string;
  /** The node DaemonSet's name (in the pod's namespace): on SIGTERM, the datapath is removed when
   * it is gone (uninstall, src/agent/uninstall.ts); unset, it always stays. */
  readonly nodeDaemonSet?: string;
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

const N = NODE_SETTINGS;

export const AGENT_SETTINGS = defineSettings(
  'the agent',
  {
    bpffsDir: N.bpffsDir,
    podCgroup: str('MESH_POD_CGROUP', "the pods' cgroup v2 subtree, where the capture programs attach", {
      default: () => `${findCgroup2Mount()}/kubepods`,
      why: "kubelet's pod subtree with the cgroupfs driver (the systemd driver's is kubepods.slice)",
      shown: '`<cgroup2 mount>/kubepods`',
    }),
    sysctlNetDir: str('MESH_SYSCTL_NET_DIR', "where the agent writes an enrolled pod's net sysctls (tcp_fwmark_accept, fwmark_reflect, tcp_migrate_req) from inside its netns", {
      default: '/proc/sys/net',
      why: "the process's own view (it shows the netns of the writing thread); a container's /proc/sys is read-only, so the chart mounts the host's /proc/sys/net at /host/proc/sys/net and sets that",
    }),
    controlSocket: N.controlSocket,
    zdsSocket: N.zdsSocket,
    l7FlowsSocket: str('MESH_L7_FLOWS_SOCKET', "where the node's waypoints send their L7 flow records (one JSON line per HTTP request)", {
      default: (v) => join(dirname(v.controlSocket as string), 'l7-flows.sock'),
      why: "beside the control socket, in the host directory the waypoint pods mount (as Envoy's access logs reach the Cilium agent)",
      shown: '`l7-flows.sock` beside `MESH_AGENT_SOCKET`',
    }),
    mark: N.mark,
    eventRing: int('MESH_EVENT_RING', 'recent datapath events kept by the agent', { min: 16, max: 1 << 20 }, {
      default: 4095,
      why: 'as many as flows: Hubble keeps 4095 per node',
    }),
    flowRing: int('MESH_FLOW_RING', 'recent flows kept by the agent', { min: 1, max: 1 << 20 }, {
      default: 4095,
      why: "Hubble's per-node default",
    }),
    observeUnenrolled: bool('MESH_FLOW_OBSERVE_PLAINTEXT', 'report connections of pods outside the mesh as plaintext flows (two ring-buffer events per connection, joined into one record by the ring thread of the agent: ~1.2 µs of program time per connect against ~0.7 µs for a bystander that is not observed, the CPU of the pod per connect ×1.04 of the no-program baseline, of the agent ~1.7 µs, ~5.6 µs with its flows; `npm run bench -- --prog-stats [--flows]`, scenario `observed`)', {
      default: true,
      why: 'flows show what is not in the mesh yet too, at a cost measured small',
    }),
    observerAddress: hostPort('MESH_OBSERVER_ADDRESS', 'where the flows API (Observer gRPC, mutual TLS) listens; port 0 picks one', {
      default: '0.0.0.0:4244',
      why: "Hubble's per-node port; every address, for the controller's relay",
    }),
    observerAdvertise: hostPort('MESH_OBSERVER_ADVERTISE', "the flows API's address that the controller's relay dials", {
      optional: true,
      shown: '`MESH_OBSERVER_ADDRESS`, a wildcard host as `MESH_NODE_IP`',
    }),
    metricsAddress: hostPort('MESH_AGENT_METRICS_ADDRESS', "where the agent's Prometheus metrics (datapath decisions, flows, losses) are served at /metrics; port 0 picks one", {
      default: '0.0.0.0:9965',
      why: "Hubble's metrics port; every address, for Prometheus (ztunnel's 15020 is taken in the same pod)",
    }),
    nodeIp: N.nodeIp,
    nodeDaemonSet: str('MESH_NODE_DAEMONSET', "the node DaemonSet's name, in `MESH_POD_NAMESPACE`: on SIGTERM the agent asks the API server (its pod's service-account token) whether it is gone or being deleted — an uninstall, which unenrols every pod and removes the pinned datapath; otherwise (a restart, an upgrade) the datapath stays for the next agent", {
      optional: true,
      shown: 'unset: the datapath always stays (the chart sets `mesh-node`)',
    }),
    nodeName: N.nodeName,
    xdsAddress: N.xdsAddress,
    caAddress: N.caAddress,
    serverName: N.serverName,
    trustDomain: N.trustDomain,
    caRootFile: N.caRootFile,
    tokenFile: N.tokenFile,
    namespace: N.namespace,
    serviceAccount: N.serviceAccount,
  },
  (v) => checkMark(v.mark),
);

export function loadAgentConfig(env: Env = process.env): AgentConfig {
  const s = AGENT_SETTINGS.read(env);
  return Object.freeze({
    bpffsDir: s.bpffsDir,
    podCgroup: s.podCgroup,
    sysctlNetDir: s.sysctlNetDir,
    controlSocket: s.controlSocket,
    zdsSocket: s.zdsSocket,
    l7FlowsSocket: s.l7FlowsSocket,
    mark: s.mark,
    eventRing: s.eventRing,
    flowRing: s.flowRing,
    observeUnenrolled: s.observeUnenrolled,
    observerAddress: s.observerAddress,
    metricsAddress: s.metricsAddress,
    ...(s.observerAdvertise ? { observerAdvertise: s.observerAdvertise } : {}),
    nodeIp: s.nodeIp,
    ...(s.nodeDaemonSet ? { nodeDaemonSet: s.nodeDaemonSet } : {}),
    // Without a node name the agent does not follow the controller: its control socket drives it.
    ...(s.nodeName
      ? {
          mesh: Object.freeze({
            nodeName: s.nodeName,
            xdsAddress: s.xdsAddress,
            caAddress: s.caAddress,
            serverName: s.serverName,
            trustDomain: s.trustDomain,
            caRootFile: s.caRootFile,
            tokenFile: s.tokenFile,
            namespace: s.namespace,
            serviceAccount: s.serviceAccount,
          }),
        }
      : {}),
  });
}

/** The flows API's address for the controller's relay: as configured, or the listen address with
 * the node's IP for a wildcard host. */
export function observerAdvertise(cfg: AgentConfig, boundPort: number): string {
  if (cfg.observerAdvertise) return cfg.observerAdvertise;
  const host = cfg.observerAddress.replace(/:\d+$/, '');
  const wildcard = host === '0.0.0.0' || host === '[::]';
  return `${wildcard ? (cfg.nodeIp.includes(':') ? `[${cfg.nodeIp}]` : cfg.nodeIp) : host}:${boundPort}`;
}

// Settings that more than one process reads, declared once: the node's (the agent and ztunnel run
// side by side in the node DaemonSet's pod and must agree on bpffs, the ZDS socket, the mark and
// the controller) and the trust domain (the controller's too). Each process's schema picks them.
import { dirname, join } from 'node:path';
import { CONTROLLER_CA_PORT, CONTROLLER_XDS_PORT, DELIVERY_MARK, ZTUNNEL_MARK_DEFAULT } from './constants.ts';
import { duration, formatDuration, hostPort, httpUrl, int, ip, oneOf, percent, str } from './settings.ts';

const AGENT_SOCKET = '/var/run/mesh/agent.sock';
const CONTROLLER_SERVICE = 'mesh-controller.mesh-system.svc';

export const TRUST_DOMAIN = str('MESH_TRUST_DOMAIN', 'the SPIFFE trust domain of the mesh (`spiffe://<trust domain>/ns/…/sa/…`)', {
  default: 'cluster.local',
  why: "Kubernetes' default cluster domain, and Istio's default trust domain",
});

/** The node's settings, by the field names both node processes use. */
export const NODE_SETTINGS = Object.freeze({
  // The agent advertises its flows API on it; ztunnel accepts it too, so that one downward-API
  // env block can serve both containers of the node pod.
  nodeIp: ip('MESH_NODE_IP', "the node's IP (downward API, `status.hostIP`): the agent's flows API's advertised host (ztunnel accepts it, unused)", {
    default: '127.0.0.1',
    why: 'the local cluster, where every node shares the host network namespace; a real node sets it',
  }),
  bpffsDir: str('MESH_BPFFS_DIR', 'where the datapath\'s maps and links are pinned (must be on bpffs)', {
    default: '/sys/fs/bpf/mesh',
    why: '/sys/fs/bpf is where Kubernetes nodes mount bpffs; the subdirectory keeps our pins apart',
  }),
  controlSocket: str('MESH_AGENT_SOCKET', "the agent's local control API (JSON lines); the ZDS socket's directory", {
    default: AGENT_SOCKET,
    why: 'a hostPath directory that the agent, ztunnel and the CNI plugin share',
  }),
  zdsSocket: str('MESH_ZDS_SOCKET', "where ztunnel learns the node's enrolled pods from the agent (ZDS)", {
    default: (v) => join(dirname(v.controlSocket as string), 'zds.sock'),
    why: 'beside the control socket, in the directory both containers mount',
    shown: '`zds.sock` beside `MESH_AGENT_SOCKET`',
  }),
  mark: int('MESH_MARK', "SO_MARK on ztunnel's own sockets, which the capture programs leave alone: the agent loads the datapath with it, ztunnel marks with it — give both the same", { min: 1, max: 0xffffffff, hex: true }, {
    default: ZTUNNEL_MARK_DEFAULT,
    why: "0x539 (1337) is the mark Istio's ztunnel uses, so host rules that already know it keep working",
    shown: '`0x539` (1337)',
  }),
  nodeName: str('MESH_NODE_NAME', 'the Kubernetes node this runs on (downward API, `spec.nodeName`); without it the agent follows no controller and only its control socket enrols pods', { optional: true }),
  xdsAddress: hostPort('MESH_CONTROLLER', "the controller's config stream, host:port", {
    default: `${CONTROLLER_SERVICE}:${CONTROLLER_XDS_PORT}`,
    why: "the controller's Service in the chart's namespace, on its xDS port",
  }),
  caAddress: hostPort('MESH_CA_ADDRESS', "the controller's CA, host:port", {
    default: (v) => `${(v.xdsAddress as string).replace(/:\d+$/, '')}:${CONTROLLER_CA_PORT}`,
    why: 'the controller serves its CA beside the config stream',
    shown: `\`MESH_CONTROLLER\`'s host, \`:${CONTROLLER_CA_PORT}\``,
  }),
  serverName: str('MESH_CONTROLLER_NAME', "the name on the controller's certificate", {
    default: CONTROLLER_SERVICE,
    why: "the controller's certificate names its Service; an IP address in MESH_CONTROLLER is not on it",
  }),
  trustDomain: TRUST_DOMAIN,
  caRootFile: str('MESH_CA_ROOT_FILE', 'the `mesh-ca-root-cert` bundle (the roots the controller is checked against)', {
    default: '/var/run/secrets/mesh/root-cert.pem',
    why: 'where the chart mounts the mesh-ca-root-cert ConfigMap',
  }),
  tokenFile: str('MESH_TOKEN_FILE', "the node's projected service-account token, presented to the CA", {
    default: '/var/run/secrets/tokens/mesh-token',
    why: 'where the chart mounts the projected token',
  }),
  namespace: str('MESH_POD_NAMESPACE', "the namespace of the node's own pod, part of its identity", {
    default: 'mesh-system',
    why: "the chart's namespace",
  }),
  serviceAccount: str('MESH_SERVICE_ACCOUNT', "the node's service account, part of its identity", {
    default: 'mesh-node',
    why: "the chart's node service account; the CA signs only for node service accounts",
  }),
});

/** The mark must not be the delivery mark: the pod's delivery routing would send every one of
 * ztunnel's marked packets to lo. */
export function checkMark(mark: number): string | undefined {
  if (mark === DELIVERY_MARK) return `MESH_MARK=0x${mark.toString(16)} is the mark of ztunnel's deliveries (routed to lo inside each pod); choose another`;
  return undefined;
}

/**
 * Where and how the proxies export spans (OTLP). The controller reads them and passes them to the
 * waypoints it deploys; the waypoint (and ztunnel, for its optional L4 spans) reads them itself.
 * Unset endpoint: no spans are exported, but trace context is still propagated (W3C and B3).
 */
export const TRACING_SETTINGS = Object.freeze({
  tracingEndpoint: httpUrl('MESH_TRACING_OTLP_ENDPOINT', 'OTLP endpoint spans are exported to: the full URL for HTTP (`http://otel-collector.observability:4318/v1/traces`), the collector\'s URL for gRPC (`http://otel-collector.observability:4317`); unset: no spans, trace context still propagated', {
    optional: true,
  }),
  tracingProtocol: oneOf('MESH_TRACING_OTLP_PROTOCOL', 'OTLP transport: `http/protobuf`, `http/json` or `grpc`', ['http/protobuf', 'http/json', 'grpc'] as const, {
    default: 'http/protobuf',
    why: "the OTLP specification's default (OTEL_EXPORTER_OTLP_PROTOCOL)",
  }),
  tracingSampling: percent('MESH_TRACING_SAMPLING', 'percentage of new traces sampled; a request whose caller sampled it (traceparent or B3 flag) is always recorded', {
    default: 1,
    why: "Istio's default randomSamplingPercentage (1%)",
  }),
  tracingFlushInterval: duration('MESH_TRACING_FLUSH_INTERVAL', 'how often batched spans are sent', { minMs: 10, maxMs: 60_000 }, {
    default: 5000,
    why: "OpenTelemetry's batch span processor default (OTEL_BSP_SCHEDULE_DELAY)",
  }),
});

/** The tracing settings as the environment that sets them (for a process the controller deploys). */
export function tracingEnv(v: { tracingEndpoint?: string | undefined; tracingProtocol: string; tracingSampling: number; tracingFlushInterval: number }): Record<string, string> {
  if (!v.tracingEndpoint) return {};
  return {
    MESH_TRACING_OTLP_ENDPOINT: v.tracingEndpoint,
    MESH_TRACING_OTLP_PROTOCOL: v.tracingProtocol,
    MESH_TRACING_SAMPLING: String(v.tracingSampling),
    MESH_TRACING_FLUSH_INTERVAL: formatDuration(v.tracingFlushInterval),
  };
}

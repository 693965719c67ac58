// The waypoint's settings: read once from the environment into a frozen object, through one
// schema. The deployer (src/controller/waypoint-deployer.ts) sets them in every waypoint pod:
// who it is from the downward API, its token and the trust bundle from mounted volumes.
import { CONTROLLER_CA_PORT, CONTROLLER_XDS_PORT, HBONE_PORT, WAYPOINT_DRAIN_DELAY_MS, WAYPOINT_DRAIN_TIMEOUT_MS } from '../common/constants.ts';
import { TRACING_SETTINGS, TRUST_DOMAIN } from '../common/shared-settings.ts';
import { ConfigError, defineSettings, duration, type Env, grpcTarget, ip, port, str, type Values } from '../common/settings.ts';

export { ConfigError };

const CONTROLLER_SERVICE = 'mesh-controller.mesh-system.svc';

export const WAYPOINT_SETTINGS = defineSettings('the waypoint', {
  name: str('MESH_WAYPOINT_NAME', 'the Gateway this waypoint serves (its name; its namespace is the pod\'s)', { required: 'the deployer sets it to the Gateway\'s name' }),
  podName: str('MESH_POD_NAME', "the waypoint pod's name (downward API, `metadata.name`)", { required: 'the config stream names the waypoint instance by it' }),
  namespace: str('MESH_POD_NAMESPACE', "the waypoint pod's namespace (downward API), part of its identity", { required: 'its identity is spiffe://<trust domain>/ns/<namespace>/sa/<service account>' }),
  serviceAccount: str('MESH_SERVICE_ACCOUNT', "the waypoint's service account (named after its Gateway)", { required: 'its identity is spiffe://<trust domain>/ns/<namespace>/sa/<service account>' }),
  nodeName: str('MESH_NODE_NAME', "the node the waypoint pod runs on (downward API, `spec.nodeName`); shown in the config stream's client list", { optional: true }),
  l7FlowsSocket: str('MESH_L7_FLOWS_SOCKET', "the node agent's socket for L7 flow records (one per request); unset: no L7 flows", { optional: true }),
  trustDomain: TRUST_DOMAIN,
  xdsAddress: grpcTarget('MESH_CONTROLLER', "the controller's config stream, host:port or unix:/path", {
    default: `${CONTROLLER_SERVICE}:${CONTROLLER_XDS_PORT}`,
    why: "the controller's Service in the chart's namespace, on its xDS port",
  }),
  caAddress: grpcTarget('MESH_CA_ADDRESS', "the controller's CA, host:port or unix:/path", {
    default: `${CONTROLLER_SERVICE}:${CONTROLLER_CA_PORT}`,
    why: 'the controller serves its CA beside the config stream',
  }),
  serverName: str('MESH_CONTROLLER_NAME', "the name on the controller's certificate", {
    default: CONTROLLER_SERVICE,
    why: "the controller's certificate names its Service",
  }),
  caRootFile: str('MESH_CA_ROOT_FILE', 'the `mesh-ca-root-cert` bundle', {
    default: '/var/run/secrets/mesh/root-cert.pem',
    why: 'where the deployer mounts the mesh-ca-root-cert ConfigMap',
  }),
  tokenFile: str('MESH_TOKEN_FILE', "the pod's projected service-account token (audience mesh-ca), presented to the CA", {
    default: '/var/run/secrets/tokens/mesh-token',
    why: 'where the deployer mounts the projected token',
  }),
  listenHost: ip('MESH_LISTEN_HOST', 'the address HBONE, metrics and readiness listen on (admin: 127.0.0.1)', {
    default: '0.0.0.0',
    why: 'the waypoint has its own pod network namespace; clients and the kubelet reach it on the pod IP',
  }),
  hbonePort: port('MESH_HBONE_PORT', 'HBONE (HTTP/2 CONNECT over mutual TLS)', { default: HBONE_PORT, why: "Istio's HBONE port; the Gateway's listener names it" }),
  adminPort: port('MESH_ADMIN_PORT', 'admin server on 127.0.0.1: `/config_dump`, `/logging`', { default: 15000, why: "Istio's admin port" }),
  metricsPort: port('MESH_METRICS_PORT', 'Prometheus metrics (`/metrics`, `/stats/prometheus`)', { default: 15020, why: "Istio's merged-metrics port" }),
  ...TRACING_SETTINGS,
  readinessPort: port('MESH_READINESS_PORT', 'readiness (`/healthz/ready`): certificate held, config synced, HBONE listening', { default: 15021, why: "Istio's readiness port, the waypoint pod's probe" }),
  drainDelayMs: duration('MESH_DRAIN_DELAY', 'after SIGTERM, how long it still takes new tunnels (reporting not ready) before it stops listening', { minMs: 0 }, {
    default: WAYPOINT_DRAIN_DELAY_MS,
    why: "a pod's removal reaches every ztunnel well under a second; until then they still send it new connections (Istio waits 5 s, its MINIMUM_DRAIN_DURATION)",
  }),
  drainTimeoutMs: duration('MESH_DRAIN_TIMEOUT', 'then, how long open requests and HBONE tunnels may take to finish before the rest is reset; `0` waits for them all', { minMs: 0 }, {
    default: WAYPOINT_DRAIN_TIMEOUT_MS,
    why: 'plain requests end in moments; long streams (WebSockets, gRPC streams) must not be cut by a rollout (issue 15). The deployer sets the pod\'s grace period to delay + timeout',
  }),
});

/** The waypoint's entry, relative to the image's working directory (make images, src/images/build.ts). */
export const WAYPOINT_ENTRY = 'src/waypoint/main.ts';

/**
 * Node/V8 flags the waypoint runs with, on node's command line ahead of the entry: the deployer
 * puts them in every waypoint pod's args (src/controller/waypoint-deployer.ts). They size the heap
 * when the isolate is made, so main.ts cannot set them. The same setting as ztunnel's, for the
 * same reason (ZTUNNEL_NODE_FLAGS in src/ztunnel/config.ts): V8 grows its young generation under
 * load, and each burst of per-request garbage then stays resident.
 * --max-semi-space-size=1: young generation capped at 1 MB per semi-space. bench:waypoint
 * (issue 16, L7 phase, with MALLOC_ARENA_MAX=2): the waypoint pod at 1,000 rps 229–266 MB RSS
 * with V8's default (3 runs) → 144–190 MB (7 runs), after saturation 294–309 → 193–202 MB. Unlike
 * ztunnel's, it costs CPU: 502–592 µs per request at saturation with the default, 624–642 µs
 * capped, 541–597 µs capped once the access log and flow records were batched (4 MB: 484–640 µs,
 * this host's spread). ARCHITECTURE.md, issue 16.
 */
export const WAYPOINT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/**
 * Environment the waypoint's process starts with (glibc reads it before any code of ours runs):
 * the deployer adds it to every waypoint pod's env under the template's own. As ztunnel's
 * (ZTUNNEL_PROCESS_ENV in src/ztunnel/config.ts): MALLOC_ARENA_MAX=2 keeps V8's and libuv's
 * worker threads from each holding a malloc arena of their own.
 */
export const WAYPOINT_PROCESS_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

export type WaypointSettings = Values<typeof WAYPOINT_SETTINGS.settings>;

export function loadWaypointSettings(env: Env = process.env): WaypointSettings {
  return WAYPOINT_SETTINGS.read(env);
}

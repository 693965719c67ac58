// The controller's settings: read once from the environment into a frozen object, through one
// schema. Its defaults are CONTROLLER_DEFAULTS' (src/controller/controller.ts), so a controller
// started in-process (the local cluster, tests) and one started from main agree.
import { CONTROLLER_CA_PORT, CONTROLLER_XDS_PORT } from '../common/constants.ts';
import { TRACING_SETTINGS, TRUST_DOMAIN } from '../common/shared-settings.ts';
import { ConfigError, defineSettings, duration, type Env, formatDuration, port, str, type Values } from '../common/settings.ts';
import { CA_DEFAULTS } from './ca/index.ts';

export { ConfigError };

export const CONTROLLER_SETTINGS = defineSettings(
  'the controller',
  {
    trustDomain: TRUST_DOMAIN,
    host: str('MESH_LISTEN_HOST', 'the address the config stream and the CA listen on', {
      default: '0.0.0.0',
      why: 'every node dials them through the Service, from any address',
    }),
    xdsPort: port('MESH_XDS_PORT', 'the config stream (delta xDS, mutual TLS)', {
      default: CONTROLLER_XDS_PORT,
      why: "istiod's xDS port",
    }),
    caPort: port('MESH_CA_PORT', 'the CA (CreateCertificate over TLS)', {
      default: CONTROLLER_CA_PORT,
      why: "istiod's CA port",
    }),
    relayHost: str('MESH_RELAY_HOST', 'the address the flow relay (Observer gRPC for every node) listens on', {
      default: '127.0.0.1',
      why: "the relay is plaintext: reach it with kubectl port-forward, as hubble-relay's users do",
    }),
    relayPort: port('MESH_RELAY_PORT', 'the flow relay', {
      default: 4245,
      why: "Hubble Relay's port",
    }),
    waypointImage: str('MESH_WAYPOINT_IMAGE', "the image of the waypoints the controller deploys for Gateways of class `mesh-waypoint`", {
      default: 'localhost/mesh-waypoint:latest',
      why: '`make images` builds it under this name; the chart sets the tag it installs',
    }),
    // Passed on to the waypoints it deploys (it exports no spans itself).
    ...TRACING_SETTINGS,
    workloadCertTtlMs: duration('MESH_WORKLOAD_CERT_TTL', 'lifetime of a workload certificate when the request names none (Go duration: `30s`, `90m`, `24h`)', { minMs: 1000 }, {
      default: CA_DEFAULTS.defaultTtlMs,
      why: "Istio's DEFAULT_WORKLOAD_CERT_TTL; renewed at half-life, so a day keeps an outage of the CA harmless for 12 h",
    }),
    maxWorkloadCertTtlMs: duration('MESH_MAX_WORKLOAD_CERT_TTL', 'the longest workload certificate the CA signs; longer requests are cut to it', { minMs: 1000 }, {
      default: CA_DEFAULTS.maxTtlMs,
      why: "Istio's MAX_WORKLOAD_CERT_TTL (90 days)",
    }),
  },
  (v) =>
    v.workloadCertTtlMs > v.maxWorkloadCertTtlMs
      ? `MESH_WORKLOAD_CERT_TTL=${formatDuration(v.workloadCertTtlMs)} is longer than MESH_MAX_WORKLOAD_CERT_TTL=${formatDuration(v.maxWorkloadCertTtlMs)}: raise the maximum or shorten the default`
      : undefined,
);

export type ControllerSettings = Values<typeof CONTROLLER_SETTINGS.settings>;

/** The controller's settings from `env`, as ControllerConfig fields. */
export function loadControllerSettings(env: Env = process.env): Omit<ControllerSettings, 'logLevel' | 'trace'> {
  const { logLevel: _level, trace: _trace, ...rest } = CONTROLLER_SETTINGS.read(env);
  return Object.freeze(rest);
}

// The controller's settings: read once from the environment into a frozen object, through one
// schema. Its defaults are CONTROLLER_DEFAULTS' (src/controller/controller.ts), so a controller
// started in-process (the local cluster, tests) and one started from main agree.
import { hostname } from 'node:os';
import { CONTROLLER_CA_PORT, CONTROLLER_XDS_PORT } from '../common/constants.ts';
import { TRACING_SETTINGS, TRUST_DOMAIN } from '../common/shared-settings.ts';
import { bool, ConfigError, defineSettings, duration, type Env, formatDuration, port, str, type Values } from '../common/settings.ts';
import { CA_DEFAULTS } from './ca/index.ts';
import { holderIdentity, LEASE_DEFAULTS, type LeaseSettings } from './leader-election.ts';

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
    dashboardHost: str('MESH_DASHBOARD_HOST', 'the address the service map (`meshctl dashboard`) listens on', {
      default: '127.0.0.1',
      why: 'the page is plaintext and shows every flow without a login: reach it through `meshctl dashboard`, which port-forwards',
    }),
    dashboardPort: port('MESH_DASHBOARD_PORT', 'the service map in the browser (HTTP: the page, /api/graph, /api/events, /api/flows)', {
      default: 20001,
      why: "Kiali's port",
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
    ownerClusterRole: str('MESH_OWNER_CLUSTER_ROLE', "the ClusterRole that owns what the controller makes (the CA's root Secret, the trust bundle ConfigMaps, its Leases, the mesh-waypoint GatewayClass): deleting it (helm uninstall) has the garbage collector delete them", {
      optional: true,
      shown: 'unset: they get no owner and outlive the controller (the chart sets `mesh-controller`)',
    }),
    leaderElection: bool('MESH_LEADER_ELECTION', 'take a Lease before writing to the API (status, waypoint Deployments, the trust bundle ConfigMaps); every replica serves the config stream, the CA and the relay either way', {
      default: true,
      why: 'two replicas must never both write; the chart turns it off only for one replica, where it renders no Lease rights',
    }),
    leaseName: str('MESH_LEASE_NAME', 'the coordination.k8s.io/v1 Lease the replicas elect their leader on', {
      default: LEASE_DEFAULTS.name,
      why: "the name the chart's Role mesh-controller-leader-election grants get and update on",
    }),
    leaseNamespace: str('MESH_LEASE_NAMESPACE', "the Lease's namespace", {
      default: 'mesh-system',
      why: "the controller's namespace, where the chart renders the Lease's Role",
    }),
    podName: str('MESH_POD_NAME', "this replica's name in the Lease's holderIdentity (a random suffix keeps a restarted replica apart)", {
      default: () => hostname(),
      shown: '(the hostname)',
      why: "a pod's hostname is its name, as client-go's leader election uses it",
    }),
    leaseDurationMs: duration('MESH_LEASE_DURATION', "how long the other replicas wait after the leader's last renewal before they take the Lease", { minMs: 1000 }, {
      default: LEASE_DEFAULTS.leaseDurationMs,
      why: "kube-controller-manager's --leader-elect-lease-duration: a leader that died is replaced within it",
    }),
    leaseRenewDeadlineMs: duration('MESH_LEASE_RENEW_DEADLINE', 'how long the leader keeps leading without a successful renewal; shorter than the lease duration', { minMs: 500 }, {
      default: LEASE_DEFAULTS.renewDeadlineMs,
      why: "kube-controller-manager's --leader-elect-renew-deadline: it gives up before the others may take over",
    }),
    leaseRetryPeriodMs: duration('MESH_LEASE_RETRY_PERIOD', 'how often every replica reads the Lease, and the leader renews it', { minMs: 100 }, {
      default: LEASE_DEFAULTS.retryPeriodMs,
      why: "kube-controller-manager's --leader-elect-retry-period",
    }),
  },
  (v) =>
    v.workloadCertTtlMs > v.maxWorkloadCertTtlMs
      ? `MESH_WORKLOAD_CERT_TTL=${formatDuration(v.workloadCertTtlMs)} is longer than MESH_MAX_WORKLOAD_CERT_TTL=${formatDuration(v.maxWorkloadCertTtlMs)}: raise the maximum or shorten the default`
      : !(v.leaseDurationMs > v.leaseRenewDeadlineMs && v.leaseRenewDeadlineMs > v.leaseRetryPeriodMs)
        ? `MESH_LEASE_DURATION=${formatDuration(v.leaseDurationMs)}, MESH_LEASE_RENEW_DEADLINE=${formatDuration(v.leaseRenewDeadlineMs)} and MESH_LEASE_RETRY_PERIOD=${formatDuration(v.leaseRetryPeriodMs)} must be in decreasing order: a leader has to give up before the others may take over, and try more than once before it gives up`
        : undefined,
);

export type ControllerSettings = Values<typeof CONTROLLER_SETTINGS.settings>;

type LeaseKeys = 'leaderElection' | 'leaseName' | 'leaseNamespace' | 'podName' | 'leaseDurationMs' | 'leaseRenewDeadlineMs' | 'leaseRetryPeriodMs';

/** The controller's settings from `env`, as ControllerConfig fields; `lease` is set when it elects. */
export function loadControllerSettings(env: Env = process.env): Omit<ControllerSettings, 'logLevel' | 'trace' | LeaseKeys> & { lease?: LeaseSettings } {
  const { logLevel: _level, trace: _trace, leaderElection, leaseName, leaseNamespace, podName, leaseDurationMs, leaseRenewDeadlineMs, leaseRetryPeriodMs, ...rest } = CONTROLLER_SETTINGS.read(env);
  const lease: LeaseSettings | undefined = leaderElection
    ? { name: leaseName, namespace: leaseNamespace, identity: holderIdentity(podName), leaseDurationMs, renewDeadlineMs: leaseRenewDeadlineMs, retryPeriodMs: leaseRetryPeriodMs }
    : undefined;
  return Object.freeze({ ...rest, ...(lease ? { lease: Object.freeze(lease) } : {}) });
}

// ztunnel's settings: read once from the environment into a frozen object, through one schema —
// the node's settings it shares with the agent (src/common/shared-settings.ts: bpffs, the ZDS
// socket, the mark, the controller and the node's identity) and its own servers' ports.
import { checkMark, NODE_SETTINGS, TRACING_SETTINGS } from '../common/shared-settings.ts';
import { ConfigError, defineSettings, duration, type Env, ip, port, type Values } from '../common/settings.ts';
import { ADMIN_DEFAULTS } from '../admin/index.ts';

export { ConfigError };

const N = NODE_SETTINGS;

export const ZTUNNEL_SETTINGS = defineSettings(
  'ztunnel',
  {
    nodeIp: N.nodeIp,
    bpffsDir: N.bpffsDir,
    controlSocket: N.controlSocket,
    zdsSocket: N.zdsSocket,
    mark: N.mark,
    nodeName: N.nodeName.required('it serves the pods of its node, and asks the CA for their identities as that node'),
    xdsAddress: N.xdsAddress,
    caAddress: N.caAddress,
    serverName: N.serverName,
    trustDomain: N.trustDomain,
    caRootFile: N.caRootFile,
    tokenFile: N.tokenFile,
    namespace: N.namespace,
    serviceAccount: N.serviceAccount,
    adminPort: port('MESH_ADMIN_PORT', 'admin server on 127.0.0.1: `/config_dump`, `/logging`, `/healthz`', {
      default: ADMIN_DEFAULTS.adminPort,
      why: "Istio ztunnel's admin port, which istioctl and meshctl ztunnel-config expect",
    }),
    // Optional L4 spans, one per connection: on when an endpoint is set (the chart's tracing.l4).
    ...TRACING_SETTINGS,
    metricsPort: port('MESH_METRICS_PORT', 'Prometheus metrics (`/metrics`, `/stats/prometheus`)', {
      default: ADMIN_DEFAULTS.metricsPort,
      why: "Istio's merged-metrics port, which existing scrape configs and dashboards use",
    }),
    readinessPort: port('MESH_READINESS_PORT', 'readiness (`/healthz/ready`): config synced, agent connected, every enrolled pod served; not ready while draining', {
      default: ADMIN_DEFAULTS.readinessPort,
      why: "Istio's readiness port, as the chart's probe names it",
    }),
    drainTimeout: duration('MESH_DRAIN_TIMEOUT', 'how long a ztunnel that was replaced (SIGTERM) keeps serving its established connections before it resets what is left; `0s` waits for the last one however long it lasts', { minMs: 0 }, {
      default: 3_600_000,
      why: "long-lived connections (databases, gRPC streams, websockets) outlive a short window; Istio's 25 s resets them on every upgrade. The chart's terminationGracePeriodSeconds matches it",
    }),
    listenHost: ip('MESH_LISTEN_HOST', 'the address the metrics and readiness servers bind (the admin server always binds 127.0.0.1)', {
      default: ADMIN_DEFAULTS.metricsHost,
      why: "Prometheus and the kubelet reach them from outside ztunnel's own pod netns; where ztunnel shares the host's netns (the local cluster), bind loopback",
    }),
  },
  (v) => checkMark(v.mark),
);

/**
 * The file ztunnel runs, relative to the root (the image's /app, the checkout): src/ztunnel/main.ts
 * bundled with what it loads (src/images/ztunnel-bundle.ts says why and how much it saves). The
 * chart's ztunnel args give it after ZTUNNEL_NODE_FLAGS; the local cluster bundles and runs it.
 */
export const ZTUNNEL_ENTRY = 'build/ztunnel/main.mjs';

/**
 * Node/V8 flags ztunnel runs with, on node's command line ahead of the entry: the chart's ztunnel
 * args (daemonset/chart/templates/node.yaml, checked by test/unit/chart.test.ts) and the local
 * cluster's spawn. They size the heap when the isolate is made, so main.ts cannot set them.
 *
 * --max-semi-space-size=1: V8's young generation capped at 1 MB per semi-space. Left to itself V8
 * sizes it from the machine's memory and grows it under load (an allocation loop took it to 128 MB
 * on the test machine), so each burst of short-lived objects (per request, per connection) stayed
 * resident. bench:ztunnel-memory (issue 16; ARCHITECTURE.md, Memory), against V8's default in the
 * same series: idle 88.3 → 83.1 MB RSS, peak at 1,000 rps 95.0–101.6 → 86.5 MB, holding 2,000
 * connections 141–153 → 121 MB; the ztunnels' CPU per request at saturation 43.7–47.0 → 45.4 µs
 * (no change beyond the run-to-run spread).
 */
export const ZTUNNEL_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/**
 * Environment ztunnel's process starts with, beside ZTUNNEL_NODE_FLAGS and for the same reason:
 * glibc reads it when the process starts, before any code of ours runs, so main.ts cannot set
 * it. The chart's ztunnel env (daemonset/chart/templates/node.yaml, checked by
 * test/unit/chart.test.ts) and the local cluster's spawn give it.
 *
 * MALLOC_ARENA_MAX=2: glibc gives each thread that allocates a malloc arena of its own, up to 8
 * per core, and pages freed in an arena mostly stay resident. ztunnel's threads (V8's compiler
 * and GC workers, libuv's pool) allocate mostly while modules load: on a node pod's first start,
 * with Node's compile cache still empty, Node strips our TypeScript with amaro's WebAssembly, and
 * its compilation on the worker threads left ~10 MB in their arenas for the process's life.
 * Measured (issue 16), ztunnel's modules loaded, idle after GC, 2–3 runs each: cold compile
 * cache 48.1–51.2 MB anonymous unset, 39.6–39.9 with 2, 38.2–38.9 with 1; with a warm cache
 * 24.0–24.4 unset, 23.3–23.5 capped. bench:ztunnel-memory (warm cache, 2,000 connections; unset / 2 / 1 alternating,
 * 2–3 runs each, anonymous MB): idle 28.6–29.2 / 28.2–28.4 / 27.7–28.6, 1,000 rps peak
 * 30.8–31.7 / 29.1–29.8 / 28.2–29.1, holding 60.2–61.2 / 58.1–63.3 / 56.7–61.4; the ztunnels'
 * CPU per request at saturation 109.6–111.5 / 94.9–115.0 / 94.5–122.7 µs (this machine's noise:
 * no cost shows). 2 rather than 1: with 1 every thread takes the main thread's arena lock, for
 * under a megabyte more.
 */
export const ZTUNNEL_PROCESS_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

export type ZtunnelSettings = Values<typeof ZTUNNEL_SETTINGS.settings>;

export function loadZtunnelSettings(env: Env = process.env): ZtunnelSettings {
  return ZTUNNEL_SETTINGS.read(env);
}

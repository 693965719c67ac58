// Entry point of the waypoint process: `node src/waypoint/main.ts` (the waypoint Deployment's
// container, made by the controller's deployer). Settings: src/waypoint/config.ts.
import { readFileSync } from 'node:fs';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { LogLevels, startZtunnelServers } from '../admin/index.ts';
import { logger } from '../common/log.ts';
import { tokenFile } from '../identity/index.ts';
import { createTracer } from '../tracing/index.ts';
import { loadWaypointSettings } from './config.ts';
import { Waypoint } from './waypoint.ts';

const log = logger('waypoint');

async function main(): Promise<void> {
  const cfg = loadWaypointSettings();
  const registry = new Registry();
  // The readiness server answers (not ready) while the waypoint gets its identity and config.
  const running: { w?: Waypoint } = {};
  const processMetrics = new Registry();
  collectDefaultMetrics({ register: processMetrics });
  const servers = await startZtunnelServers({
    admin: { port: cfg.adminPort, configDump: () => running.w?.configDump() ?? { workloads: [], services: [], policies: [], certificates: [], connections: [] }, logLevels: LogLevels.ofProcess({}) },
    metrics: { host: cfg.listenHost, port: cfg.metricsPort, registries: [registry, processMetrics] },
    readiness: { host: cfg.listenHost, port: cfg.readinessPort, ready: () => running.w?.readiness() ?? { ready: false, reason: 'starting: fetching the identity and the config' } },
  });
  // Spans name the waypoint as Istio's proxies name themselves (<workload>.<namespace>).
  const tracer = await createTracer(cfg, {
    'service.name': `${cfg.name}.${cfg.namespace}`,
    'service.namespace': cfg.namespace,
    'k8s.namespace.name': cfg.namespace,
    'k8s.pod.name': cfg.podName,
    ...(cfg.nodeName ? { 'k8s.node.name': cfg.nodeName } : {}),
    'mesh.reporter': 'waypoint',
  });
  const w = await Waypoint.start(
    {
      tracer,
      name: cfg.name,
      namespace: cfg.namespace,
      serviceAccount: cfg.serviceAccount,
      podName: cfg.podName,
      nodeName: cfg.nodeName ?? '',
      l7FlowsSocket: cfg.l7FlowsSocket,
      trustDomain: cfg.trustDomain,
      xdsAddress: cfg.xdsAddress,
      caAddress: cfg.caAddress,
      serverName: cfg.serverName,
      caRoots: readFileSync(cfg.caRootFile, 'utf8'),
      token: tokenFile(cfg.tokenFile),
      listenHost: cfg.listenHost,
      hbonePort: cfg.hbonePort,
    },
    registry,
  );
  running.w = w;
  log.info({ metrics: servers.metrics.port, readiness: servers.readiness.port }, 'admin, metrics and readiness listening');
  // SIGTERM drains (Waypoint.drain): the readiness server stays up meanwhile, answering not ready.
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, drainDelayMs: cfg.drainDelayMs, drainTimeoutMs: cfg.drainTimeoutMs }, 'stopping');
    w.drain(cfg.drainDelayMs, cfg.drainTimeoutMs)
      .then(() => servers.close(1000))
      .then(() => w.close())
      .catch((e: Error) => log.error({ err: e.message }, 'stopping failed'))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e: Error & { code?: string }) => {
  log.fatal({ code: e.code, err: e.message }, 'waypoint failed to start');
  process.exit(1);
});

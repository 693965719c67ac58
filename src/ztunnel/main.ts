// Entry point of the ztunnel process. It runs bundled with what it loads (ZTUNNEL_ENTRY,
// build/ztunnel/main.mjs, made by src/images/ztunnel-bundle.ts: the DaemonSet's ztunnel container
// and the local cluster); `node src/ztunnel/main.ts` runs the same code from the sources.
// Its settings (src/ztunnel/config.ts) share the node's with the agent (MESH_NODE_NAME,
// MESH_CONTROLLER, MESH_MARK, …) and its bpffs directory.
//
// Startup order (ARCHITECTURE.md, "ztunnel start / restart order"): only what asks the CA for
// the node certificate and connects to the agent (boot.ts) is imported statically; the proxy
// (ztunnel.ts) loads while those requests are out, and what serves no traffic (the admin,
// metrics and readiness servers, the process metrics) loads once ztunnel is ready.
import { readFileSync } from 'node:fs';
import { flushCompileCache } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { logger } from '../common/log.ts';
import { tokenFile } from '../identity/index.ts';
import { ZtunnelBoot } from './boot.ts';
import { loadZtunnelSettings } from './config.ts';

const log = logger('ztunnel');

/** How long a starting ztunnel waits for its node certificate's request to leave before it loads
 * the rest of its modules anyway (the CA unreachable, or slow to connect). */
const BOOT_SEND_WAIT_MS = 100;

// Relayed bytes live in Buffers outside V8's heap, made and dropped by the GB; with V8's fixed
// 64 MB external-memory trigger each 64 MB relayed started a full mark-compact of the heap (80 of
// them per GB, ~40% of a bulk transfer's CPU, issue 16). Counted in the heap's global limit
// instead, they are left to the scavenges that free them while young.
setFlagsFromString('--external-memory-accounted-in-global-limit');

async function main(): Promise<void> {
  const cfg = loadZtunnelSettings();
  const boot = ZtunnelBoot.start({
    nodeName: cfg.nodeName,
    xdsAddress: cfg.xdsAddress,
    caAddress: cfg.caAddress,
    serverName: cfg.serverName,
    trustDomain: cfg.trustDomain,
    caRoots: readFileSync(cfg.caRootFile, 'utf8'),
    token: tokenFile(cfg.tokenFile),
    bpffsDir: cfg.bpffsDir,
    zdsSocket: cfg.zdsSocket,
    mark: cfg.mark,
    namespace: cfg.namespace,
    serviceAccount: cfg.serviceAccount,
  });
  // The node certificate's request on its way first (a few turns of the event loop), then the
  // proxy's modules while the CA signs.
  await boot.requestSent(BOOT_SEND_WAIT_MS);
  const [{ Ztunnel }, { decisionFromState }] = await Promise.all([import('./ztunnel.ts'), import('./policy.ts')]);
  // How long Node took to load the modules that serve: most of a restart's time to serve (see ARCHITECTURE.md).
  log.info({ uptimeMs: Math.round(process.uptime() * 1000) }, 'modules loaded');
  const z = await Ztunnel.start(boot, decisionFromState);
  // Loading the rest blocks the event loop for tens of ms: not while pods' listeners are opening.
  await z.podsServed(1000);
  const [{ collectProcessMetrics, Registry }, { LogLevels, startZtunnelServers }, { registerBuildInfo }] = await Promise.all([
    import('../common/prom.ts'),
    import('../admin/index.ts'),
    import('../telemetry/index.ts'),
  ]);
  if (cfg.tracingEndpoint) {
    // Loaded only now: a ztunnel without L4 spans never pays for OpenTelemetry.
    const { createTracer } = await import('../tracing/index.ts');
    z.telemetry.tracer = await createTracer(cfg, { 'service.name': `ztunnel.${cfg.namespace}`, 'k8s.node.name': cfg.nodeName, 'mesh.reporter': 'ztunnel' });
  }
  // The process's own health next to Istio's series: resident memory, heap, event-loop lag, GC
  // pauses and CPU (prom-client's default metrics: process_*, nodejs_*).
  const processMetrics = new Registry();
  collectProcessMetrics(processMetrics);
  registerBuildInfo(processMetrics, 'ztunnel');
  // /logging reaches the loggers the traffic goes through (hbone, authz, xds, identity, ztunnel,
  // …: one per component in this process) and the access log.
  const logLevels = LogLevels.ofProcess(z.telemetry.accessLog ? { access: z.telemetry.accessLog.logger } : {});
  const servers = await startZtunnelServers({
    admin: { port: cfg.adminPort, configDump: () => z.configDump(), logLevels },
    metrics: { host: cfg.listenHost, port: cfg.metricsPort, registries: [z.telemetry.metrics.registry, processMetrics] },
    readiness: { host: cfg.listenHost, port: cfg.readinessPort, ready: () => z.readiness() },
  });
  log.info({ admin: servers.admin.port, metrics: servers.metrics.port, readiness: servers.readiness.port }, 'admin, metrics and readiness listening');
  // Node writes its compile cache (NODE_COMPILE_CACHE) when the process exits — which a crashed
  // ztunnel never does, so its replacement would compile every module again (~0.45 s more before
  // it serves). Written now, once everything that serves has loaded.
  flushCompileCache();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    servers
      .close(2000)
      .then(() => z.close())
      .then(() => z.telemetry.tracer?.shutdown())
      .finally(() => process.exit(0));
  };
  // SIGTERM is a handover (a DaemonSet rollout, `meshctl dev rollout ztunnel`, a node drain): the
  // established connections are served until they end or MESH_DRAIN_TIMEOUT passes, with admin,
  // metrics and readiness up meanwhile. SIGINT stops at once.
  process.once('SIGTERM', () => {
    void z.drain(cfg.drainTimeout).then(() => stop('SIGTERM (drained)'));
  });
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((e: Error & { code?: string }) => {
  log.fatal({ code: e.code, err: e.message }, 'ztunnel failed to start');
  process.exit(1);
});

// Entry point of the ztunnel process: `node src/ztunnel/main.ts` (the DaemonSet's ztunnel container).
// It shares the agent's settings (MESH_NODE_NAME, MESH_CONTROLLER, …) and its bpffs directory.
import { readFileSync } from 'node:fs';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { logger } from '../common/log.ts';
import { tokenFile } from '../identity/index.ts';
import { loadAgentConfig } from '../agent/config.ts';
import { policyFromState } from './policy.ts';
import { Ztunnel } from './ztunnel.ts';
import { LogLevels, startZtunnelServers } from './admin/index.ts';

const log = logger('ztunnel');

async function main(): Promise<void> {
  const cfg = loadAgentConfig();
  if (!cfg.mesh) throw new Error('ztunnel needs MESH_NODE_NAME and the controller settings (see README: node agent settings)');
  const m = cfg.mesh;
  const z = await Ztunnel.start(
    {
      nodeName: m.nodeName,
      xdsAddress: m.xdsAddress,
      caAddress: m.caAddress,
      serverName: m.serverName,
      trustDomain: m.trustDomain,
      caRoots: readFileSync(m.caRootFile, 'utf8'),
      token: tokenFile(m.tokenFile),
      bpffsDir: cfg.bpffsDir,
      zdsSocket: cfg.zdsSocket,
      namespace: m.namespace,
      serviceAccount: m.serviceAccount,
    },
    policyFromState,
  );
  // The process's own health next to Istio's series: resident memory, heap, event-loop lag, GC
  // pauses and CPU (prom-client's default metrics: process_*, nodejs_*).
  const processMetrics = new Registry();
  collectDefaultMetrics({ register: processMetrics });
  const port = (name: string, dflt: number) => (process.env[name] !== undefined && process.env[name] !== '' ? Number(process.env[name]) : dflt);
  const servers = await startZtunnelServers({
    admin: { port: port('MESH_ADMIN_PORT', 15000), configDump: () => z.configDump(), logLevels: new LogLevels().register('ztunnel', log) },
    metrics: { port: port('MESH_METRICS_PORT', 15020), registries: [z.telemetry.metrics.registry, processMetrics] },
    readiness: { port: port('MESH_READINESS_PORT', 15021), ready: () => z.readiness() },
  });
  log.info({ admin: servers.admin.port, metrics: servers.metrics.port, readiness: servers.readiness.port }, 'admin, metrics and readiness listening');
  const stop = (signal: string) => {
    log.info({ signal }, 'stopping');
    servers
      .close(2000)
      .then(() => z.close())
      .finally(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((e: Error & { code?: string }) => {
  log.fatal({ code: e.code, err: e.message }, 'ztunnel failed to start');
  process.exit(1);
});

// Entry point of the node agent process: `node src/agent/main.ts` (the DaemonSet's agent container).
import { logger } from '../common/log.ts';
import { Agent } from './agent.ts';
import { loadAgentConfig, observerAdvertise } from './config.ts';
import { serveControl } from './control.ts';
import { MeshSync } from './mesh-sync.ts';
import { ZdsServer } from './zds.ts';
import { readFileSync } from 'node:fs';
import { CONTROLLER_SERVICE_ACCOUNT, formatSpiffeId, spiffeId, tokenFile } from '../identity/index.ts';
import { localObserver } from '../flows/local.ts';
import { L7FlowServer } from '../flows/l7.ts';
import { type ServingObserver, serveObserver } from '../flows/server.ts';
import { packageVersion } from '../cli/commands/version.ts';
import { startMetricsServer } from '../admin/index.ts';
import { agentMetrics } from './metrics.ts';
import { Datapath } from '../datapath/index.ts';
import { shutdownKind } from './uninstall.ts';
import { boundSockets, closeKeepingOthers } from './sockets.ts';

const log = logger('agent');

async function main(): Promise<void> {
  const cfg = loadAgentConfig();
  const agent = await Agent.start(cfg);
  // ztunnel learns the enrolled pods from here (ZDS), and reports its connections back.
  const zds = await ZdsServer.listen(agent.enrolment, cfg.zdsSocket, {
    onRecord: (r) => agent.collector.onRecord(r),
    onLost: (n) => agent.collector.onZtunnelLost(n),
  });
  const server = await serveControl(agent, cfg.controlSocket, { waitServed: (uid, ms) => zds.waitServed(uid, ms) });
  // Prometheus: the datapath's decisions and the node's flows (the flows API serves them one by one).
  const registry = agentMetrics({
    events: agent.eventCounts,
    kernelEventsLost: () => Number(agent.datapath.eventsLost()),
    ztunnelRecordsLost: () => zds.ztunnelLost,
    enrolledPods: () => agent.enrolment.list().length,
    ring: agent.flows,
    onFlow: (fn) =>
      agent.flows.subscribe(() => {
        const it = agent.flows.at(agent.flows.nextSeq - 1);
        if (it && 'flow' in it) fn(it.flow);
      }),
  });
  const [metricsHost, metricsPort] = [cfg.metricsAddress.replace(/:\d+$/, '').replace(/^\[|\]$/g, ''), Number(/:(\d+)$/.exec(cfg.metricsAddress)![1])];
  const metrics = await startMetricsServer({ host: metricsHost, port: metricsPort, registries: [registry] });
  log.info({ metrics: metrics.port }, 'metrics listening');
  // The node's waypoints report each HTTP request here: L7 flows.
  const l7 = await L7FlowServer.listen(cfg.l7FlowsSocket, (r) => agent.collector.onL7(r));
  let sync: MeshSync | undefined;
  let observer: ServingObserver | undefined;
  if (cfg.mesh) {
    const m = cfg.mesh;
    const caRoots = readFileSync(m.caRootFile, 'utf8');
    sync = new MeshSync(agent, {
      ...m,
      caRoots,
      token: tokenFile(m.tokenFile),
      cgroupRoot: cfg.podCgroup,
      // A flow waiting for a pod's name (its pod called before its Workload got here) goes now.
      onModelChange: () => agent.collector.names(),
      waitServed: (uid, ms) => zds.waitServed(uid, ms),
      ztunnelConnected: () => zds.ztunnels > 0,
      // The flows API: mutual TLS with this agent's workload certificate; clients (the relay)
      // must present a certificate of the mesh's CA.
      beforeSubscribe: async (certs) => {
        const impl = localObserver({
          ring: agent.flows,
          nodeName: m.nodeName,
          version: packageVersion(),
          enrich: (f) => agent.collector.enrich(f),
          status: () => ({
            kernelEventsLost: Number(agent.datapath.eventsLost()),
            ztunnelRecordsLost: zds.ztunnelLost,
            enrolledPods: agent.enrolment.list().length,
            ztunnelConnected: zds.ztunnels > 0,
          }),
        });
        // Flows are read by the controller's relay only: its identity, from the mesh CA.
        const relay = formatSpiffeId(spiffeId(m.trustDomain, m.namespace, CONTROLLER_SERVICE_ACCOUNT));
        observer = await serveObserver(impl, cfg.observerAddress, certs.serverCredentials(), ({ uris }) =>
          uris.length === 1 && uris[0] === relay ? undefined : `only the controller's relay (${relay}) may read this node's flows; the client presented ${uris.join(', ') || 'no identity'}`,
        );
        const advertise = observerAdvertise(cfg, observer.port);
        log.info({ observer: advertise }, 'flows API listening');
        return { observer: advertise };
      },
    });
    await sync.start();
    const s = sync;
    agent.resolver = (ip) => s.resolve(ip);
    agent.collector.waitForNames();
  }
  const sockets = boundSockets([cfg.controlSocket, cfg.zdsSocket, cfg.l7FlowsSocket]);
  log.info({ socket: cfg.controlSocket }, 'agent ready');
  let stopping = false;
  const stop = async (signal: string) => {
    // Once: a second signal while the uninstall check runs must not start another stop.
    if (stopping) return;
    stopping = true;
    // An uninstall (src/agent/uninstall.ts) takes the datapath out; anything else leaves it in
    // place for the next agent.
    const kind = cfg.nodeDaemonSet
      ? await shutdownKind(cfg.mesh?.namespace ?? 'mesh-system', cfg.nodeDaemonSet)
      : { uninstall: false, why: 'MESH_NODE_DAEMONSET is not set' };
    await sync?.close();
    if (kind.uninstall) {
      const n = agent.unenrolAll();
      // ztunnel hears the deletes over ZDS before the socket closes.
      await new Promise((r) => setTimeout(r, 200));
      log.info({ signal, why: kind.why, unenrolled: n, bpffsDir: cfg.bpffsDir }, 'uninstalling: pods unenrolled, removing the datapath');
    } else {
      log.info({ signal, why: kind.why }, 'stopping; capture stays in place for the next agent');
    }
    // A newer agent of an overlapping node pod may have bound these paths since (sockets.ts).
    const kept = await closeKeepingOthers(sockets, () => {
      server.close();
      zds.close();
      void l7.close();
      void metrics.close(0);
    });
    if (kept.length) log.info({ sockets: kept }, "left the newer agent's sockets in place");
    void observer?.close();
    agent.stop();
    if (kind.uninstall) Datapath.uninstall(cfg.bpffsDir);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((e: Error & { code?: string }) => {
  log.fatal({ code: e.code, err: e.message }, 'agent failed to start');
  process.exit(1);
});

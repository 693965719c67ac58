// The local cluster's daemon: `meshctl dev up` starts it in the background. It runs the API
// server, the node runtimes and the controllers until SIGTERM, then removes every namespace,
// cgroup and process it made (the API server's objects stay in the state directory).
//   node src/local/daemon.ts --state-dir DIR [--nodes N] [--prefix P] [--no-mesh] [--workload-cert-ttl-ms MS] [--tracing-endpoint URL --tracing-sampling PERCENT]
//                            [--controller-replicas N]
// meshctl asks it for what only it can do (`dev rollout controller`) on <state dir>/daemon.sock.
import { rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { logger } from '../common/log.ts';
import { type DaemonStatus, pidPath, statusPath } from './daemon-state.ts';
import { serveControl } from './daemon-control.ts';
import { LocalMesh } from './mesh.ts';
import { LocalCluster } from './runtime/cluster.ts';

const log = logger('local');

export { type DaemonStatus, pidPath, statusPath } from './daemon-state.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'state-dir': { type: 'string' },
      nodes: { type: 'string', default: '2' },
      prefix: { type: 'string', default: 'mesh' },
      'no-mesh': { type: 'boolean', default: false },
      'workload-cert-ttl-ms': { type: 'string' },
      'tracing-endpoint': { type: 'string' },
      'tracing-sampling': { type: 'string' },
      'controller-replicas': { type: 'string' },
    },
  });
  const stateDir = values['state-dir'];
  if (!stateDir) throw new Error('--state-dir is required');
  const status: DaemonStatus = { phase: 'starting', pid: process.pid, message: 'starting', progress: [] };
  const write = () => writeFileSync(statusPath(stateDir), `${JSON.stringify(status, null, 2)}\n`);
  writeFileSync(pidPath(stateDir), `${process.pid}\n`);
  write();
  let cluster: LocalCluster | undefined;
  let mesh: LocalMesh | undefined;
  let control: import('node:net').Server | undefined;
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    status.phase = 'stopping';
    status.message = why;
    write();
    try {
      control?.close();
      await mesh?.stop();
      await cluster?.stop();
      status.phase = 'stopped';
      status.message = 'stopped; every namespace, cgroup and process of the cluster is gone';
    } catch (e) {
      status.phase = 'failed';
      status.message = `stopping left something behind: ${(e as Error).message}`;
    }
    write();
    rmSync(pidPath(stateDir), { force: true });
    process.exit(status.phase === 'stopped' ? 0 : 1);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  const onProgress = (m: string) => {
    status.progress.push(m);
    status.message = m;
    write();
    log.info(m);
  };
  try {
    cluster = await LocalCluster.start({ stateDir, nodes: Number(values.nodes), prefix: values.prefix!, onProgress });
    // The mesh on top, as `helm install` would put it on a real cluster (--no-mesh: cluster only).
    if (!values['no-mesh']) {
      const ttl = Number(values['workload-cert-ttl-ms'] ?? 0);
      const tracing = values['tracing-endpoint'] ? { tracingEndpoint: values['tracing-endpoint'], tracingSampling: Number(values['tracing-sampling'] ?? 1) } : undefined;
      const replicas = Number(values['controller-replicas'] ?? 0);
      mesh = await LocalMesh.start(cluster, {
        stateDir,
        prefix: values.prefix!,
        onProgress,
        ...(ttl > 0 ? { workloadCertTtlMs: ttl } : {}),
        ...(tracing ? { tracing } : {}),
        ...(replicas > 0 ? { controllerReplicas: replicas } : {}),
      });
      status.mesh = true;
      // `meshctl dev rollout` talks to the mesh through it.
      control = await serveControl(stateDir, mesh);
    }
  } catch (e) {
    status.phase = 'failed';
    status.message = (e as Error).message;
    write();
    await mesh?.stop().catch(() => {});
    await cluster?.stop().catch(() => {});
    rmSync(pidPath(stateDir), { force: true });
    log.fatal({ err: (e as Error).message }, 'local cluster failed to start');
    process.exit(1);
  }
  status.phase = 'ready';
  status.message = 'ready';
  status.server = cluster.api.url;
  status.kubeconfig = cluster.kubeconfigPath;
  status.nodes = cluster.kubelets.length;
  write();
  log.info({ server: cluster.api.url, kubeconfig: cluster.kubeconfigPath }, 'local cluster ready');
}

if (import.meta.main) await main();

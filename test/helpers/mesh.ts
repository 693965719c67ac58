// The whole mesh on a local cluster, for end-to-end tests: the cluster, the controller (in this
// process), and per node the agent and ztunnel as real processes, as the DaemonSet would run
// them. Everything is torn down after the test and checked for leftovers.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { Controller } from '../../src/controller/controller.ts';
import { Datapath, layout, openPinnedMap } from '../../src/datapath/index.ts';
import { LocalCluster, podCgroupFor } from '../../src/local/runtime/cluster.ts';
import { run } from '../../src/local/run.ts';
import { endpointsPath, type MeshEndpoints } from '../../src/cli/endpoints.ts';
import { assertNothingLeaked, uniquePrefix } from './topology.ts';

const execFileP = promisify(execFile);
const AGENT = fileURLToPath(new URL('../../src/agent/main.ts', import.meta.url));
const ZTUNNEL = fileURLToPath(new URL('../../src/ztunnel/main.ts', import.meta.url));
export const SERVER_NAME = 'mesh-controller.mesh-system.svc';

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(fn()).catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface Mesh {
  prefix: string;
  stateDir: string;
  cluster: LocalCluster;
  core: k8s.CoreV1Api;
  controller: Controller;
  root: string;
  kubectl(...args: string[]): Promise<{ stdout: string; stderr: string }>;
  tokenFor(node: string): Promise<string>;
  bpffs(node: string): string;
  enrolledUids(node: string): string[];
  /** (Re)starts the controller on the same ports. */
  restartController(): Promise<void>;
  processes: Map<string, ChildProcess>;
  logs: Map<string, string>;
  startProcess(kind: 'agent' | 'ztunnel', node: string): Promise<ChildProcess>;
  /** A ztunnel's metrics or readiness port, from its log. */
  ztunnelPort(node: string, which: 'admin' | 'metrics' | 'readiness'): number;
}

/** Where cleanups go: an ava test's `t`, or anything with a teardown(fn) (the demo). */
export interface Teardown {
  teardown(fn: () => Promise<void> | void): void;
}

export async function startMesh(t: Teardown, opts: { nodes?: number; ztunnel?: boolean; prefix?: string } = {}): Promise<Mesh> {
  const nodes = Array.from({ length: opts.nodes ?? 2 }, (_, i) => `node${i + 1}`);
  const prefix = opts.prefix ?? uniquePrefix();
  const stateDir = mkdtempSync(`/tmp/mesh-${prefix}-mesh-`);
  const bpffsRoot = `${stateDir}/bpffs`;
  mkdirSync(bpffsRoot);
  await run('mount', ['-t', 'bpf', 'bpf', bpffsRoot]);
  const processes = new Map<string, ChildProcess>();
  const logs = new Map<string, string>();
  const held: { cluster?: LocalCluster; controller?: Controller } = {};
  t.teardown(async () => {
    const live = [...processes.values()].filter((p) => p.exitCode === null && p.signalCode === null);
    for (const p of live) p.kill('SIGTERM');
    await Promise.all(live.map((p) => Promise.race([once(p, 'exit'), new Promise((r) => setTimeout(r, 5000))])));
    for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await held.controller?.stop();
    for (const n of nodes) Datapath.uninstall(`${bpffsRoot}/${n}`);
    await run('umount', [bpffsRoot]);
    await held.cluster?.stop();
    rmSync(stateDir, { recursive: true, force: true });
    const left = await assertNothingLeaked(prefix);
    if (left.length) throw new Error(`left on the host: ${left.join('; ')}`);
  });

  const cluster = await LocalCluster.start({ stateDir, nodes: nodes.length, prefix });
  held.cluster = cluster;
  const core = cluster.kc.makeApiClient(k8s.CoreV1Api);
  const env = { ...process.env, KUBECONFIG: cluster.kubeconfigPath };
  // The node DaemonSet's pods: they hold the node identity the agents' tokens are bound to.
  await core.createNamespace({ body: { metadata: { name: 'mesh-system' } } });
  await core.createNamespacedServiceAccount({ namespace: 'mesh-system', body: { metadata: { name: 'mesh-node' } } });
  const nodePods = new Map<string, k8s.V1Pod>();
  for (const node of nodes) {
    nodePods.set(
      node,
      await core.createNamespacedPod({
        namespace: 'mesh-system',
        body: {
          metadata: { name: `mesh-node-${node}` },
          spec: { nodeName: node, hostNetwork: true, serviceAccountName: 'mesh-node', containers: [{ name: 'hold', image: 'unused', command: ['sleep', '3600'] }] },
        },
      }),
    );
  }
  const controller = await Controller.start(cluster.kc, { host: '127.0.0.1', xdsPort: 0, caPort: 0, relayPort: 0 });
  held.controller = controller;
  const root: string = await waitFor('the trust bundle ConfigMap', async () => (await core.readNamespacedConfigMap({ name: 'mesh-ca-root-cert', namespace: 'mesh-system' })).data?.['root-cert.pem']);
  writeFileSync(`${stateDir}/root-cert.pem`, root);

  const tokenFor = async (node: string) => {
    const pod = nodePods.get(node)!;
    const tr = await core.createNamespacedServiceAccountToken({
      name: 'mesh-node',
      namespace: 'mesh-system',
      body: { spec: { audiences: [], expirationSeconds: 3600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata!.name!, uid: pod.metadata!.uid! } } },
    });
    return tr.status!.token!;
  };
  const bpffs = (node: string) => `${bpffsRoot}/${node}`;
  const startProcess = async (kind: 'agent' | 'ztunnel', node: string) => {
    writeFileSync(`${stateDir}/${node}.token`, await tokenFor(node));
    const c = held.controller!;
    const child = spawn(process.execPath, [kind === 'agent' ? AGENT : ZTUNNEL], {
      env: {
        ...process.env,
        MESH_LOG_LEVEL: 'info',
        MESH_BPFFS_DIR: bpffs(node),
        MESH_POD_CGROUP: podCgroupFor(prefix, node),
        MESH_AGENT_SOCKET: `${stateDir}/${node}/agent.sock`,
        MESH_NODE_NAME: node,
        MESH_CONTROLLER: `127.0.0.1:${c.xdsPort}`,
        MESH_CA_ADDRESS: `127.0.0.1:${c.ca.port}`,
        MESH_CONTROLLER_NAME: SERVER_NAME,
        MESH_CA_ROOT_FILE: `${stateDir}/root-cert.pem`,
        MESH_TOKEN_FILE: `${stateDir}/${node}.token`,
        // Every ztunnel of the test runs in this host's netns: let each pick free ports.
        MESH_ADMIN_PORT: '0',
        MESH_METRICS_PORT: '0',
        MESH_READINESS_PORT: '0',
        MESH_OBSERVER_ADDRESS: '127.0.0.1:0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const key = `${kind}-${node}`;
    logs.set(key, '');
    child.stdout!.on('data', (d) => logs.set(key, logs.get(key) + String(d)));
    child.stderr!.on('data', (d) => logs.set(key, logs.get(key) + String(d)));
    processes.set(key, child);
    const ready = kind === 'agent' ? 'subscribed to the config stream' : 'admin, metrics and readiness listening';
    await waitFor(`${key}`, () => (logs.get(key)!.includes(ready) || child.exitCode !== null ? true : undefined), 30_000).catch(() => undefined);
    if (!logs.get(key)!.includes(ready)) throw new Error(`${key} did not start: ${logs.get(key)}`);
    writeEndpoints();
    return child;
  };
  const logField = (key: string, msg: string, field: string): unknown => {
    const line = (logs.get(key) ?? '').split('\n').filter((l) => l.includes(msg)).at(-1);
    return line ? (JSON.parse(line) as Record<string, unknown>)[field] : undefined;
  };
  // What meshctl reads (src/cli/endpoints.ts), as `meshctl dev up` records it.
  const writeEndpoints = () => {
    const c = held.controller!;
    const e: MeshEndpoints = { relay: `127.0.0.1:${c.relayPort}`, xds: `127.0.0.1:${c.xdsPort}`, nodes: {} };
    for (const node of nodes) {
      const admin = logField(`ztunnel-${node}`, 'admin, metrics and readiness listening', 'admin');
      const metrics = logField(`ztunnel-${node}`, 'admin, metrics and readiness listening', 'metrics');
      const observer = logField(`agent-${node}`, 'flows API listening', 'observer');
      e.nodes[node] = {
        ztunnelAdmin: admin ? `127.0.0.1:${String(admin)}` : '',
        ...(metrics ? { ztunnelMetrics: `127.0.0.1:${String(metrics)}` } : {}),
        ...(typeof observer === 'string' ? { observer } : {}),
      };
    }
    writeFileSync(endpointsPath(stateDir), `${JSON.stringify(e, null, 2)}\n`);
  };
  for (const node of nodes) {
    await startProcess('agent', node);
    if (opts.ztunnel) await startProcess('ztunnel', node);
  }
  return {
    prefix,
    stateDir,
    cluster,
    core,
    get controller() {
      return held.controller!;
    },
    root,
    kubectl: (...args: string[]) => execFileP('kubectl', args, { env }),
    tokenFor,
    bpffs,
    enrolledUids: (node: string) => {
      const uids = openPinnedMap(`${bpffs(node)}/maps/mesh_pod_uids`);
      const pods = openPinnedMap(`${bpffs(node)}/maps/mesh_pods`);
      try {
        return uids
          .keys()
          .filter((k) => pods.get(k))
          .map((k) => layout.decodeUid(uids.get(k)!))
          .sort();
      } finally {
        uids.close();
        pods.close();
      }
    },
    async restartController() {
      const old = held.controller!;
      await old.stop();
      held.controller = await Controller.start(cluster.kc, { host: '127.0.0.1', xdsPort: old.xdsPort, caPort: old.ca.port, relayPort: old.relayPort });
      writeEndpoints();
    },
    processes,
    logs,
    startProcess,
    ztunnelPort(node: string, which: 'admin' | 'metrics' | 'readiness') {
      const line = (logs.get(`ztunnel-${node}`) ?? '').split('\n').find((l) => l.includes('admin, metrics and readiness listening'));
      const port = line ? (JSON.parse(line) as Record<string, number>)[which] : undefined;
      if (!port) throw new Error(`ztunnel on ${node} has not reported its ${which} port`);
      return port;
    },
  } as Mesh;
}

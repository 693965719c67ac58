// Propagation through the whole control plane: from a write to the Kubernetes API (a pod label
// that takes the pod out of the mesh, then back) to the changed Workload applied at every
// subscribed client of the config stream, with 1,000 and 10,000 pods in the model. The local API
// server runs in its own process (src/local/apiserver/main.ts), so the memory reported for the
// controller is the controller's: measured after a full GC once its model is built and published,
// before any client connects, and again with the clients (real gRPC over mTLS with CA-issued
// certificates, in this process) — and, last, the initial sync of one more node joining beside
// them. No namespaces needed.
//   node --expose-gc bench/propagation.ts [--pods 1000,10000] [--clients 2,10]
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as k8s from '@kubernetes/client-node';
import { Controller } from '../src/controller/controller.ts';
import { formatSpiffeId, nodeSubject, spiffeId } from '../src/identity/index.ts';
import { createCsr, generateKeyPair } from '../src/tls/index.ts';
import { parseCsr } from '../src/tls/issuer.ts';
import { ConfigClient, WORKLOAD, type Workload } from '../src/xds/index.ts';

const { values } = parseArgs({
  options: { pods: { type: 'string', default: '1000,10000' }, clients: { type: 'string', default: '2,10' }, changes: { type: 'string', default: '20' }, writer: { type: 'string' } },
});
const POD_COUNTS = values.pods.split(',').map(Number);
const CLIENT_COUNTS = values.clients.split(',').map(Number);
const CHANGES = Number(values.changes);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}

async function pool<T>(n: number, limit: number, fn: (i: number) => Promise<T>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < n) await fn(next++);
  }));
}

interface Memory {
  rss: number;
  heapUsed: number;
}
const mb = (n: number): string => `${(n / 2 ** 20).toFixed(0)} MB`;
const gc = (globalThis as { gc?: () => void }).gc;

/** The API server in its own process; its memory (after a full GC) on request. */
async function startApi(dir: string): Promise<{ child: ChildProcess; kc: k8s.KubeConfig; memory: () => Promise<Memory> }> {
  const child = fork('src/local/apiserver/main.ts', ['--data-dir', dir], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = await new Promise<{ url: string; caCertPem: string; adminToken: string }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`API server exited (${code})`)));
    child.on('message', (m: { type: string; url: string; caCertPem: string; adminToken: string }) => {
      if (m.type === 'ready') resolve(m);
    });
  });
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'local', server: ready.url, caData: Buffer.from(ready.caCertPem).toString('base64') }],
    users: [{ name: 'admin', token: ready.adminToken }],
    contexts: [{ name: 'local', cluster: 'local', user: 'admin' }],
    currentContext: 'local',
  });
  const memory = () =>
    new Promise<Memory>((resolve) => {
      const on = (m: { type: string } & Memory) => {
        if (m.type !== 'memory') return;
        child.off('message', on);
        resolve(m);
      };
      child.on('message', on);
      child.send({ type: 'memory' });
    });
  return { child, kc, memory };
}

function ownMemory(): Memory {
  gc?.();
  return process.memoryUsage();
}

async function run(pods: number): Promise<void> {
  const dir = mkdtempSync('/tmp/mesh-bench-prop-');
  const api = await startApi(dir);
  const kc = api.kc;
  const core = kc.makeApiClient(k8s.CoreV1Api);
  let controller: Controller | undefined;
  const clients: ConfigClient<{ [WORKLOAD]: Workload }>[] = [];
  try {
    await core.createNamespace({ body: { metadata: { name: 'mesh-system' } } });
    await core.createNamespace({ body: { metadata: { name: 'bench', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
    // The controller admits a node's credential only for a Node that exists.
    for (let i = 0; i <= Math.max(10, ...CLIENT_COUNTS); i++) await core.createNode({ body: { metadata: { name: `node${i}` } } });
    const t0 = Date.now();
    // Written by a child process, so that this one holds only the controller (and later the clients).
    writeFileSync(`${dir}/kubeconfig`, kc.exportConfig());
    const writer = fork(fileURLToPath(import.meta.url), ['--writer', `${dir}/kubeconfig`, '--pods', String(pods)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const code = await new Promise<number | null>((r) => writer.once('exit', r));
    if (code !== 0) throw new Error(`the pod writer failed (exit ${code})`);
    console.log(`\n${pods} pods written to the API in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const before = ownMemory();
    const t1 = performance.now();
    controller = await Controller.start(kc, { host: '127.0.0.1', xdsPort: 0, caPort: 0, dashboardPort: 0 });
    await controller.settle();
    const startMs = performance.now() - t1;
    const alone = ownMemory();
    const apiMem = await api.memory();
    console.log(
      `controller start to model published ${startMs.toFixed(0)} ms; after GC — controller: RSS ${mb(alone.rss)} (${mb(before.rss)} before it started), heap ${mb(alone.heapUsed)}; API server (own process): RSS ${mb(apiMem.rss)}, heap ${mb(apiMem.heapUsed)}`,
    );
    const roots = controller.ca.authority.trustBundle.join('\n');
    const keys = await generateKeyPair();
    const id = spiffeId('cluster.local', 'mesh-system', 'mesh-node');
    // Each client is a node: the controller admits a node's own credential only (bound to it).
    const creds = async (node: string) => {
      const issued = await controller!.ca.authority.signWorkload(await parseCsr(await createCsr(keys, formatSpiffeId(id))), id, 3_600_000, Date.now(), nodeSubject(node));
      return grpc.credentials.createSsl(Buffer.from(roots), Buffer.from(keys.privateKeyPem), Buffer.from(issued.certChain.join('\n')));
    };
    const connect = async () => {
      const node = `node${clients.length}`;
      const c = new ConfigClient<{ [WORKLOAD]: Workload }>({
        address: `127.0.0.1:${controller!.xdsPort}`,
        credentials: await creds(node),
        node: { id: `agent~${node}`, name: node, cluster: '' },
        types: [WORKLOAD],
        channelOptions: { 'grpc.ssl_target_name_override': 'mesh-controller.mesh-system.svc' },
      });
      c.start();
      clients.push(c);
      return c;
    };
    for (const n of CLIENT_COUNTS) {
      while (clients.length < n) await connect();
      const syncStart = Date.now();
      await Promise.all(clients.map((c) => c.ready(120_000)));
      await Promise.all(clients.map(async (c) => {
        while ([...c.entries(WORKLOAD)].length < pods) await new Promise((r) => setTimeout(r, 20));
      }));
      const sync = Date.now() - syncStart;
      const lat: number[] = [];
      // The controller's part: from the write to the changed Workload in its config store.
      const published: number[] = [];
      for (let k = 0; k < CHANGES; k++) {
        // Every change is a real one: a pod opts out, then back in. (Until 2026-12 the odd rounds
        // removed a label that another pod had never had, and measured only the API's reply.)
        const name = `p${Math.floor(k / 2)}`;
        const uid = `Kubernetes//v1/Pod/bench/${name}`;
        const want = k % 2 === 0 ? 'NONE' : 'HBONE';
        const start = performance.now();
        const inStore = new Promise<void>((resolve) => {
          const off = controller!.xds.store.subscribe((changes) => {
            if (!changes.get(WORKLOAD)?.has(uid)) return;
            published.push(performance.now() - start);
            off();
            resolve();
          });
        });
        await core.patchNamespacedPod(
          { name, namespace: 'bench', body: { metadata: { labels: { 'mesh.io/dataplane-mode': want === 'NONE' ? 'none' : null } } } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        );
        await Promise.all(clients.map(async (c) => {
          while (c.get(WORKLOAD, uid)?.tunnelProtocol !== want) await new Promise((r) => setTimeout(r, 1));
          lat.push(performance.now() - start);
        }));
        await inStore;
      }
      console.log(
        `pods ${pods}, clients ${n}: initial sync of every client ${sync} ms; API write → applied at each client (${lat.length} samples): p50 ${pct(lat, 50).toFixed(0)} ms, p99 ${pct(lat, 99).toFixed(0)} ms, max ${Math.max(...lat).toFixed(0)} ms; of which API write → in the controller's store: p50 ${pct(published, 50).toFixed(0)} ms, max ${Math.max(...published).toFixed(0)} ms`,
      );
    }
    // What a node added to a running cluster waits for (issue 16: < 1 s at 10k pods): one more
    // client, while the others stay connected — its whole initial sync, from dialling (TLS
    // included) to holding every workload.
    const joinStart = Date.now();
    const joined = await connect();
    await joined.ready(120_000);
    while ([...joined.entries(WORKLOAD)].length < pods) await new Promise((r) => setTimeout(r, 5));
    console.log(`pods ${pods}: a new node joining beside ${clients.length - 1} connected clients: initial sync ${Date.now() - joinStart} ms (connect, TLS, every workload received and decoded)`);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await controller?.stop();
    api.child.kill('SIGTERM');
    await new Promise((r) => api.child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The child that writes the pods (--writer KUBECONFIG --pods N). */
async function writePods(kubeconfig: string, pods: number): Promise<void> {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  await pool(pods, 64, async (i) => {
    const name = `p${i}`;
    await core.createNamespacedPod({ namespace: 'bench', body: { metadata: { name, labels: { app: `a${i % 50}` } }, spec: { nodeName: `node${i % 10}`, containers: [{ name: 'c', image: 'x' }] } } });
    const ip = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    await core.patchNamespacedPodStatus(
      { name, namespace: 'bench', body: { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  });
}

if (values.writer) await writePods(values.writer, Number(values.pods));
else for (const n of POD_COUNTS) await run(n);

// Propagation through the whole control plane: from a write to the Kubernetes API (a pod label
// that takes the pod out of the mesh, then back) to the changed Workload applied at every
// subscribed client of the config stream, with 1,000 and 10,000 pods in the model. The local API
// server, the controller and the clients (real gRPC over mTLS with CA-issued certificates) run in
// this process; no namespaces needed.   node bench/propagation.ts [--pods 1000,10000] [--clients 2,10]
import { mkdtempSync, rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as k8s from '@kubernetes/client-node';
import { Controller } from '../src/controller/controller.ts';
import { formatSpiffeId, nodeSubject, spiffeId } from '../src/identity/index.ts';
import { startApiServer } from '../src/local/apiserver/index.ts';
import { createCsr, generateKeyPair, parseCsr } from '../src/tls/index.ts';
import { ConfigClient, WORKLOAD, type Workload } from '../src/xds/index.ts';

const { values } = parseArgs({ options: { pods: { type: 'string', default: '1000,10000' }, clients: { type: 'string', default: '2,10' }, changes: { type: 'string', default: '20' } } });
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

async function run(pods: number): Promise<void> {
  const dir = mkdtempSync('/tmp/mesh-bench-prop-');
  const api = await startApiServer({ dataDir: dir, port: 0 });
  await api.writeKubeconfig(`${dir}/kubeconfig`);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(`${dir}/kubeconfig`);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  let controller: Controller | undefined;
  const clients: ConfigClient<{ [WORKLOAD]: Workload }>[] = [];
  try {
    await core.createNamespace({ body: { metadata: { name: 'mesh-system' } } });
    await core.createNamespace({ body: { metadata: { name: 'bench', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
    const t0 = Date.now();
    await pool(pods, 64, async (i) => {
      const name = `p${i}`;
      await core.createNamespacedPod({ namespace: 'bench', body: { metadata: { name, labels: { app: `a${i % 50}` } }, spec: { nodeName: `node${i % 10}`, containers: [{ name: 'c', image: 'x' }] } } });
      const ip = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
      await core.patchNamespacedPodStatus(
        { name, namespace: 'bench', body: { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
    });
    console.log(`\n${pods} pods written to the API in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    controller = await Controller.start(kc, { host: '127.0.0.1', xdsPort: 0, caPort: 0, dashboardPort: 0 });
    const roots = controller.ca.authority.trustBundle.join('\n');
    const keys = await generateKeyPair();
    const id = spiffeId('cluster.local', 'mesh-system', 'mesh-node');
    // Each client is a node: the controller admits a node's own credential only (bound to it).
    const creds = async (node: string) => {
      const issued = await controller!.ca.authority.signWorkload(await parseCsr(await createCsr(keys, formatSpiffeId(id))), id, 3_600_000, Date.now(), nodeSubject(node));
      return grpc.credentials.createSsl(Buffer.from(roots), Buffer.from(keys.privateKeyPem), Buffer.from(issued.certChain.join('\n')));
    };
    for (const n of CLIENT_COUNTS) {
      while (clients.length < n) {
        const node = `node${clients.length}`;
        const c = new ConfigClient<{ [WORKLOAD]: Workload }>({
          address: `127.0.0.1:${controller.xdsPort}`,
          credentials: await creds(node),
          node: { id: `agent~${node}`, name: node, cluster: '' },
          types: [WORKLOAD],
          channelOptions: { 'grpc.ssl_target_name_override': 'mesh-controller.mesh-system.svc' },
        });
        c.start();
        clients.push(c);
      }
      const syncStart = Date.now();
      await Promise.all(clients.map((c) => c.ready(120_000)));
      await Promise.all(clients.map(async (c) => {
        while ([...c.entries(WORKLOAD)].length < pods) await new Promise((r) => setTimeout(r, 20));
      }));
      const sync = Date.now() - syncStart;
      const lat: number[] = [];
      for (let k = 0; k < CHANGES; k++) {
        const name = `p${k}`;
        const uid = `Kubernetes//v1/Pod/bench/${name}`;
        const want = k % 2 === 0 ? 'NONE' : 'HBONE'; // opt out, then back in
        const start = performance.now();
        await core.patchNamespacedPod(
          { name, namespace: 'bench', body: { metadata: { labels: { 'mesh.io/dataplane-mode': want === 'NONE' ? 'none' : null } } } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        );
        await Promise.all(clients.map(async (c) => {
          while (c.get(WORKLOAD, uid)?.tunnelProtocol !== want) await new Promise((r) => setTimeout(r, 1));
          lat.push(performance.now() - start);
        }));
        // Undo for the next round's pod.
        if (want === 'NONE') {
          await core.patchNamespacedPod({ name, namespace: 'bench', body: { metadata: { labels: { 'mesh.io/dataplane-mode': null } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
        }
      }
      console.log(
        `pods ${pods}, clients ${n}: initial sync ${sync} ms; API write → applied at each client (${lat.length} samples): p50 ${pct(lat, 50).toFixed(0)} ms, p99 ${pct(lat, 99).toFixed(0)} ms, max ${Math.max(...lat).toFixed(0)} ms; controller RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB (all in one process)`,
      );
    }
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await controller?.stop();
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const n of POD_COUNTS) await run(n);

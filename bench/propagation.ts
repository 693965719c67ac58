// Propagation through the whole control plane: from a write to the Kubernetes API (a pod label
// that takes the pod out of the mesh, then back) to the changed Workload applied at every
// subscribed client of the config stream, with 1,000 and 10,000 pods in the model. The local API
// server runs in its own process (src/local/apiserver/main.ts), so the memory reported for the
// controller is the controller's: measured after a full GC once its model is built and published,
// before any client connects, and again with the clients (real gRPC over mTLS with CA-issued
// certificates, in this process) — and, last, the initial sync of one more node joining beside
// them. No namespaces needed.
//
// Each change is split into three figures, so that a slow one says where its time went: the API
// write's round trip (request to reply, as the bench sees it), write → the Workload in the
// controller's config store, and store → applied at the last client. Beside them, for the slowest
// changes: the API server's log write + fdatasync that held the write, and the GC pauses of the API
// server and of this process (controller and clients) within the change.
//
// The API server keeps its data (write-ahead log, fdatasync before each reply) in a directory under
// /tmp, on this machine's disk. `--storage disk,tmpfs` runs everything twice, the second time with
// that directory on /dev/shm (tmpfs: fdatasync returns at once), labelled as such: the mesh's own
// propagation apart from this disk's stalls — not what a real cluster's etcd would give.
//   node --expose-gc bench/propagation.ts [--pods 1000,10000] [--clients 2,10] [--changes 100]
//     [--storage disk,tmpfs] [--samples FILE.json]
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { PerformanceObserver } from 'node:perf_hooks';
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
  options: {
    pods: { type: 'string', default: '1000,10000' },
    clients: { type: 'string', default: '2,10' },
    changes: { type: 'string', default: '100' },
    storage: { type: 'string', default: 'disk,tmpfs' },
    samples: { type: 'string' },
    writer: { type: 'string' },
  },
});
const POD_COUNTS = values.pods.split(',').map(Number);
const CLIENT_COUNTS = values.clients.split(',').map(Number);
const CHANGES = Number(values.changes);
const STORAGE = { disk: '/tmp', tmpfs: '/dev/shm' } as const;
type Storage = keyof typeof STORAGE;
const STORAGES = values.storage.split(',').map((x) => {
  if (!(x in STORAGE)) throw new Error(`--storage takes disk and/or tmpfs, not ${x}`);
  return x as Storage;
});
const LABEL: Record<Storage, string> = {
  disk: 'API data on disk (/tmp, fdatasync per write)',
  tmpfs: "API data on tmpfs (/dev/shm: this machine's disk out of the picture; not a real cluster's figure)",
};

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
async function startApi(dir: string): Promise<{ child: ChildProcess; kc: k8s.KubeConfig; memory: () => Promise<Memory>; trace: () => Promise<ApiTrace>; patch: Patcher }> {
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
  const trace = () =>
    new Promise<ApiTrace>((resolve) => {
      const on = (m: { type: string } & ApiTrace) => {
        if (m.type !== 'trace') return;
        child.off('message', on);
        resolve(m);
      };
      child.on('message', on);
      child.send({ type: 'trace' });
    });
  return { child, kc, memory, trace, patch: patcher(ready.url, ready.caCertPem, ready.adminToken) };
}

type Patcher = (path: string, body: unknown) => Promise<void>;

/**
 * A merge patch over one kept-alive TLS connection: the measured writes. client-node's agent does
 * not keep connections alive, so each of its requests paid a TLS handshake (about 10 ms of the
 * write's round trip here, and CPU in this process, which is the controller's and the clients'):
 * the writer's cost, not the control plane's.
 */
function patcher(url: string, ca: string, token: string): Patcher {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
  return (path, body) =>
    new Promise<void>((resolve, reject) => {
      const req = https.request(`${url}${path}`, { method: 'PATCH', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/merge-patch+json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => ((res.statusCode ?? 0) < 300 ? resolve() : reject(new Error(`PATCH ${path}: ${res.statusCode} ${Buffer.concat(chunks).toString()}`))));
      });
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
}

/** What happened in a span of time (ms since the epoch). */
interface Span {
  at: number;
  ms: number;
}
/** The API server's log writes (write + fdatasync of one batch) and GC pauses, from its process. */
interface ApiTrace {
  syncs: (Span & { records: number })[];
  gcs: Span[];
}

/** This process's GC pauses (the controller's and the clients'), recorded while `on`. */
const ownGcs: Span[] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) ownGcs.push({ at: performance.timeOrigin + e.startTime, ms: e.duration });
}).observe({ entryTypes: ['gc'] });

/** Of the spans, the time that falls within [from, to]: summed, and the longest one's. */
function within(spans: Span[], from: number, to: number): { sum: number; max: number } {
  let sum = 0;
  let max = 0;
  for (const s of spans) {
    const ms = Math.min(to, s.at + s.ms) - Math.max(from, s.at);
    if (ms <= 0) continue;
    sum += ms;
    max = Math.max(max, ms);
  }
  return { sum, max };
}

/** One change: times in ms from the write's start (at, ms since the epoch). */
interface Sample {
  at: number;
  reply: number;
  store: number;
  /** When each client applied it. */
  clients: number[];
}

function ownMemory(): Memory {
  gc?.();
  return process.memoryUsage();
}

const allSamples: { storage: Storage; pods: number; clients: number; samples: Sample[]; api: ApiTrace; gcs: Span[] }[] = [];
const f0 = (n: number): string => n.toFixed(0);
const stats = (xs: number[]): string => `p50 ${f0(pct(xs, 50))}, p99 ${f0(pct(xs, 99))}, max ${f0(Math.max(...xs))} ms`;

async function run(storage: Storage, pods: number): Promise<void> {
  const dir = mkdtempSync(`${STORAGE[storage]}/mesh-bench-prop-`);
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
    console.log(`\n[${LABEL[storage]}]\n${pods} pods written to the API in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
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
      const samples: Sample[] = [];
      await api.trace();
      ownGcs.length = 0;
      for (let k = 0; k < CHANGES; k++) {
        // Every change is a real one: a pod opts out, then back in. (Until 2026-12 the odd rounds
        // removed a label that another pod had never had, and measured only the API's reply.)
        const name = `p${Math.floor(k / 2)}`;
        const uid = `Kubernetes//v1/Pod/bench/${name}`;
        const want = k % 2 === 0 ? 'NONE' : 'HBONE';
        const at = performance.timeOrigin + performance.now();
        const start = performance.now();
        // The controller's part: from the write to the changed Workload in its config store.
        const inStore = new Promise<number>((resolve) => {
          const off = controller!.xds.store.subscribe((changes) => {
            if (!changes.get(WORKLOAD)?.has(uid)) return;
            off();
            resolve(performance.now() - start);
          });
        });
        // Each client: the moment the response that carries the change is applied.
        const applied = clients.slice(0, n).map(
          (c) =>
            new Promise<number>((resolve) => {
              const on = () => {
                if (c.get(WORKLOAD, uid)?.tunnelProtocol !== want) return;
                c.off('change', on);
                resolve(performance.now() - start);
              };
              c.on('change', on);
            }),
        );
        await api.patch(`/api/v1/namespaces/bench/pods/${name}`, { metadata: { labels: { 'mesh.io/dataplane-mode': want === 'NONE' ? 'none' : null } } });
        const reply = performance.now() - start;
        samples.push({ at, reply, store: await inStore, clients: await Promise.all(applied) });
      }
      const apiTrace = await api.trace();
      const gcs = ownGcs.splice(0);
      allSamples.push({ storage, pods, clients: n, samples, api: apiTrace, gcs });
      report(samples, apiTrace, gcs, `pods ${pods}, clients ${n}`, sync);
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

/** The figures of one run: each part's spread, then where the slowest changes spent their time. */
function report(samples: Sample[], apiTrace: ApiTrace, gcs: Span[], what: string, sync: number): void {
  const each = samples.flatMap((s) => s.clients);
  const last = samples.map((s) => Math.max(...s.clients));
  console.log(
    `${what}: initial sync of every client ${sync} ms; API write → applied at each client (${each.length} samples): ${stats(each)}; at every client (the last one, ${samples.length} changes): ${stats(last)}`,
  );
  console.log(`  API write round trip: ${stats(samples.map((s) => s.reply))}`);
  console.log(`  write → in the controller's store: ${stats(samples.map((s) => s.store))}`);
  console.log(`  controller's store → applied at the last client: ${stats(samples.map((s) => Math.max(...s.clients) - s.store))}`);
  const slowSyncs = apiTrace.syncs.filter((x) => x.ms >= 50);
  console.log(
    `  API server log: ${apiTrace.syncs.length} batch writes + fdatasync, ${stats(apiTrace.syncs.map((x) => x.ms))}, ${slowSyncs.length} of them ≥ 50 ms; GC pauses: API server ${apiTrace.gcs.length} (${f0(apiTrace.gcs.reduce((a, g) => a + g.ms, 0))} ms), this process ${gcs.length} (${f0(gcs.reduce((a, g) => a + g.ms, 0))} ms, longest ${f0(Math.max(0, ...gcs.map((g) => g.ms)))} ms)`,
  );
  const slowest = samples
    .map((s, i) => ({ s, i, last: Math.max(...s.clients) }))
    .sort((a, b) => b.last - a.last)
    .slice(0, Math.max(3, Math.ceil(samples.length / 50)));
  for (const { s, i, last: l } of slowest) {
    const end = s.at + l;
    const disk = within(apiTrace.syncs, s.at, s.at + s.reply);
    const apiGc = within(apiTrace.gcs, s.at, s.at + s.reply);
    const own = within(gcs, s.at, end);
    console.log(
      `  slow change #${i}: ${f0(l)} ms = write → store ${f0(s.store)} (API reply at ${f0(s.reply)}; its log write + fdatasync ${f0(disk.max)} ms, its GC ${f0(apiGc.sum)} ms) + store → last client ${f0(l - s.store)}; GC here ${f0(own.sum)} ms (longest ${f0(own.max)})`,
    );
  }
}

if (values.writer) await writePods(values.writer, Number(values.pods));
else {
  for (const storage of STORAGES) for (const n of POD_COUNTS) await run(storage, n);
  if (values.samples) writeFileSync(values.samples, JSON.stringify(allSamples));
}

// Propagation through the whole control plane: from a write to the Kubernetes API (a pod label
// that takes the pod out of the mesh, then back) to the changed Workload applied at every
// subscribed client of the config stream, with 1,000 and 10,000 pods in the model. The local API
// server runs in its own process (src/local/apiserver/main.ts), so the memory reported for the
// controller is the controller's: measured after a full GC once its model is built and published,
// before any client connects. The clients are real gRPC over mTLS with CA-issued certificates,
// each in a process of its own as each node's agent is (until 2026-12-07 all of them ran in this
// process, beside the controller, so one GC pause there stalled the controller and every client at
// once; `--in-process` still runs them that way). Last, the initial sync of one more node joining
// beside them. No namespaces needed.
//
// Each change is split into three figures, so that a slow one says where its time went: the API
// write's round trip (request to reply, as the bench sees it), write → the Workload in the
// controller's config store, and store → applied at the last client. Beside them, for the slowest
// changes: the API server's log write + fdatasync that held the write, and the GC pauses of the API
// server, the controller and the clients within the change. The measured writes go over one
// kept-alive connection, opened before the first.
//
// The API server keeps its data (write-ahead log, fdatasync before each reply) in a directory under
// /tmp, on this machine's disk. `--storage disk,tmpfs` runs everything twice, the second time with
// that directory on /dev/shm (tmpfs: fdatasync returns at once), labelled as such: the mesh's own
// propagation apart from this disk's stalls — not what a real cluster's etcd would give.
//   node --expose-gc bench/propagation.ts [--pods 1000,10000] [--clients 2,10] [--changes 100]
//     [--storage disk,tmpfs] [--samples FILE.json] [--in-process]
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { loadavg } from 'node:os';
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
    'in-process': { type: 'boolean', default: false },
    writer: { type: 'string' },
    client: { type: 'boolean', default: false },
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
async function startApi(dir: string): Promise<{ child: ChildProcess; kc: k8s.KubeConfig; memory: () => Promise<Memory>; trace: () => Promise<ApiTrace>; request: Patcher }> {
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
  return { child, kc, memory, trace, request: patcher(ready.url, ready.caCertPem, ready.adminToken) };
}

type Patcher = (method: 'GET' | 'PATCH' | 'POST', path: string, body?: unknown) => Promise<void>;

/**
 * A merge patch over one kept-alive TLS connection: the measured writes. client-node's agent does
 * not keep connections alive, so each of its requests paid a TLS handshake (about 10 ms of the
 * write's round trip here, and CPU in this process, which is the controller's and the clients'):
 * the writer's cost, not the control plane's.
 */
function patcher(url: string, ca: string, token: string, sockets = 1): Patcher {
  const agent = new https.Agent({ keepAlive: true, maxSockets: sockets, ca });
  return (method, path, body) =>
    new Promise<void>((resolve, reject) => {
      const req = https.request(`${url}${path}`, { method, agent, headers: { authorization: `Bearer ${token}`, 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => ((res.statusCode ?? 0) < 300 ? resolve() : reject(new Error(`${method} ${path}: ${res.statusCode} ${Buffer.concat(chunks).toString()}`))));
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
}

/** What happened in a span of time (ms since the epoch). */
interface Span {
  at: number;
  ms: number;
  /** A GC pause's kind (perf_hooks: 1 minor, 2 major, 4 incremental, 8 weak callbacks). */
  kind?: number;
}
/** The API server's log writes (write + fdatasync of one batch) and GC pauses, from its process. */
interface ApiTrace {
  syncs: (Span & { records: number })[];
  gcs: Span[];
}

/** This process's GC pauses (the controller's and the clients'), recorded while `on`. */
const ownGcs: Span[] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) ownGcs.push({ at: performance.timeOrigin + e.startTime, ms: e.duration, kind: (e as { detail?: { kind?: number } }).detail?.kind });
}).observe({ entryTypes: ['gc'] });

/** Of the spans, the time that falls within [from, to]: summed, and the longest one's. */
function within(spans: Span[], from: number, to: number): { sum: number; max: number; kind: string } {
  let sum = 0;
  let max = 0;
  let kind = '';
  for (const s of spans) {
    const ms = Math.min(to, s.at + s.ms) - Math.max(from, s.at);
    if (ms <= 0) continue;
    sum += ms;
    if (ms > max) [max, kind] = [ms, GC_KIND[s.kind ?? 0] ?? ''];
  }
  return { sum, max, kind };
}
const GC_KIND: Record<number, string> = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weak callbacks' };
/** "N (T ms; major 1, longest 50 ms; minor 12, longest 3 ms)" */
function gcSummary(gcs: Span[]): string {
  const kinds = Object.entries(GC_KIND).flatMap(([k, name]) => {
    const of = gcs.filter((g) => g.kind === Number(k));
    return of.length === 0 ? [] : [`${name} ${of.length}, longest ${f0(Math.max(...of.map((g) => g.ms)))} ms`];
  });
  return `${gcs.length} (${f0(gcs.reduce((a, g) => a + g.ms, 0))} ms${kinds.length > 0 ? `; ${kinds.join('; ')}` : ''})`;
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

const allSamples: { storage: Storage; pods: number; clients: number; samples: Sample[]; api: ApiTrace; gcs: Span[]; clientGcs: Span[] }[] = [];
const f0 = (n: number): string => n.toFixed(0);
const stats = (xs: number[]): string => `p50 ${f0(pct(xs, 50))}, p99 ${f0(pct(xs, 99))}, max ${f0(Math.max(...xs))} ms`;

async function run(storage: Storage, pods: number): Promise<void> {
  const dir = mkdtempSync(`${STORAGE[storage]}/mesh-bench-prop-`);
  const api = await startApi(dir);
  const kc = api.kc;
  const core = kc.makeApiClient(k8s.CoreV1Api);
  let controller: Controller | undefined;
  const clients: BenchClient[] = [];
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
    controller = await Controller.start(kc, { host: '127.0.0.1', xdsPort: 0, caPort: 0, dashboardPort: 0, relayPort: 0 });
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
    const connect = async (): Promise<BenchClient> => {
      const node = `node${clients.length}`;
      const issued = await controller!.ca.authority.signWorkload(await parseCsr(await createCsr(keys, formatSpiffeId(id))), id, 3_600_000, Date.now(), nodeSubject(node));
      const spec: ClientSpec = { address: `127.0.0.1:${controller!.xdsPort}`, node, roots, key: keys.privateKeyPem, cert: issued.certChain.join('\n'), pods };
      const c = values['in-process'] ? inProcessClient(spec) : await childClient(spec);
      clients.push(c);
      return c;
    };
    for (const n of CLIENT_COUNTS) {
      const fresh: BenchClient[] = [];
      while (clients.length < n) fresh.push(await connect());
      const syncStart = Date.now();
      await Promise.all(clients.map((c) => c.start()));
      await Promise.all(clients.map((c) => c.synced()));
      const sync = Date.now() - syncStart;
      const samples: Sample[] = [];
      // The writer's connection is opened (TLS) before the first measured write, not by it.
      await api.request('GET', '/api/v1/namespaces/bench/pods/p0');
      await api.trace();
      ownGcs.length = 0;
      await Promise.all(clients.map((c) => c.gcs()));
      for (let k = 0; k < CHANGES; k++) {
        // Every change is a real one: a pod opts out, then back in. (Until 2026-12 the odd rounds
        // removed a label that another pod had never had, and measured only the API's reply.)
        const name = `p${Math.floor(k / 2)}`;
        const uid = `Kubernetes//v1/Pod/bench/${name}`;
        const want = k % 2 === 0 ? 'NONE' : 'HBONE';
        // The controller's part: from the write to the changed Workload in its config store.
        let start = 0;
        const inStore = new Promise<number>((resolve) => {
          const off = controller!.xds.store.subscribe((changes) => {
            if (!changes.get(WORKLOAD)?.has(uid)) return;
            off();
            resolve(performance.now() - start);
          });
        });
        // Each client: the moment the response that carries the change is applied (ms since the epoch).
        const applied = (await Promise.all(clients.map((c) => c.expect(uid, want)))).map((e) => e.applied);
        const at = performance.timeOrigin + performance.now();
        start = performance.now();
        await api.request('PATCH', `/api/v1/namespaces/bench/pods/${name}`, { metadata: { labels: { 'mesh.io/dataplane-mode': want === 'NONE' ? 'none' : null } } });
        const reply = performance.now() - start;
        samples.push({ at, reply, store: await inStore, clients: (await Promise.all(applied)).map((t) => t - at) });
      }
      const apiTrace = await api.trace();
      const gcs = ownGcs.splice(0);
      const clientGcs = (await Promise.all(clients.map((c) => c.gcs()))).flat();
      allSamples.push({ storage, pods, clients: n, samples, api: apiTrace, gcs, clientGcs });
      report(samples, apiTrace, gcs, clientGcs, `pods ${pods}, clients ${n}`, sync);
    }
    // What a node added to a running cluster waits for (issue 16: < 1 s at 10k pods): one more
    // client, while the others stay connected — its whole initial sync, from dialling (TLS
    // included) to holding every workload.
    const joined = await connect();
    const joinStart = Date.now();
    await joined.start();
    await joined.synced();
    console.log(`pods ${pods}: a new node joining beside ${clients.length - 1} connected clients: initial sync ${Date.now() - joinStart} ms (connect, TLS, every workload received and decoded)`);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await controller?.stop();
    api.child.kill('SIGTERM');
    await new Promise((r) => api.child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What a config-stream client needs: the controller's address, its node, its credential (PEM). */
interface ClientSpec {
  address: string;
  node: string;
  roots: string;
  key: string;
  cert: string;
  /** The workloads it holds once synced. */
  pods: number;
}

/** A node's config-stream client as the bench drives it, wherever it runs. */
interface BenchClient {
  /** Dials; resolves at once. */
  start(): Promise<void>;
  /** Resolves when it holds every workload. */
  synced(): Promise<void>;
  /** Resolves once it watches for the Workload `uid` with `want`: to the time (ms since the epoch) it applies it. */
  expect(uid: string, want: string): Promise<{ applied: Promise<number> }>;
  /** Its GC pauses since the last call (none in this process: those are this process's). */
  gcs(): Promise<Span[]>;
  close(): Promise<void>;
}

function configClient(spec: ClientSpec): ConfigClient<{ [WORKLOAD]: Workload }> {
  return new ConfigClient<{ [WORKLOAD]: Workload }>({
    address: spec.address,
    credentials: grpc.credentials.createSsl(Buffer.from(spec.roots), Buffer.from(spec.key), Buffer.from(spec.cert)),
    node: { id: `agent~${spec.node}`, name: spec.node, cluster: '' },
    types: [WORKLOAD],
    channelOptions: { 'grpc.ssl_target_name_override': 'mesh-controller.mesh-system.svc' },
  });
}

async function holdsAll(c: ConfigClient<{ [WORKLOAD]: Workload }>, pods: number): Promise<void> {
  await c.ready(120_000);
  while ([...c.entries(WORKLOAD)].length < pods) await new Promise((r) => setTimeout(r, 5));
}

function applied(c: ConfigClient<{ [WORKLOAD]: Workload }>, uid: string, want: string): Promise<number> {
  return new Promise<number>((resolve) => {
    const on = () => {
      if (c.get(WORKLOAD, uid)?.tunnelProtocol !== want) return;
      c.off('change', on);
      resolve(performance.timeOrigin + performance.now());
    };
    c.on('change', on);
  });
}

/** In this process, beside the controller (--in-process: how the bench ran until 2026-12-07). */
function inProcessClient(spec: ClientSpec): BenchClient {
  const c = configClient(spec);
  return {
    start: async () => void c.start(),
    synced: () => holdsAll(c, spec.pods),
    expect: async (uid, want) => ({ applied: applied(c, uid, want) }),
    gcs: async () => [],
    close: () => c.close(),
  };
}

/** In a process of its own, as each node's agent is: its heap, event loop and GC are not the controller's. */
async function childClient(spec: ClientSpec): Promise<BenchClient> {
  const child = fork(fileURLToPath(import.meta.url), ['--client'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map<number, (m: ChildReply) => void>();
  let next = 0;
  child.on('message', (m: ChildReply) => {
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    w(m);
  });
  const ask = (m: Omit<ChildAsk, 'id'>): Promise<ChildReply> =>
    new Promise((resolve) => {
      const id = next++;
      waiting.set(id, resolve);
      child.send({ ...m, id });
    });
  await ask({ type: 'up' });
  let synced: Promise<ChildReply> | undefined;
  return {
    start: async () => void (synced = ask({ type: 'connect', spec })),
    synced: async () => void (await synced),
    expect: async (uid, want) => {
      // Two replies: the first once the child listens, the second when it applied the change.
      const id = next++;
      const done = new Promise<number>((resolve) => waiting.set(id, (m) => resolve(m.at!)));
      await ask({ type: 'expect', uid, want, done: id });
      return { applied: done };
    },
    gcs: async () => (await ask({ type: 'gcs' })).gcs!,
    close: async () => {
      await ask({ type: 'close' });
      await new Promise((r) => child.once('exit', r));
    },
  };
}

interface ChildAsk {
  id: number;
  type: 'up' | 'connect' | 'expect' | 'gcs' | 'close';
  spec?: ClientSpec;
  uid?: string;
  want?: string;
  /** The id to answer once the expected change is applied. */
  done?: number;
}
interface ChildReply {
  id: number;
  at?: number;
  gcs?: Span[];
}

/** The child holding one client (--client), driven over IPC by childClient(). */
function clientChild(): void {
  let c: ConfigClient<{ [WORKLOAD]: Workload }> | undefined;
  const gcs: Span[] = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push({ at: performance.timeOrigin + e.startTime, ms: e.duration, kind: (e as { detail?: { kind?: number } }).detail?.kind });
  }).observe({ entryTypes: ['gc'] });
  const reply = (m: ChildReply) => process.send!(m);
  process.on('message', (m: ChildAsk) => {
    switch (m.type) {
      case 'up':
        return reply({ id: m.id });
      case 'connect':
        c = configClient(m.spec!);
        c.start();
        return void holdsAll(c, m.spec!.pods).then(() => reply({ id: m.id }));
      case 'expect':
        void applied(c!, m.uid!, m.want!).then((at) => reply({ id: m.done!, at }));
        return reply({ id: m.id });
      case 'gcs':
        return reply({ id: m.id, gcs: gcs.splice(0) });
      case 'close':
        // Exits once the reply is out: gRPC's timers would keep the process alive a while.
        return void (c?.close() ?? Promise.resolve()).then(() => process.send!({ id: m.id } satisfies ChildReply, () => process.exit(0)));
    }
  });
}

/** The child that writes the pods (--writer KUBECONFIG --pods N), over 64 kept-alive connections. */
async function writePods(kubeconfig: string, pods: number): Promise<void> {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const cluster = kc.getCurrentCluster()!;
  const request = patcher(cluster.server, Buffer.from(cluster.caData!, 'base64').toString(), kc.getCurrentUser()!.token!, 64);
  await pool(pods, 64, async (i) => {
    const name = `p${i}`;
    await request('POST', '/api/v1/namespaces/bench/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: { app: `a${i % 50}` } }, spec: { nodeName: `node${i % 10}`, containers: [{ name: 'c', image: 'x' }] } });
    const ip = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    await request('PATCH', `/api/v1/namespaces/bench/pods/${name}/status`, { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] } });
  });
}

/** The figures of one run: each part's spread, then where the slowest changes spent their time. */
function report(samples: Sample[], apiTrace: ApiTrace, gcs: Span[], clientGcs: Span[], what: string, sync: number): void {
  const each = samples.flatMap((s) => s.clients);
  const last = samples.map((s) => Math.max(...s.clients));
  console.log(
    `${what}: initial sync of every client ${sync} ms; API write → applied at each client (${each.length} samples): ${stats(each)}; at every client (the last one, ${samples.length} changes): ${stats(last)}`,
  );
  // The machine's load (1-minute average) as the samples ended: other work on the same cores.
  console.log(`  API write round trip: ${stats(samples.map((s) => s.reply))} (load average ${loadavg()[0]!.toFixed(1)})`);
  console.log(`  write → in the controller's store: ${stats(samples.map((s) => s.store))}`);
  console.log(`  controller's store → applied at the last client: ${stats(samples.map((s) => Math.max(...s.clients) - s.store))}`);
  const slowSyncs = apiTrace.syncs.filter((x) => x.ms >= 50);
  console.log(
    `  API server log: ${apiTrace.syncs.length} batch writes + fdatasync, ${stats(apiTrace.syncs.map((x) => x.ms))}, ${slowSyncs.length} of them ≥ 50 ms; GC pauses: API server ${gcSummary(apiTrace.gcs)}, ${values['in-process'] ? 'this process (controller and clients)' : 'the controller'} ${gcSummary(gcs)}${values['in-process'] ? '' : `, the clients' processes ${gcSummary(clientGcs)}`}`,
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
    const theirs = within(clientGcs, s.at + s.store, end);
    console.log(
      `  slow change #${i}: ${f0(l)} ms = write → store ${f0(s.store)} (API reply at ${f0(s.reply)}; its log write + fdatasync ${f0(disk.max)} ms, its GC ${f0(apiGc.sum)} ms) + store → last client ${f0(l - s.store)}; GC ${values['in-process'] ? 'in this process' : 'in the controller'} ${f0(own.sum)} ms${own.max > 0 ? ` (longest ${f0(own.max)}, ${own.kind})` : ''}${values['in-process'] ? '' : `, in the clients ${f0(theirs.max)} ms longest`}`,
    );
  }
}

if (values.writer) await writePods(values.writer, Number(values.pods));
else if (values.client) clientChild();
else {
  for (const storage of STORAGES) for (const n of POD_COUNTS) await run(storage, n);
  if (values.samples) writeFileSync(values.samples, JSON.stringify(allSamples));
}

// The local API server's storage under load, through its real HTTPS API, with the server in its
// own process (src/local/apiserver/main.ts) so that its memory is its own:
//   - pod creates/s sustained over N pods (default 10,000) from `--concurrency` clients in flight,
//     as a controller's worker pool would send them;
//   - LIST of all N pods (full and limit=500) latency;
//   - watch fan-out: `--watchers` watches of the namespace, then `--updates` pod patches at
//     `--rate`/s; latency from sending the PATCH to each watcher reading the event (p50/p99);
//   - the server's CPU time per create, and its RSS and heap after a full GC, at N pods;
//   - a clean stop and a start on the same data dir, at N pods.
// --client client-node sends the creates through @kubernetes/client-node as the controller does
// (2.x opens a new TLS connection per request, which costs both sides a full handshake).
//   npm run bench:apiserver -- [--pods 10000] [--concurrency 16] [--watchers 10] [--client https|client-node] [--profile DIR]
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '16' },
    watchers: { type: 'string', default: '10' },
    updates: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '200' },
    profile: { type: 'string' },
    client: { type: 'string', default: 'https' },
  },
});
const PODS = Number(values.pods);
const CONCURRENCY = Number(values.concurrency);
const WATCHERS = Number(values.watchers);
const UPDATES = Number(values.updates);
const RATE = Number(values.rate);

interface Ready {
  url: string;
  caCertPem: string;
  adminToken: string;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};
const mb = (n: number): string => `${(n / 2 ** 20).toFixed(0)} MB`;

const dir = mkdtempSync('/tmp/mesh-bench-api-');
const execArgv = ['--expose-gc', ...(values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : [])];
function startServer(): { child: ChildProcess; ready: Promise<Ready> } {
  const c = fork('src/local/apiserver/main.ts', ['--data-dir', `${dir}/data`], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = new Promise<Ready>((resolve, reject) => {
    c.once('error', reject);
    c.once('exit', (code) => reject(new Error(`API server exited (${code})`)));
    c.on('message', (m: { type: string } & Ready) => {
      if (m.type === 'ready') resolve(m);
    });
  });
  return { child: c, ready };
}
let { child, ready } = startServer();
const server = await ready;
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, ca: server.caCertPem });

function call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; text: string }> {
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}${path}`,
      { method, agent, headers: { authorization: `Bearer ${server.adminToken}`, ...(data ? { 'content-type': contentType, 'content-length': Buffer.byteLength(data) } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

type Usage = NodeJS.MemoryUsage & { cpu: NodeJS.CpuUsage };

/** The server's memory (after a full GC) and CPU time so far. */
function usage(): Promise<Usage> {
  return new Promise((resolve) => {
    const on = (m: { type: string } & Usage) => {
      if (m.type !== 'memory') return;
      child.off('message', on);
      resolve(m);
    };
    child.on('message', on);
    child.send({ type: 'memory' });
  });
}

/** A pod as a ReplicaSet controller would post it: labels, owner, one container with ports, env, probes. */
const pod = (i: number) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name: `web-${i}`,
    labels: { app: `app-${i % 50}`, 'pod-template-hash': '5d8f9c7b6' },
    annotations: { 'mesh.io/bench': 'true' },
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `app-${i % 50}-5d8f9c7b6`, uid: '6f1c3a52-3d1e-4a8b-9c1d-2b7e4f0a9c11', controller: true, blockOwnerDeletion: true }],
  },
  spec: {
    nodeName: `node${i % 10}`,
    containers: [
      {
        name: 'web',
        image: 'registry.example/web:1.4.2',
        ports: [{ containerPort: 8080, name: 'http', protocol: 'TCP' }],
        env: [{ name: 'MODE', value: 'production' }, { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
        readinessProbe: { httpGet: { path: '/ready', port: 8080 }, periodSeconds: 5 },
        resources: { requests: { cpu: '100m', memory: '64Mi' } },
      },
    ],
  },
});

let core: k8s.CoreV1Api | undefined;
if (values.client === 'client-node') {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'local', server: server.url, caData: Buffer.from(server.caCertPem).toString('base64') }],
    users: [{ name: 'admin', token: server.adminToken }],
    contexts: [{ name: 'local', cluster: 'local', user: 'admin' }],
    currentContext: 'local',
  });
  core = kc.makeApiClient(k8s.CoreV1Api);
} else if (values.client !== 'https') {
  throw new Error(`--client must be https or client-node, not ${values.client}`);
}

async function pool(n: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < n) await fn(next++);
  }));
}

try {
  const ns = await call('POST', '/api/v1/namespaces', { metadata: { name: 'bench' } });
  if (ns.status !== 201) throw new Error(`namespace: ${ns.status} ${ns.text}`);

  // 1. Creates. The server's CPU time per create is the figure least moved by other load on the machine.
  const cpu0 = (await usage()).cpu;
  const windows: number[] = [];
  let windowStart = performance.now();
  let done = 0;
  const t0 = performance.now();
  await pool(PODS, CONCURRENCY, async (i) => {
    if (core) {
      await core.createNamespacedPod({ namespace: 'bench', body: pod(i) });
    } else {
      const r = await call('POST', '/api/v1/namespaces/bench/pods', pod(i));
      if (r.status !== 201) throw new Error(`create web-${i}: ${r.status} ${r.text}`);
    }
    if (++done % 1000 === 0) {
      const now = performance.now();
      windows.push(1000 / ((now - windowStart) / 1000));
      windowStart = now;
    }
  });
  const secs = (performance.now() - t0) / 1000;
  console.log(`creates: ${PODS} pods in ${secs.toFixed(1)} s = ${(PODS / secs).toFixed(0)}/s (${values.client}, concurrency ${CONCURRENCY}; per 1,000: min ${Math.min(...windows).toFixed(0)}/s, max ${Math.max(...windows).toFixed(0)}/s)`);

  const mem = await usage();
  const cpuPer = (mem.cpu.user + mem.cpu.system - cpu0.user - cpu0.system) / PODS;
  console.log(`server CPU per create: ${cpuPer.toFixed(0)} µs (user+system, includes the GC after)`);
  console.log(`server memory at ${PODS} pods (after GC): RSS ${mb(mem.rss)}, heap used ${mb(mem.heapUsed)}, external ${mb(mem.external)}`);

  // 2. Lists.
  for (const [label, path] of [['full', '/api/v1/namespaces/bench/pods'], ['limit=500', '/api/v1/namespaces/bench/pods?limit=500']] as const) {
    const lat: number[] = [];
    for (let k = 0; k < 5; k++) {
      const s = performance.now();
      const r = await call('GET', path);
      if (r.status !== 200) throw new Error(`list: ${r.status}`);
      lat.push(performance.now() - s);
    }
    console.log(`list ${label} of ${PODS} pods: p50 ${pct(lat, 50).toFixed(0)} ms, max ${Math.max(...lat).toFixed(0)} ms`);
  }

  // 3. Watch fan-out.
  const list = JSON.parse((await call('GET', '/api/v1/namespaces/bench/pods?limit=1')).text) as { metadata: { resourceVersion: string } };
  const sentAt = new Map<string, number>();
  const repliedAt = new Map<string, number>();
  const readAt: [string, number][] = [];
  const lat: number[] = [];
  let received = 0;
  const watches = Array.from({ length: WATCHERS }, () => {
    const req = request(`${server.url}/api/v1/namespaces/bench/pods?watch=true&resourceVersion=${list.metadata.resourceVersion}`, { agent: false, ca: server.caCertPem, headers: { authorization: `Bearer ${server.adminToken}` } }, (res) => {
      let buf = '';
      res.on('data', (c: Buffer) => {
        buf += c.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          const ev = JSON.parse(line) as { object: { metadata: { labels?: Record<string, string> } } };
          const seq = ev.object.metadata.labels?.['bench-seq'];
          const at = seq === undefined ? undefined : sentAt.get(seq);
          if (at !== undefined) {
            lat.push(performance.now() - at);
            readAt.push([seq!, performance.now()]);
            received++;
          }
        }
      });
      res.on('error', () => {});
    });
    req.on('error', () => {});
    req.end();
    return req;
  });
  await new Promise((r) => setTimeout(r, 500));
  const gap = 1000 / RATE;
  const u0 = performance.now();
  const inflight: Promise<unknown>[] = [];
  const acks: number[] = [];
  for (let k = 0; k < UPDATES; k++) {
    const wait = u0 + k * gap - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const seq = String(k);
    sentAt.set(seq, performance.now());
    const sent = performance.now();
    inflight.push(call('PATCH', `/api/v1/namespaces/bench/pods/web-${(k * 7919) % PODS}`, { metadata: { labels: { 'bench-seq': seq } } }, 'application/merge-patch+json').then(() => {
      acks.push(performance.now() - sent);
      repliedAt.set(seq, performance.now());
    }));
  }
  await Promise.all(inflight);
  const deadline = Date.now() + 10_000;
  while (received < UPDATES * WATCHERS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const w of watches) w.destroy();
  console.log(`watch fan-out at ${PODS} pods: ${WATCHERS} watchers × ${UPDATES} updates at ${RATE}/s, ${received}/${UPDATES * WATCHERS} delivered; PATCH sent → event read: p50 ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms, max ${Math.max(...lat).toFixed(1)} ms (the PATCH's own reply: p50 ${pct(acks, 50).toFixed(1)} ms, p99 ${pct(acks, 99).toFixed(1)} ms)`);
  // The server publishes an event as it sends the write's reply, so this is the fan-out's own share.
  const spread = readAt.map(([seq, t]) => t - repliedAt.get(seq)!);
  console.log(`  event read − its PATCH's reply read: p50 ${pct(spread, 50).toFixed(1)} ms, p99 ${pct(spread, 99).toFixed(1)} ms`);
  const after = await usage();
  console.log(`server memory after the updates (the event window keeps each update's previous object): RSS ${mb(after.rss)}, heap used ${mb(after.heapUsed)}`);

  // 4. A clean stop (which writes a snapshot) and a start on the same data dir.
  agent.destroy();
  const s0 = performance.now();
  const stopped = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await stopped;
  const s1 = performance.now();
  ({ child, ready } = startServer());
  await ready;
  console.log(`restart at ${PODS} pods: stop ${(s1 - s0).toFixed(0)} ms, start to ready ${(performance.now() - s1).toFixed(0)} ms`);
} finally {
  agent.destroy();
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
}

// The waypoint's L7 engine alone (no HBONE, no TLS) against no proxy, in one run:
//
//   node bench/waypoint-engine.ts [--rate 1000] [--seconds 5] [--conns 32]
//
// A forked child is the waypoint: L7Proxy behind a plain TCP listener on 127.0.0.1 (each
// accepted connection handed to handle() as the HBONE server would hand a stream), routing to a
// Service with one endpoint. This process is the load generator and the application, an
// HTTP/1.1 server answering 1 KB. The baseline sends the same load straight to the application.
// What the difference shows is the engine's own cost: two HTTP/1.1 parses, routing, the
// upstream pool. The tunnels of a real mesh come on top (bench/hbone.ts measures those).
//
//   latency     1 KB responses at a fixed --rate over 10 keep-alive connections (open loop)
//   saturation  --conns closed-loop connections for --seconds: requests per second
//   CPU / RSS   the waypoint process during the fixed-rate run, beside Istio's published
//               waypoint figures (0.25 vCPU and 60 MB at 1,000 rps); run with --expose-gc for
//               the live heap (RSS includes what V8 has not collected yet, and Node's
//               TypeScript stripper when run from .ts)
import { fork } from 'node:child_process';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

process.env.MESH_LOG_LEVEL ??= 'warn';

type ToChild = { cmd: 'start'; app: number } | { cmd: 'usage' } | { cmd: 'exit' };
type FromChild = { ev: 'ready'; port: number } | { ev: 'usage'; rss: number; heap: number; cpuMs: number };

const VIP = '10.96.0.10';
const PORT = 9080;

async function child(): Promise<void> {
  const { MeshState } = await import('../src/state/index.ts');
  const { L7Proxy, NO_RESILIENCE } = await import('../src/waypoint/index.ts');
  const { SERVICE, WORKLOAD } = await import('../src/xds/index.ts');
  const send = (m: FromChild): void => void process.send!(m);
  process.on('message', (m: ToChild) => {
    // A clean exit, so that --cpu-prof writes the child's profile too.
    if (m.cmd === 'exit') process.exit(0);
    if (m.cmd === 'usage') {
      const u = process.cpuUsage();
      const rss = process.memoryUsage().rss;
      // Live heap, when run with --expose-gc: what requests keep, apart from V8's lazy collection.
      (globalThis as { gc?: () => void }).gc?.();
      send({ ev: 'usage', rss, heap: process.memoryUsage().heapUsed, cpuMs: (u.user + u.system) / 1000 });
      return;
    }
    const state = new MeshState();
    const key = 'bench/app.bench.svc.cluster.local';
    state.replace(SERVICE, [[key, { name: 'app', namespace: 'bench', hostname: 'app.bench.svc.cluster.local', addresses: [{ network: '', address: Uint8Array.of(10, 96, 0, 10) }], ports: [{ servicePort: PORT, targetPort: m.app, appProtocol: '' }], subjectAltNames: [], waypoint: null }]], true);
    const w = {
      uid: 'Kubernetes//v1/Pod/bench/app-1', name: 'app-1', namespace: 'bench', addresses: [Uint8Array.of(10, 0, 0, 1)], hostname: '', network: '', trustDomain: 'cluster.local',
      serviceAccount: 'app', node: 'n', tunnelProtocol: 'HBONE' as const, waypoint: null, canonicalName: 'app', canonicalRevision: 'v1', workloadType: 'POD' as const, workloadName: 'app',
      status: 'HEALTHY' as const, services: { [key]: { ports: [{ servicePort: PORT, targetPort: m.app, appProtocol: '' }] } }, authorizationPolicies: [], clusterId: 'Kubernetes', podUid: 'u',
    };
    state.replace(WORKLOAD, [[w.uid, w]], true);
    let recorded = 0;
    const proxy = new L7Proxy({
      state,
      routes: () => undefined,
      upstream: {
        connect: async (t) => {
          const s = net.connect(t.port, '127.0.0.1');
          await once(s, 'connect');
          return s;
        },
      },
      authorize: () => ({ allowed: true, policy: '' }),
      resilience: () => NO_RESILIENCE,
      telemetry: { record: () => void recorded++ },
      gatewayKey: 'Gateway/bench/waypoint',
    });
    const server = net.createServer((s) => void proxy.handle(s, { sourcePrincipal: 'cluster.local/ns/bench/sa/client', sourceIp: '10.0.0.2', dst: { ip: VIP, port: PORT } }));
    server.listen(0, '127.0.0.1', () => send({ ev: 'ready', port: (server.address() as net.AddressInfo).port }));
  });
}

function request(agent: http.Agent, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    http
      .get({ agent, host: '127.0.0.1', port, path: '/', headers: { host: `app.bench.svc.cluster.local:${PORT}` } }, (res) => {
        res.resume();
        res.once('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      })
      .once('error', reject);
  });
}

/** Open loop at `rate` per second over 10 connections; latency percentiles in ms. */
async function fixedRate(port: number, rate: number, seconds: number): Promise<{ p50: number; p99: number; sent: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
  const lat: number[] = [];
  const pending: Promise<void>[] = [];
  const start = performance.now();
  const total = rate * seconds;
  let sent = 0;
  while (sent < total) {
    const due = start + (sent * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const t0 = performance.now();
    pending.push(request(agent, port).then(() => void lat.push(performance.now() - t0)));
    sent++;
  }
  await Promise.all(pending);
  agent.destroy();
  lat.sort((a, b) => a - b);
  return { p50: lat[Math.floor(lat.length * 0.5)]!, p99: lat[Math.floor(lat.length * 0.99)]!, sent };
}

async function saturation(port: number, conns: number, seconds: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
  const end = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: conns }, async () => {
      while (performance.now() < end) {
        await request(agent, port);
        done++;
      }
    }),
  );
  agent.destroy();
  return done / seconds;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rate: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '5' }, conns: { type: 'string', default: '32' } } });
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const conns = Number(values.conns);
  const body = Buffer.alloc(1024, 'x');
  const app = http.createServer((_req, res) => res.end(body)).listen(0, '127.0.0.1');
  await once(app, 'listening');
  const appPort = (app.address() as net.AddressInfo).port;

  const wp = fork(fileURLToPath(import.meta.url), ['--child'], { stdio: 'inherit' });
  const next = (): Promise<FromChild> => once(wp, 'message').then(([m]) => m as FromChild);
  wp.send({ cmd: 'start', app: appPort } satisfies ToChild);
  const ready = await next();
  if (ready.ev !== 'ready') throw new Error('waypoint did not start');
  const usage = async (): Promise<{ rss: number; heap: number; cpuMs: number }> => {
    wp.send({ cmd: 'usage' } satisfies ToChild);
    const u = await next();
    if (u.ev !== 'usage') throw new Error('unexpected message');
    return u;
  };

  const idle = await usage();
  await fixedRate(ready.port, rate, 1); // warm-up: JIT, connections
  const direct = await fixedRate(appPort, rate, seconds);
  const before = await usage();
  const t0 = performance.now();
  const via = await fixedRate(ready.port, rate, seconds);
  const after = await usage();
  const vcpu = (after.cpuMs - before.cpuMs) / (performance.now() - t0);
  const satDirect = await saturation(appPort, conns, seconds);
  const satVia = await saturation(ready.port, conns, seconds);

  const ms = (n: number): string => n.toFixed(2);
  console.log(`1 KB HTTP/1.1, ${rate} rps for ${seconds} s over 10 connections`);
  console.log(`  no proxy       p50 ${ms(direct.p50)} ms  p99 ${ms(direct.p99)} ms`);
  console.log(`  waypoint       p50 ${ms(via.p50)} ms  p99 ${ms(via.p99)} ms`);
  const mb = (n: number): string => `${(n / 1e6).toFixed(0)} MB`;
  console.log(`  waypoint CPU   ${vcpu.toFixed(3)} vCPU (Istio's waypoint: 0.25 vCPU at 1,000 rps)`);
  console.log(`  waypoint RSS   ${mb(after.rss)}, ${mb(idle.rss)} before load; live heap ${mb(after.heap)} (Istio's: 60 MB)`);
  console.log(`saturation, ${conns} connections, ${seconds} s`);
  console.log(`  no proxy       ${satDirect.toFixed(0)} rps`);
  console.log(`  waypoint       ${satVia.toFixed(0)} rps (${((satVia / satDirect) * 100).toFixed(0)} % of no proxy)`);
  wp.send({ cmd: 'exit' } satisfies ToChild);
  await once(wp, 'exit');
  app.close();
}

if (process.argv.includes('--child')) await child();
else await main();

import test from 'ava';
import { Writable } from 'node:stream';
import { register as globalRegistry } from 'prom-client';
import { spiffeId } from '../../src/identity/index.ts';
import { AccessLog, TcpMetrics, Telemetry, trafficLabels, type OpenedConnection } from '../../src/ztunnel/telemetry/index.ts';
import type { Workload } from '../../src/xds/index.ts';

function workload(ns: string, name: string, app: string, sa: string): Workload {
  return {
    uid: `Kubernetes//v1/Pod/${ns}/${name}`,
    name,
    namespace: ns,
    addresses: [],
    hostname: '',
    network: '',
    trustDomain: 'cluster.local',
    serviceAccount: sa,
    node: 'node-a',
    tunnelProtocol: 'HBONE',
    waypoint: null,
    canonicalName: app,
    canonicalRevision: 'v1',
    workloadType: 'DEPLOYMENT',
    workloadName: app,
    status: 'HEALTHY',
    services: {},
    authorizationPolicies: [],
    clusterId: 'Kubernetes',
    podUid: 'u',
  };
}

const client = workload('front', 'web-5d9f-abcde', 'web', 'web');
const server = workload('shop', 'cart-7c4b-xyz12', 'cart', 'cart');
const service = { hostname: 'cart.shop.svc.cluster.local', name: 'cart', namespace: 'shop' };

function inbound(extra: Partial<OpenedConnection> = {}): OpenedConnection {
  return {
    reporter: 'destination',
    source: client,
    sourceIdentity: spiffeId('cluster.local', 'front', 'web'),
    destination: server,
    destinationService: service,
    mtls: true,
    src: { ip: '10.244.2.9', port: 40312 },
    dst: { ip: '10.244.1.7', port: 15008 },
    hboneAddr: '10.244.1.7:8080',
    ...extra,
  };
}

/** The value of one series in the exposition text, by name and a few labels. */
function value(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

function sink(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(c, _e, cb) {
      chunks.push(String(c));
      cb();
    },
  });
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('scrape shows the istio_tcp_* series with Istio labels for an inbound mTLS connection', async (t) => {
  const tel = new Telemetry();
  const c = tel.connectionOpened(inbound());
  c.addReceived(100);
  c.addSent(2000);
  const text = await tel.metrics.metrics();
  const want = {
    reporter: 'destination',
    source_workload: 'web',
    source_workload_namespace: 'front',
    source_principal: 'spiffe://cluster.local/ns/front/sa/web',
    source_app: 'web',
    source_version: 'v1',
    source_cluster: 'Kubernetes',
    destination_workload: 'cart',
    destination_workload_namespace: 'shop',
    destination_principal: 'spiffe://cluster.local/ns/shop/sa/cart',
    destination_app: 'cart',
    destination_version: 'v1',
    destination_cluster: 'Kubernetes',
    destination_service: 'cart.shop.svc.cluster.local',
    destination_service_namespace: 'shop',
    destination_service_name: 'cart',
    request_protocol: 'tcp',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
  };
  t.is(value(text, 'istio_tcp_connections_opened_total', want), 1);
  t.is(value(text, 'istio_tcp_received_bytes_total', want), 100, 'bytes show while the connection is open');
  t.is(value(text, 'istio_tcp_sent_bytes_total', want), 2000);
  t.is(value(text, 'istio_tcp_connections_closed_total', want), undefined, 'no closed series before a close');
  t.regex(text, /# HELP istio_tcp_connections_failed_total /);
  t.regex(text, /# TYPE istio_tcp_sent_bytes_total counter/);
  c.close();
  t.is(value(await tel.metrics.metrics(), 'istio_tcp_connections_closed_total', want), 1);
});

test('byte counts add up across chunks and connections, on the metric and on the handle', async (t) => {
  const tel = new Telemetry();
  const a = tel.connectionOpened(inbound());
  const b = tel.connectionOpened(inbound());
  let up = 0;
  let down = 0;
  for (let i = 1; i <= 100; i++) {
    a.addReceived(i);
    up += i;
    a.addSent(3 * i);
    down += 3 * i;
  }
  b.addReceived(7);
  t.is(a.metrics.received, up);
  t.is(a.metrics.sent, down);
  const text = await tel.metrics.metrics();
  t.is(value(text, 'istio_tcp_received_bytes_total', { reporter: 'destination' }), up + 7);
  t.is(value(text, 'istio_tcp_sent_bytes_total', { reporter: 'destination' }), down);
  t.is(value(text, 'istio_tcp_connections_opened_total', { reporter: 'destination' }), 2);
  a.close();
  b.close();
  a.close();
  const after = await tel.metrics.metrics();
  t.is(value(after, 'istio_tcp_connections_closed_total', { reporter: 'destination' }), 2, 'a second close counts nothing');
  a.addReceived(-5);
  a.addReceived(Number.NaN);
  t.is(value(await tel.metrics.metrics(), 'istio_tcp_received_bytes_total', { reporter: 'destination' }), up + 7, 'negative and NaN are ignored');
});

test('a denied connection closes with response_flags DENY and counts as failed', async (t) => {
  const m = new TcpMetrics();
  const c = m.connectionOpened(trafficLabels({ reporter: 'destination', destination: server, mtls: false }));
  c.closed('DENY');
  const text = await m.metrics();
  t.is(value(text, 'istio_tcp_connections_closed_total', { response_flags: 'DENY', connection_security_policy: 'unknown', source_principal: 'unknown' }), 1);
  t.is(value(text, 'istio_tcp_connections_failed_total', { response_flags: 'DENY' }), 1);
  t.is(value(text, 'istio_tcp_connections_opened_total', { response_flags: '-' }), 1, 'opened carries no flag, as in ztunnel');
  t.is(value(text, 'istio_tcp_connections_closed_total', { response_flags: '-' }), undefined);
});

test('source_principal comes only from the verified identity, not from the workload state', (t) => {
  const l = trafficLabels({ reporter: 'destination', source: client, destination: server, mtls: false });
  t.is(l.source_principal, 'unknown');
  t.is(l.source_workload, 'web');
  t.is(l.destination_principal, 'spiffe://cluster.local/ns/shop/sa/cart');
  const derived = trafficLabels({ reporter: 'destination', derivedSource: { workloadName: 'job-x', namespace: 'batch' }, sourceIdentity: spiffeId('cluster.local', 'batch', 'default'), mtls: true });
  t.is(derived.source_workload, 'job-x');
  t.is(derived.source_workload_namespace, 'batch');
  t.is(derived.source_principal, 'spiffe://cluster.local/ns/batch/sa/default');
});

test('metrics live on their own registry, not the global one', async (t) => {
  const m = new TcpMetrics();
  m.connectionOpened({ reporter: 'source' });
  t.false((await globalRegistry.metrics()).includes('istio_tcp_connections_opened_total'));
  t.true((await m.metrics()).includes('istio_tcp_connections_opened_total{reporter="source"'));
});

test('label sets past maxSeries fold into an "overflow" series that keeps namespaces', async (t) => {
  const m = new TcpMetrics({ maxSeries: 3 });
  for (let i = 0; i < 10; i++) m.connectionOpened({ reporter: 'destination', source_workload: `job-${i}`, source_workload_namespace: 'batch' }).addReceived(10);
  const text = await m.metrics();
  const series = text.split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total{'));
  t.is(series.length, 4);
  t.is(value(text, 'istio_tcp_connections_opened_total', { source_workload: 'overflow', source_workload_namespace: 'batch' }), 7);
  t.is(value(text, 'istio_tcp_received_bytes_total', { source_workload: 'overflow' }), 70);
  t.regex(text, /mesh_ztunnel_metric_series_overflow_total 7/);
  t.regex(text, /mesh_ztunnel_metric_series 4/);
});

test('an unknown label key is ignored instead of breaking the scrape', async (t) => {
  const m = new TcpMetrics();
  m.connectionOpened({ reporter: 'source', bogus: 'x' } as never);
  await t.notThrowsAsync(() => m.metrics());
});

test('the access log writes one JSON line per completed connection with ztunnel fields', async (t) => {
  const out = sink();
  let clock = 1000;
  const tel = new Telemetry({ accessLog: new AccessLog({ destination: out.stream }), now: () => clock });
  const c = tel.connectionOpened(inbound());
  c.addReceived(512);
  c.addSent(4096);
  t.is(out.lines().length, 0, 'nothing until the connection completes');
  clock += 1234;
  c.close();
  c.close();
  const lines = out.lines();
  t.is(lines.length, 1);
  const l = lines[0]!;
  t.like(l, {
    level: 30,
    component: 'access',
    msg: 'connection complete',
    'src.addr': '10.244.2.9:40312',
    'src.workload': 'web-5d9f-abcde',
    'src.namespace': 'front',
    'src.identity': 'spiffe://cluster.local/ns/front/sa/web',
    'dst.addr': '10.244.1.7:15008',
    'dst.hbone_addr': '10.244.1.7:8080',
    'dst.service': 'cart.shop.svc.cluster.local',
    'dst.workload': 'cart-7c4b-xyz12',
    'dst.namespace': 'shop',
    'dst.identity': 'spiffe://cluster.local/ns/shop/sa/cart',
    direction: 'inbound',
    bytes_sent: 4096,
    bytes_recv: 512,
    duration: '1234ms',
    duration_ms: 1234,
  });
  t.false('error' in l);
  t.is(typeof l.time, 'string');
});

test('an outbound plaintext connection that failed logs an error line, no identities, unflipped bytes', (t) => {
  const out = sink();
  const tel = new Telemetry({ accessLog: new AccessLog({ destination: out.stream }), now: () => 0 });
  const c = tel.connectionOpened({ reporter: 'source', source: client, mtls: false, src: { ip: 'fd00::2', port: 5000 }, dst: { ip: 'fd00::9', port: 80 } });
  c.addReceived(10);
  c.addSent(3);
  c.close({ flags: 'CONNECT', error: new Error('connection refused') });
  const [l] = out.lines();
  t.like(l, { level: 50, direction: 'outbound', 'src.addr': '[fd00::2]:5000', 'dst.addr': '[fd00::9]:80', bytes_sent: 10, bytes_recv: 3, error: 'connection refused' });
  t.false('src.identity' in l!);
  t.false('dst.workload' in l!, 'unknown values are left out');
});

test('the access log can be silenced at runtime through its logger', (t) => {
  const out = sink();
  const log = new AccessLog({ destination: out.stream });
  log.logger.level = 'silent';
  const tel = new Telemetry({ accessLog: log });
  tel.connectionOpened(inbound()).close();
  t.is(out.lines().length, 0);
});

test('micro-benchmark: adding bytes costs an addition, not a label lookup', (t) => {
  const m = new TcpMetrics();
  const c = m.connectionOpened(trafficLabels({ reporter: 'destination', source: client, destination: server, mtls: true }));
  const n = 5_000_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) c.addSent(16384);
  const ns = Number(process.hrtime.bigint() - t0);
  t.is(c.sent, n * 16384);
  t.log(`${(ns / n).toFixed(1)} ns per addSent`);
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < 10_000; i++) m.connectionOpened(c.labels).closed();
  t.log(`${(Number(process.hrtime.bigint() - t1) / 10_000 / 1000).toFixed(2)} µs per open+close (label-set lookup)`);
  t.pass();
});

test('L4 spans: the source ztunnel opens a CLIENT span whose context the CONNECT carries, the destination a SERVER span under it, with the mesh attributes', async (t) => {
  const { startOtlpReceiver } = await import('../helpers/otlp-receiver.ts');
  const { createTracer } = await import('../../src/tracing/index.ts');
  const r = await startOtlpReceiver();
  t.teardown(() => r.close());
  const tracer = await createTracer({ tracingEndpoint: r.httpUrl, tracingProtocol: 'http/protobuf', tracingSampling: 100, tracingFlushInterval: 20 }, { 'service.name': 'ztunnel.mesh-system', 'mesh.reporter': 'ztunnel' });
  const source = new Telemetry({ metrics: new TcpMetrics(), tracer });
  const destination = new Telemetry({ metrics: new TcpMetrics(), tracer });
  const out = source.connectionOpened(inbound({ reporter: 'source', dst: { ip: '10.96.0.10', port: 80 } }));
  t.regex(out.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  const into = destination.connectionOpened(inbound({ traceparent: out.traceparent }));
  into.addReceived(10);
  into.close();
  out.close({ flags: 'CONNECT', error: 'upstream reset' });
  const spans = await r.waitFor('both spans', (s) => s.length === 2);
  await tracer.shutdown();
  const client = spans.find((s) => s.kind === 3)!;
  const server = spans.find((s) => s.kind === 2)!;
  t.truthy(client && server, JSON.stringify(spans));
  t.is(server.traceId, client.traceId);
  t.is(server.parentSpanId, client.spanId);
  t.is(client.name, '10.96.0.10:80');
  t.is(client.statusCode, 2, 'the failed connection is an error span');
  t.like(server.attributes, { 'mesh.reporter': 'destination', 'mesh.source.principal': 'spiffe://cluster.local/ns/front/sa/web', 'mesh.destination.workload': 'cart', 'mesh.connection_security_policy': 'mutual_tls', 'mesh.bytes_received': 10 });
  // Without a tracer no traceparent goes on the CONNECT.
  t.is(new Telemetry({ metrics: new TcpMetrics() }).connectionOpened(inbound({ reporter: 'source' })).traceparent, '');
});

test('the default access log on stdout batches its lines and loses none: full batches at once, the rest 250 ms after, the tail at flush', async (t) => {
  const { spawn } = await import('node:child_process');
  const { mkdtempSync, openSync, closeSync, readFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'mesh-access-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'stdout');
  const mod = new URL('../../src/ztunnel/telemetry/access-log.ts', import.meta.url).href;
  // 500 lines (several 8 KiB batches), then one that only the timer writes (the child looks at
  // its own stdout file 400 ms later), then one that only flush() writes before the exit.
  const script = `
    const { AccessLog } = await import(${JSON.stringify(mod)});
    const { readFileSync } = await import('node:fs');
    const log = new AccessLog();
    const e = (i) => ({ direction: 'inbound', src: { addr: '10.0.0.1:' + i }, dst: { addr: '10.0.0.2:80' }, bytesSent: i, bytesRecv: 1, durationMs: 1 });
    for (let i = 0; i < 500; i++) log.write(e(i));
    log.write(e(500));
    await new Promise((r) => setTimeout(r, 400));
    process.stderr.write('lines after 400 ms: ' + readFileSync(${JSON.stringify(file)}, 'utf8').trim().split('\\n').length + '\\n');
    log.write(e(501));
    await log.flush();
  `;
  const fd = openSync(file, 'w');
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise((resolve) => child.on('close', resolve));
  t.is(code, 0, stderr);
  const sent = readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { bytes_sent: number }).bytes_sent);
  t.deepEqual(sent, Array.from({ length: 502 }, (_, i) => i), 'every line, in order, each whole');
  t.is(stderr, 'lines after 400 ms: 501\n', 'the last line of a quiet spell went out on the timer');
});

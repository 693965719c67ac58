import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { type DestinationStream, pino } from 'pino';
import { Writable } from 'node:stream';
import { logger } from '../../src/common/log.ts';
import { HbonePool, HboneServer } from '../../src/hbone/index.ts';
import '../../src/ztunnel/policy.ts'; // the authz logger, as in the ztunnel process
import '../../src/ztunnel/ztunnel.ts'; // and the ztunnel, xds and identity loggers
import { memoryCa, mint } from '../helpers/ca.ts';
import { AdminListenError, LogLevels, startAdminServer, startMetricsServer, startReadinessServer, startZtunnelServers, type ConfigDump, type Readiness } from '../../src/admin/index.ts';
import { AccessLog, TcpMetrics } from '../../src/ztunnel/telemetry/index.ts';

const HOST = '127.0.0.1';
const quiet = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });

function dump(): ConfigDump {
  return {
    workloads: [{ uid: 'Kubernetes//v1/Pod/shop/cart-1', name: 'cart-1', namespace: 'shop', addresses: [Uint8Array.of(10, 244, 1, 7), Buffer.from('fd000000000000000000000000000007', 'hex')] }],
    services: [{ hostname: 'cart.shop.svc.cluster.local', addresses: [{ network: '', address: Uint8Array.of(10, 96, 0, 10) }] }],
    policies: [{ namespace: 'shop', name: 'deny-web', action: 'DENY', scope: 'NAMESPACE' }],
    certificates: [{ identity: 'spiffe://cluster.local/ns/shop/sa/cart', state: 'Available' }],
    connections: [],
  };
}

function request(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The levels of this process's real component loggers (src/common/log.ts) and an access log,
 * as ztunnel's main registers them; put back as they were after the test. */
function levels(t?: ExecutionContext): LogLevels {
  const lv = LogLevels.ofProcess({ access: new AccessLog({ destination: quiet() as unknown as DestinationStream, level: 'info' }).logger });
  t?.teardown(() => lv.reset());
  return lv;
}

test('admin /config_dump serves the provider JSON with addresses as IP text', async (t) => {
  const admin = await startAdminServer({ host: HOST, port: 0, configDump: dump, logLevels: levels() });
  t.teardown(() => admin.close());
  t.not(admin.port, 0);
  const r = await request(admin.port, '/config_dump');
  t.is(r.status, 200);
  t.is(r.type, 'application/json');
  const body = JSON.parse(r.body) as ConfigDump;
  t.deepEqual((body.workloads[0] as { addresses: string[] }).addresses, ['10.244.1.7', 'fd00::7']);
  t.is((body.services[0] as { addresses: { address: string }[] }).addresses[0]!.address, '10.96.0.10');
  t.deepEqual(Object.keys(body), ['workloads', 'services', 'policies', 'certificates', 'connections']);
  t.is((await request(admin.port, '/healthz')).status, 200);
  t.is((await request(admin.port, '/nope')).status, 404);
  t.is((await request(admin.port, '/config_dump', 'POST')).status, 405);
});

test('admin /config_dump answers 500 with the reason when the provider fails, and keeps serving', async (t) => {
  let fail = true;
  const admin = await startAdminServer({
    host: HOST,
    port: 0,
    configDump: () => {
      if (fail) throw new Error('state not loaded yet');
      return dump();
    },
    logLevels: levels(),
  });
  t.teardown(() => admin.close());
  const r = await request(admin.port, '/config_dump');
  t.is(r.status, 500);
  t.regex(r.body, /state not loaded yet/);
  fail = false;
  t.is((await request(admin.port, '/config_dump')).status, 200);
});

// The loggers the traffic goes through, as their modules made them (each logger() call for a
// component returns the same one): what /logging must reach.
const TRAFFIC = ['ztunnel', 'hbone', 'authz', 'xds', 'identity'] as const;
const initial = logger('hbone').level;

test('admin /logging shows the levels of the loggers the traffic goes through, and changes them at runtime', async (t) => {
  const lv = levels(t);
  const admin = await startAdminServer({ host: HOST, port: 0, configDump: dump, logLevels: lv });
  t.teardown(() => admin.close());
  const shown = JSON.parse((await request(admin.port, '/logging')).body) as { levels: Record<string, string> };
  for (const c of TRAFFIC) t.is(shown.levels[c], initial, `${c} is listed`);
  t.is(shown.levels.access, 'info');

  t.is((await request(admin.port, '/logging?level=debug', 'POST')).status, 200);
  for (const c of TRAFFIC) t.true(logger(c).isLevelEnabled('debug'), `${c}: the logger its modules write to is at debug`);
  t.is(lv.levels().access, 'debug');

  const r = await request(admin.port, '/logging?xds=trace&access=silent', 'POST');
  t.is(r.status, 200);
  t.like((JSON.parse(r.body) as { levels: Record<string, string> }).levels, { access: 'silent', hbone: 'debug', xds: 'trace' });
  t.is(logger('xds').level, 'trace');

  await request(admin.port, '/logging?reset', 'POST');
  for (const c of TRAFFIC) t.is(logger(c).level, initial, `${c} is back to MESH_LOG_LEVEL`);
  t.is(lv.levels().access, 'info');
  await request(admin.port, '/logging?trace=xds,hbone', 'POST');
  t.like(lv.levels(), { access: 'info', hbone: 'debug', xds: 'debug', authz: initial, identity: initial });
});

test('admin /logging refuses bad requests and changes nothing', async (t) => {
  const lv = levels(t);
  const admin = await startAdminServer({ host: HOST, port: 0, configDump: dump, logLevels: lv });
  t.teardown(() => admin.close());
  const before = lv.levels();
  const badLevel = await request(admin.port, '/logging?xds=debug&hbone=loud', 'POST');
  t.is(badLevel.status, 400);
  t.regex(badLevel.body, /unknown level "loud" for hbone/);
  const badComponent = await request(admin.port, '/logging?nosuch=debug', 'POST');
  t.is(badComponent.status, 400);
  t.regex(badComponent.body, /known: access, .*authz, .*hbone, .*identity, .*xds, .*ztunnel/);
  t.is((await request(admin.port, '/logging?level=debug')).status, 405, 'a GET never changes levels');
  t.is((await request(admin.port, '/logging', 'POST')).status, 400);
  t.deepEqual(lv.levels(), before);
});

/** What the process's real loggers write (pino's stream, shared by every component's child). */
function captureLogs(t: ExecutionContext): string[] {
  const stream = (logger('hbone') as unknown as Record<symbol, { write: (s: string) => unknown }>)[pino.symbols.streamSym]!;
  const lines: string[] = [];
  stream.write = (s: string) => lines.push(s);
  t.teardown(() => void delete (stream as { write?: unknown }).write);
  return lines;
}

test("hbone-debug-after-logging: HBONE's own logger writes its debug line once /logging asks for debug, not before", async (t) => {
  const ca = await memoryCa();
  const [client, serverCert] = await Promise.all([mint(ca, 'spiffe://cluster.local/ns/shop/sa/cart'), mint(ca, 'spiffe://cluster.local/ns/shop/sa/pay')]);
  const app = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => app.listen(0, HOST, r));
  const appPort = (app.address() as net.AddressInfo).port;
  const server = new HboneServer({
    credentials: serverCert,
    trustDomains: ['cluster.local'],
    handler: async () => {
      const up = net.connect(appPort, HOST);
      await once(up, 'connect');
      return { status: 200, upstream: up };
    },
  });
  const { port: hbonePort } = await server.listen({ port: 0, host: HOST });
  const pool = new HbonePool();
  t.teardown(async () => {
    pool.destroy();
    await server.close();
    app.close();
  });
  const lv = levels(t);
  const admin = await startAdminServer({ host: HOST, port: 0, configDump: dump, logLevels: lv });
  t.teardown(() => admin.close());
  const lines = captureLogs(t);
  // A new session each time (the source IP is part of the pool key): the pool says so at debug.
  const tunnel = async (sourceIp: string) => {
    const s = await pool.connect({ source: client, dstAddr: `${HOST}:${hbonePort}`, expectedIdentities: ['spiffe://cluster.local/ns/shop/sa/pay'], authority: `${HOST}:${appPort}`, sourceIp });
    s.end('ping');
    for await (const _ of s) void _;
  };
  const opened = () => lines.map((l) => JSON.parse(l) as { component: string; msg: string; level: number }).filter((l) => l.msg === 'opening HBONE session');

  t.false(logger('hbone').isLevelEnabled('debug'), `the test runs at ${initial}`);
  await tunnel('10.0.0.1');
  t.is(opened().length, 0, 'at the start-up level, no debug line');

  t.is((await request(admin.port, '/logging?xds=debug', 'POST')).status, 200);
  await tunnel('10.0.0.2');
  t.is(opened().length, 0, "another component's level leaves hbone's alone");

  t.is((await request(admin.port, '/logging?level=debug', 'POST')).status, 200);
  await tunnel('10.0.0.3');
  t.like(opened(), [{ component: 'hbone', level: 20 }], 'after ?level=debug, the pool writes its debug line');

  await request(admin.port, '/logging?reset', 'POST');
  await request(admin.port, '/logging?hbone=debug', 'POST');
  await tunnel('10.0.0.4');
  t.is(opened().length, 2, '?hbone=debug alone does it too');
});

test('metrics server serves the registry on /metrics and /stats/prometheus', async (t) => {
  const m = new TcpMetrics();
  m.connectionOpened({ reporter: 'destination', destination_workload: 'cart' }).addSent(42);
  const srv = await startMetricsServer({ host: HOST, port: 0, registries: [m.registry] });
  t.teardown(() => srv.close());
  for (const path of ['/metrics', '/stats/prometheus']) {
    const r = await request(srv.port, path);
    t.is(r.status, 200, path);
    t.regex(r.type, /^text\/plain; version=0\.0\.4/);
    t.regex(r.body, /istio_tcp_sent_bytes_total\{reporter="destination",.*destination_workload="cart".*\} 42/);
  }
  t.is((await request(srv.port, '/')).status, 404);
});

test('readiness answers 503 with the reason until the check says ready', async (t) => {
  let state: Readiness = { ready: false, reason: 'config not synced (Workload, Authorization)' };
  const srv = await startReadinessServer({ host: HOST, port: 0, ready: () => state });
  t.teardown(() => srv.close());
  const before = await request(srv.port, '/healthz/ready');
  t.is(before.status, 503);
  t.is(before.body, 'not ready: config not synced (Workload, Authorization)\n');
  state = { ready: true };
  const after = await request(srv.port, '/healthz/ready');
  t.is(after.status, 200);
  t.is(after.body, 'ready\n');
});

test('readiness answers 503 when the check itself throws', async (t) => {
  const srv = await startReadinessServer({
    host: HOST,
    port: 0,
    ready: async () => {
      throw new Error('certificate manager gone');
    },
  });
  t.teardown(() => srv.close());
  const r = await request(srv.port, '/healthz/ready');
  t.is(r.status, 503);
  t.regex(r.body, /readiness check failed: certificate manager gone/);
});

test('close lets a request in flight finish, then refuses new connections', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  const admin = await startAdminServer({
    host: HOST,
    port: 0,
    configDump: async () => {
      entered();
      await gate;
      return dump();
    },
    logLevels: levels(),
  });
  const pending = request(admin.port, '/config_dump');
  await inside;
  const closed = admin.close(5_000);
  let done = false;
  void closed.then(() => (done = true));
  await new Promise((r) => setTimeout(r, 50));
  t.false(done, 'close waits for the request in flight');
  release();
  t.is((await pending).status, 200);
  await closed;
  await t.throwsAsync(() => request(admin.port, '/healthz'), { code: 'ECONNREFUSED' });
});

test('close drops what is still running after the grace period', async (t) => {
  const admin = await startAdminServer({ host: HOST, port: 0, configDump: () => new Promise<ConfigDump>(() => {}), logLevels: levels() });
  const pending = request(admin.port, '/config_dump').catch((e: Error) => e);
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  await admin.close(100);
  t.true(Date.now() - t0 < 2_000);
  t.true((await pending) instanceof Error);
});

test('a taken port fails with MESH_ERR_ADMIN_LISTEN naming the port', async (t) => {
  const first = await startReadinessServer({ host: HOST, port: 0, ready: () => ({ ready: true }) });
  t.teardown(() => first.close());
  const e = await t.throwsAsync(() => startReadinessServer({ host: HOST, port: first.port, ready: () => ({ ready: true }) }), { instanceOf: AdminListenError });
  t.is(e?.code, 'MESH_ERR_ADMIN_LISTEN');
  t.regex(e?.message ?? '', new RegExp(`port ${first.port} is in use`));
});

test('startZtunnelServers starts all three and closes them together', async (t) => {
  const m = new TcpMetrics();
  const s = await startZtunnelServers({
    admin: { host: HOST, port: 0, configDump: dump, logLevels: levels() },
    metrics: { host: HOST, port: 0, registries: [m.registry] },
    readiness: { host: HOST, port: 0, ready: () => ({ ready: true }) },
  });
  t.is((await request(s.admin.port, '/healthz')).status, 200);
  t.is((await request(s.metrics.port, '/metrics')).status, 200);
  t.is((await request(s.readiness.port, '/healthz/ready')).status, 200);
  await s.close();
  for (const l of [s.admin, s.metrics, s.readiness]) await t.throwsAsync(() => request(l.port, '/'), { code: 'ECONNREFUSED' });
});

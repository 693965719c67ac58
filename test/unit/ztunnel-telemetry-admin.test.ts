import test from 'ava';
import http from 'node:http';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { AdminListenError, LogLevels, startAdminServer, startMetricsServer, startReadinessServer, startZtunnelServers, type ConfigDump, type Readiness } from '../../src/ztunnel/admin/index.ts';
import { TcpMetrics } from '../../src/ztunnel/telemetry/index.ts';

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

function levels(): LogLevels {
  return new LogLevels().register('xds', pino({ level: 'info' }, quiet())).register('hbone', pino({ level: 'info' }, quiet())).register('access', pino({ level: 'info' }, quiet()));
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

test('admin /logging shows levels and changes them at runtime', async (t) => {
  const lv = levels();
  const admin = await startAdminServer({ host: HOST, port: 0, configDump: dump, logLevels: lv });
  t.teardown(() => admin.close());
  const shown = JSON.parse((await request(admin.port, '/logging')).body) as { levels: Record<string, string> };
  t.deepEqual(shown.levels, { access: 'info', hbone: 'info', xds: 'info' });

  t.is((await request(admin.port, '/logging?level=debug', 'POST')).status, 200);
  t.deepEqual(lv.levels(), { access: 'debug', hbone: 'debug', xds: 'debug' });

  const r = await request(admin.port, '/logging?xds=trace&access=silent', 'POST');
  t.is(r.status, 200);
  t.deepEqual((JSON.parse(r.body) as { levels: Record<string, string> }).levels, { access: 'silent', hbone: 'debug', xds: 'trace' });

  await request(admin.port, '/logging?reset', 'POST');
  t.deepEqual(lv.levels(), { access: 'info', hbone: 'info', xds: 'info' });
  await request(admin.port, '/logging?trace=xds,hbone', 'POST');
  t.deepEqual(lv.levels(), { access: 'info', hbone: 'debug', xds: 'debug' });
});

test('admin /logging refuses bad requests and changes nothing', async (t) => {
  const lv = levels();
  const admin = await startAdminServer({ host: HOST, port: 0, configDump: dump, logLevels: lv });
  t.teardown(() => admin.close());
  const badLevel = await request(admin.port, '/logging?xds=debug&hbone=loud', 'POST');
  t.is(badLevel.status, 400);
  t.regex(badLevel.body, /unknown level "loud" for hbone/);
  const badComponent = await request(admin.port, '/logging?nosuch=debug', 'POST');
  t.is(badComponent.status, 400);
  t.regex(badComponent.body, /known: access, hbone, xds/);
  t.is((await request(admin.port, '/logging?level=debug')).status, 405, 'a GET never changes levels');
  t.is((await request(admin.port, '/logging', 'POST')).status, 400);
  t.deepEqual(lv.levels(), { access: 'info', hbone: 'info', xds: 'info' });
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

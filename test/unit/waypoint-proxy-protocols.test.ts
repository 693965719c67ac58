// What the waypoint speaks, end to end in one process: malformed HTTP, TCP passthrough, h2c and
// gRPC (trailers, trailers-only errors, bidirectional streams), appProtocol, WebSocket upgrades.
// Endpoints are real loopback HTTP/1.1, HTTP/2 and TCP servers.
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { buffer } from 'node:stream/consumers';
import test from 'ava';
import { bookinfo, deadPort, echoBackend, get, grpcBackend, grpcMesh, h1Client, h2Client, h2Request, key, readUntil, REVIEWS_VIP, route, rule, service, to, tunnel, waypoint, workload, wsRequest } from '../helpers/waypoint.ts';

test('malformed-http-gets-400', async (t) => {
  const { w } = await bookinfo(t);
  const s = tunnel(w);
  s.end('GET / HTTP/1.1\r\nHost: reviews\r\nthis is not a header\r\n\r\n');
  const reply = (await buffer(s)).toString();
  t.regex(reply, /^HTTP\/1\.1 400 /);
  t.is(w.records[0]!.status, 400);
  t.is(w.records[0]!.flags, 'DPE');
});

test('non-http-bytes-pass-through-as-tcp', async (t) => {
  const echo = await echoBackend(t);
  const w = waypoint(t, { services: [service('redis', '10.96.0.20')], workloads: [workload('redis-1', '10.0.0.9', { redis: echo })] });
  const s = tunnel(w);
  s.write('SET key value\r\n');
  const [chunk] = (await Promise.race([new Promise((resolve) => s.once('data', (c: Buffer) => resolve([c]))), sleep(2000).then(() => [Buffer.from('timeout')])])) as [Buffer];
  t.is(chunk.toString(), 'SET key value\r\n');
  t.is(w.dials[0]!.identity, 'spiffe://cluster.local/ns/shop/sa/redis');
  s.destroy();
});

test('tcp-passthrough-moves-on-from-an-unreachable-endpoint', async (t) => {
  const echo = await echoBackend(t);
  const dead = await deadPort();
  const w = waypoint(t, { services: [service('redis', '10.96.0.20')], workloads: [workload('redis-1', '10.0.0.9', { redis: dead }), workload('redis-2', '10.0.0.10', { redis: echo })] });
  for (let i = 0; i < 6; i++) {
    const s = tunnel(w);
    s.write(`SET k${i} v\r\n`);
    t.is(await readUntil(s, /\r\n$/), `SET k${i} v\r\n`);
    s.destroy();
  }
});

test('tcp-is-judged-by-the-authorizer-too', async (t) => {
  const echo = await echoBackend(t);
  const w = waypoint(t, {
    services: [service('redis', '10.96.0.20')],
    workloads: [workload('redis-1', '10.0.0.9', { redis: echo })],
    authorize: (req) => ({ allowed: req.method === 'GET', policy: 'shop/get-only' }),
  });
  const s = tunnel(w);
  s.write('SET key value\r\n');
  s.resume();
  await new Promise((resolve) => s.once('close', resolve));
  t.is(w.dials.length, 0);
});

test('tcp-streams-count-against-the-circuit-breaker', async (t) => {
  const echo = await echoBackend(t);
  const w = waypoint(t, { services: [service('redis', '10.96.0.20')], workloads: [workload('redis-1', '10.0.0.9', { redis: echo })] });
  const first = tunnel(w);
  first.write('PING\r\n');
  await readUntil(first, /PING/);
  w.resilience.get(key('redis'))!.maxAdmitted = 1;
  const second = tunnel(w);
  second.write('PING\r\n');
  second.resume();
  await new Promise((resolve) => second.once('close', resolve));
  t.is(w.dials.length, 1, 'the second stream was refused before any dial');
  first.destroy();
});

test('grpc-routes-by-method-and-passes-trailers-through', async (t) => {
  const { w, a, b } = await grpcMesh(t);
  const session = h2Client(t, w);
  const grpc = { 'content-type': 'application/grpc', te: 'trailers' };
  const list = await h2Request(session, '/shop.Reviews/List', grpc, 'req');
  t.is(list.status, 200);
  t.is(list.body, 'b /shop.Reviews/List');
  t.is(list.trailers['grpc-status'], '0');
  t.is(list.trailers['grpc-message'], 'ok');
  const getOne = await h2Request(session, '/shop.Reviews/Get', grpc, 'req');
  t.is(getOne.body, 'a /shop.Reviews/Get');
  t.is(a.seen[0]!.headers.te, 'trailers');
  t.is(b.seen[0]!.body, 'req');
  const rec = w.records.find((r) => r.route === 'GRPCRoute/shop/by-method/0')!;
  t.is(rec.req.protocol, 'grpc');
  t.is(rec.req.version, '2');
  t.is(rec.grpcStatus, '0');
});

test('grpc-trailers-only-errors-pass-through', async (t) => {
  const { w } = await grpcMesh(t);
  const r = await h2Request(h2Client(t, w), '/fail/x', { 'content-type': 'application/grpc', te: 'trailers' });
  t.is(r.status, 200);
  t.is(r.headers['grpc-status'], '5');
  t.is(w.records[0]!.grpcStatus, '5');
});

test('grpc-clients-get-local-replies-as-grpc-status', async (t) => {
  const deny = waypoint(t, { services: [service('reviews', REVIEWS_VIP)], workloads: [], authorize: () => ({ allowed: false, policy: 'shop/deny' }) });
  const r = await h2Request(h2Client(t, deny), '/shop.Reviews/Get', { 'content-type': 'application/grpc' });
  t.is(r.status, 200);
  t.is(r.headers['grpc-status'], '7');
  t.is(deny.records[0]!.flags, 'RBAC');
});

test('grpc-bidirectional-streams-flow-both-ways-before-the-request-ends', async (t) => {
  const { w } = await grpcMesh(t);
  const stream = h2Client(t, w).request({ ':method': 'POST', ':path': '/shop.Echo/Chat', 'content-type': 'application/grpc', te: 'trailers' });
  const next = () => new Promise<string>((resolve) => stream.once('data', (c: Buffer) => resolve(c.toString())));
  stream.write('ping-1');
  t.is(await next(), 'ping-1');
  stream.write('ping-2');
  t.is(await next(), 'ping-2');
  const trailers = new Promise<Record<string, unknown>>((resolve) => stream.once('trailers', resolve));
  stream.end();
  stream.resume();
  t.is((await trailers)['grpc-status'], '0');
});

test('h2c-http-requests-reuse-one-upstream-session', async (t) => {
  const { w, a } = await grpcMesh(t);
  const session = h2Client(t, w);
  const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => h2Request(session, `/plain/${i}`, { ':method': 'GET' })));
  t.true(replies.every((r) => r.status === 200));
  t.is(a.seen.length, 20);
  t.is(w.dials.length, 1);
});

test('app-protocol-http2-makes-http1-clients-reach-an-h2c-endpoint', async (t) => {
  const h2 = await grpcBackend(t, 'h2');
  const w1 = workload('h2-1', '10.0.0.60', { reviews: h2.port });
  w1.services[key('reviews')]!.ports[0]!.appProtocol = 'http2';
  const w = waypoint(t, { services: [service('reviews', REVIEWS_VIP)], workloads: [w1] });
  const r = await get(h1Client(w), '/plain/x', { method: 'POST', body: 'hello' });
  t.is(r.status, 200);
  t.is(r.body, 'h2 /plain/x');
  t.is(h2.seen[0]!.body, 'hello');
  t.is(w.records[0]!.grpcStatus, '0', 'trailers from the HTTP/2 endpoint are read');
});

test('websocket-upgrades-are-routed-then-tunnelled', async (t) => {
  const { w, v1, v2 } = await bookinfo(t, {
    routes: [route('reviews', rule('ws', { matches: [{ path: null, method: '', headers: [{ type: 'EXACT', name: 'end-user', value: 'jason' }], queryParams: [], grpc: null }], backends: [to('reviews-v2')] }))],
  });
  const s = tunnel(w);
  s.write(wsRequest('end-user: jason\r\n'));
  const head = await readUntil(s, /\r\n\r\n/);
  t.regex(head, /^HTTP\/1\.1 101 /);
  t.regex(head, /x-backend: v2/);
  s.write('hello');
  t.is(await readUntil(s, /HELLO/), 'HELLO');
  t.is(v1.seen.length, 0);
  t.is(v2.seen[0]!.headers.upgrade, 'websocket');
  s.end();
  for (let i = 0; i < 50 && w.records.length === 0; i++) await sleep(10);
  t.is(w.records[0]!.status, 101);
  t.is(w.records[0]!.flags, '-');
  t.is(w.records[0]!.requestBytes, 5);
});

test('websocket-upgrades-meet-authorization', async (t) => {
  const { w, v1, v2 } = await bookinfo(t, { authorize: () => ({ allowed: false, policy: 'shop/deny-all' }) });
  const s = tunnel(w);
  s.write(wsRequest());
  const reply = await readUntil(s, /RBAC: access denied/);
  t.regex(reply, /^HTTP\/1\.1 403 /);
  t.is(v1.seen.length + v2.seen.length, 0);
});

test('an-h2c-upgrade-is-served-as-a-plain-request', async (t) => {
  const { v1, v2, agent } = await bookinfo(t);
  const r = await get(agent, '/', { headers: { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAAQAAP__' } });
  t.is(r.status, 200);
  const seen = [...v1.seen, ...v2.seen][0]!;
  t.is(seen.headers.upgrade, undefined);
  t.is(seen.headers['http2-settings'], undefined);
});

test('a-port-declared-tcp-is-not-sniffed-so-server-first-protocols-start-at-once', async (t) => {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end('220 ready\r\n');
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const smtp = service('smtp', '10.96.0.25');
  smtp.ports[0]!.appProtocol = 'tcp';
  const w = waypoint(t, { services: [smtp], workloads: [workload('smtp-1', '10.0.0.25', { smtp: port })], options: { detectTimeoutMs: 2000 } });
  const start = performance.now();
  const s = tunnel(w);
  t.is(await readUntil(s, /\r\n$/), '220 ready\r\n');
  t.true(performance.now() - start < 500, `banner after ${(performance.now() - start).toFixed(0)} ms`);
  s.destroy();
});

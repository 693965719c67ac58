// The waypoint's request path under failure, end to end in one process: authorization, rate
// limit, fault and circuit breaker answers, retries with replayed bodies, timeouts, outlier
// ejection, connection budgets, clients that leave, drain. Endpoints are real loopback servers.
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { bookinfo, CLIENT, deadPort, get, grpcMesh, h1Backend, h1Client, h2Client, h2Request, key, REVIEWS_VIP, route, rule, service, to, tunnel, waypoint, workload } from '../helpers/waypoint.ts';

test('authorization-deny-answers-403-rbac-before-anything-else', async (t) => {
  const { w, v1, v2, agent } = await bookinfo(t, { authorize: (req) => ({ allowed: req.method === 'GET', policy: 'shop/get-only' }) });
  const denied = await get(agent, '/', { method: 'POST', body: 'x' });
  t.is(denied.status, 403);
  t.is(denied.body, 'RBAC: access denied');
  t.is((await get(agent, '/')).status, 200);
  t.is(v1.seen.length + v2.seen.length, 1);
  t.is(w.records[0]!.flags, 'RBAC');
  t.is(w.records[0]!.req.source.principal, CLIENT);
});

test('rate-limit-fault-and-circuit-breaker-answer-with-their-flags', async (t) => {
  const { w, agent } = await bookinfo(t);
  const svc = (): ReturnType<typeof w.resilience.get> => w.resilience.get(key('reviews'));
  await get(agent, '/');
  svc()!.tokens = 0;
  const limited = await get(agent, '/');
  t.is(limited.status, 429);
  svc()!.tokens = Infinity;
  svc()!.faultResult = { delayMs: 0, abortStatus: 418 };
  t.is((await get(agent, '/')).status, 418);
  svc()!.faultResult = { delayMs: 100, abortStatus: 0 };
  const delayed = await get(agent, '/');
  t.is(delayed.status, 200);
  t.true(delayed.ms >= 95);
  svc()!.faultResult = { delayMs: 0, abortStatus: 0 };
  svc()!.maxAdmitted = 0;
  t.is((await get(agent, '/')).status, 503);
  t.deepEqual(
    w.records.map((r) => `${r.status} ${r.flags}`),
    ['200 -', '429 RL', '418 FI', '200 DI', '503 UO'],
  );
});

test('retry-turns-a-backend-failing-every-other-request-into-full-success', async (t) => {
  const { w, v1, agent } = await bookinfo(
    t,
    { routes: [route('reviews', rule('HTTPRoute/shop/retry/0', { backends: [to('reviews-v1')], retry: { attempts: 2, codes: [503], backoffMs: 5 } }))] },
    {
      v1: (_req, res, n) => {
        res.writeHead(n % 2 === 1 ? 503 : 200);
        res.end(n % 2 === 1 ? 'unavailable' : 'ok');
      },
    },
  );
  for (let i = 0; i < 50; i++) {
    const r = await get(agent, '/', { method: 'POST', body: 'replay-me' });
    t.is(r.status, 200);
    t.is(r.body, 'ok');
  }
  t.is(v1.seen.length, 100);
  t.true(v1.seen.every((s) => s.body === 'replay-me'), 'each retry replays the request body');
  const outcomes = w.resilience.get(key('reviews-v1'))!.outcomes;
  t.is(outcomes.filter(([, ok]) => !ok).length, 50, 'outlier detection hears of every failed attempt');
});

test('without-retry-the-failure-reaches-the-client', async (t) => {
  const { agent } = await bookinfo(t, { routes: [route('reviews', rule('r', { backends: [to('reviews-v1')] }))] }, { v1: (_q, res) => res.writeHead(503).end('no') });
  const r = await get(agent, '/');
  t.is(r.status, 503);
  t.is(r.body, 'no');
});

test('connection-failures-are-retried-on-another-endpoint', async (t) => {
  const ok = await h1Backend(t, 'ok');
  const dead = await deadPort();
  const w = waypoint(t, {
    services: [service('reviews', REVIEWS_VIP)],
    workloads: [workload('reviews-1', '10.0.0.1', { reviews: dead }), workload('reviews-2', '10.0.0.2', { reviews: ok.port })],
    routes: [route('reviews', rule('r', { backends: [to('reviews')], retry: { attempts: 1, codes: [], backoffMs: 0 } }))],
  });
  const agent = h1Client(w);
  for (let i = 0; i < 10; i++) t.is((await get(agent, '/')).status, 200);
  const outcomes = w.resilience.get(key('reviews'))!.outcomes;
  t.true(outcomes.some(([k, good]) => k === `10.0.0.1:${dead}` && !good));
});

test('connection-failures-are-retried-without-a-retry-policy', async (t) => {
  const ok = await h1Backend(t, 'ok');
  const dead = await deadPort();
  const w = waypoint(t, {
    services: [service('reviews', REVIEWS_VIP)],
    workloads: [workload('reviews-1', '10.0.0.1', { reviews: dead }), workload('reviews-2', '10.0.0.2', { reviews: ok.port })],
  });
  const agent = h1Client(w);
  for (let i = 0; i < 10; i++) t.is((await get(agent, '/', { method: 'POST', body: 'b' })).status, 200);
  t.is(ok.seen.length, 10);
});

test('an-unreachable-only-endpoint-answers-503-UF', async (t) => {
  const dead = await deadPort();
  const w = waypoint(t, { services: [service('reviews', REVIEWS_VIP)], workloads: [workload('reviews-1', '10.0.0.1', { reviews: dead })] });
  const r = await get(h1Client(w), '/');
  t.is(r.status, 503);
  t.is(w.records[0]!.flags, 'UF');
});

test('a-body-beyond-the-replay-limit-streams-through-once-without-retry', async (t) => {
  const big = Buffer.alloc(2 * 1024 * 1024, 'x').toString();
  const { v1, agent } = await bookinfo(
    t,
    { routes: [route('reviews', rule('r', { backends: [to('reviews-v1')], retry: { attempts: 3, codes: [503], backoffMs: 0 } }))] },
    { v1: (_q, res) => res.writeHead(503).end('busy') },
  );
  const r = await get(agent, '/upload', { method: 'POST', body: big });
  t.is(r.status, 503);
  t.is(v1.seen.length, 1);
  t.is(v1.seen[0]!.body.length, big.length);
  const small = await get(agent, '/upload', { method: 'POST', body: 'small' });
  t.is(small.status, 503);
  t.is(v1.seen.length, 5, 'a small body is retried');
});

test('backend-request-timeout-of-200ms-answers-504-within-50ms', async (t) => {
  const { w, agent } = await bookinfo(
    t,
    { routes: [route('reviews', rule('r', { backends: [to('reviews-v1')], timeouts: { requestMs: 0, backendRequestMs: 200 } }))] },
    { v1: (_q, res) => setTimeout(() => res.end('late'), 1000).unref() },
  );
  const r = await get(agent, '/');
  t.is(r.status, 504);
  t.is(r.body, 'upstream request timeout');
  t.true(Math.abs(r.ms - 200) <= 50, `answered after ${r.ms.toFixed(0)} ms`);
  t.is(w.records[0]!.flags, 'UT');
});

test('request-timeout-bounds-all-retries-together', async (t) => {
  const { agent, v1 } = await bookinfo(
    t,
    { routes: [route('reviews', rule('r', { backends: [to('reviews-v1')], timeouts: { requestMs: 300, backendRequestMs: 100 }, retry: { attempts: 10, codes: [504], backoffMs: 0 } }))] },
    { v1: (_q, res) => setTimeout(() => res.end('late'), 1000).unref() },
  );
  const r = await get(agent, '/');
  t.is(r.status, 504);
  t.true(Math.abs(r.ms - 300) <= 50, `answered after ${r.ms.toFixed(0)} ms`);
  // 100 ms attempts in a 300 ms budget: three, and a fourth when the third ends a hair early.
  t.true(v1.seen.length >= 2 && v1.seen.length <= 4, `${v1.seen.length} attempts`);
});

test('attempt-timeouts-cover-a-slow-connect-for-both-protocols', async (t) => {
  const v1 = await h1Backend(t, 'v1');
  const slowConnect = { connect: () => new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('too late')), 1000).unref()) };
  const w = waypoint(t, {
    services: [service('reviews', REVIEWS_VIP), service('reviews-v1', '10.96.0.11')],
    workloads: [workload('reviews-v1-1', '10.0.0.1', { reviews: v1.port, 'reviews-v1': v1.port })],
    routes: [route('reviews', rule('r', { backends: [to('reviews-v1')], timeouts: { requestMs: 0, backendRequestMs: 100 } }))],
    options: { upstream: slowConnect },
  });
  const h1 = await get(h1Client(w), '/');
  t.is(h1.status, 504);
  t.true(h1.ms < 200, `HTTP/1.1 answered after ${h1.ms.toFixed(0)} ms`);
  const h2 = await h2Request(h2Client(t, w), '/x', { ':method': 'GET' });
  t.is(h2.status, 504);
  t.true(h2.ms < 200, `HTTP/2 answered after ${h2.ms.toFixed(0)} ms`);
});

test('grpc-attempt-timeouts-are-retried-then-answered-as-unavailable', async (t) => {
  const { w, a } = await grpcMesh(t);
  w.routes.set(key('reviews'), route('reviews', rule('GRPCRoute/shop/slow/0', { kind: 'GRPC', backends: [to('grpc-a')], timeouts: { requestMs: 0, backendRequestMs: 100 }, retry: { attempts: 1, codes: [504], backoffMs: 0 } })));
  const r = await h2Request(h2Client(t, w), '/slow/x', { 'content-type': 'application/grpc', te: 'trailers' }, 'msg');
  t.is(r.status, 200);
  t.is(r.headers['grpc-status'], '14');
  t.true(Math.abs(r.ms - 200) <= 50, `answered after ${r.ms.toFixed(0)} ms`);
  t.is(a.seen.length, 2);
  t.is(w.records[0]!.flags, 'UT');
  t.is(w.records[0]!.grpcStatus, '14');
});

test('ejected-endpoints-are-skipped', async (t) => {
  const { w, v1, v2, agent } = await bookinfo(t);
  await get(agent, '/');
  w.resilience.get(key('reviews'))!.ejectedKeys.add(`10.0.0.1:${v1.port}`);
  const before = v1.seen.length;
  for (let i = 0; i < 10; i++) await get(agent, '/');
  t.is(v1.seen.length, before);
  t.is(v2.seen.length, 10 + 1 - before);
});

test('max-requests-per-connection-retires-upstream-connections', async (t) => {
  const { w, v1, agent } = await bookinfo(t, { routes: [route('reviews', rule('r', { backends: [to('reviews-v1')] }))] });
  await get(agent, '/');
  w.resilience.get(key('reviews-v1'))!.maxRequestsPerConnection = 2;
  for (let i = 0; i < 6; i++) await get(agent, '/');
  const conns = new Set(v1.seen.map((s) => s.connection));
  t.true(conns.size >= 3, `${conns.size} connections for 7 requests`);
});

test('max-requests-per-connection-retires-http2-sessions-too', async (t) => {
  const { w, a } = await grpcMesh(t);
  const session = h2Client(t, w);
  await h2Request(session, '/shop.Reviews/Get', { 'content-type': 'application/grpc' });
  w.resilience.get(key('grpc-a'))!.maxRequestsPerConnection = 2;
  for (let i = 0; i < 6; i++) t.is((await h2Request(session, '/shop.Reviews/Get', { 'content-type': 'application/grpc' })).trailers['grpc-status'], '0');
  const sessions = new Set(a.seen.map((s) => s.connection));
  t.true(sessions.size >= 3, `${sessions.size} sessions for 7 requests`);
});

test('a-client-that-goes-away-cancels-the-upstream-request', async (t) => {
  let aborted!: () => void;
  const upstreamClosed = new Promise<void>((resolve) => (aborted = resolve));
  const { w } = await bookinfo(t, { routes: [route('reviews', rule('r', { backends: [to('reviews-v1')] }))] }, { v1: (_q, res) => res.once('close', aborted) });
  const s = tunnel(w);
  s.write(`GET / HTTP/1.1\r\nHost: reviews\r\n\r\n`);
  await sleep(50);
  s.destroy();
  await upstreamClosed;
  for (let i = 0; i < 20 && w.records.length === 0; i++) await sleep(10);
  t.is(w.records[0]!.flags, 'DC');
});

test('drain-lets-requests-in-flight-finish-and-refuses-new-streams', async (t) => {
  const { w: h1w } = await bookinfo(t, { routes: [route('reviews', rule('r', { backends: [to('reviews-v1')] }))] }, { v1: (_q, res) => setTimeout(() => res.end('done'), 150).unref() });
  const h1InFlight = get(h1Client(h1w), '/');
  await sleep(30);
  const h1Drained = h1w.proxy.drain(2000);
  const h1 = await h1InFlight;
  t.is(h1.body, 'done');
  t.is(h1.headers.connection, 'close', 'HTTP/1.1: the connection closes after the response');
  await h1Drained;

  const { w } = await grpcMesh(t);
  const session = h2Client(t, w);
  const goaway = once(session, 'goaway');
  const h2InFlight = h2Request(session, '/delay/x', { 'content-type': 'application/grpc' });
  await sleep(30);
  const drained = w.proxy.drain(2000);
  await goaway;
  const h2 = await h2InFlight;
  t.is(h2.trailers['grpc-status'], '0', 'HTTP/2: GOAWAY, and the stream in flight completes');
  await drained;
  const late = tunnel(w);
  await new Promise((resolve) => late.once('close', resolve));
  t.true(late.destroyed, 'a stream after the drain is refused');
});

test('until-its-config-has-arrived-the-waypoint-refuses-every-stream', async (t) => {
  let ready = false;
  const { w, v1, v2 } = await bookinfo(t, { options: { ready: () => ready } });
  const early = tunnel(w);
  early.write('GET / HTTP/1.1\r\nHost: reviews\r\n\r\n');
  early.resume();
  await new Promise((resolve) => early.once('close', resolve));
  t.is(v1.seen.length + v2.seen.length, 0);
  t.is(w.authzTargets.length, 0, 'nothing was judged by a policy set not yet complete');
  ready = true;
  t.is((await get(h1Client(w), '/')).status, 200);
});

// The waypoint's L7 engine end to end in one process: clients speak HTTP/1.1 and h2c through
// in-memory tunnels into L7Proxy.handle(), endpoints are real loopback HTTP/1.1, HTTP/2 (gRPC
// shaped) and TCP servers. What is checked is what a client or a backend would notice.
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { buffer } from 'node:stream/consumers';
import type { Backend as RouteBackend } from '../../src/xds/routes.ts';
import {
  CLIENT,
  deadPort,
  echoBackend,
  get,
  grpcBackend,
  h1Backend,
  h1Client,
  h2Client,
  h2Request,
  key,
  PORT,
  route,
  rule,
  service,
  tunnel,
  waypoint,
  workload,
  type Backend,
  type Waypoint,
  type WaypointSetup,
} from '../helpers/waypoint.ts';

const REVIEWS_VIP = '10.96.0.10';

/** reviews (VIP) backed by v1 and v2; reviews-v1 / reviews-v2 / mirror each backed by one pod. */
async function bookinfo(t: ExecutionContext, more: Partial<WaypointSetup> = {}, handlers: { v1?: Parameters<typeof h1Backend>[2]; v2?: Parameters<typeof h1Backend>[2] } = {}) {
  const v1 = await h1Backend(t, 'v1', handlers.v1);
  const v2 = await h1Backend(t, 'v2', handlers.v2);
  const mirror = await h1Backend(t, 'mirror');
  const w = waypoint(t, {
    services: [service('reviews', REVIEWS_VIP), service('reviews-v1', '10.96.0.11'), service('reviews-v2', '10.96.0.12'), service('mirror', '10.96.0.13')],
    workloads: [
      workload('reviews-v1-1', '10.0.0.1', { reviews: v1.port, 'reviews-v1': v1.port }),
      workload('reviews-v2-1', '10.0.0.2', { reviews: v2.port, 'reviews-v2': v2.port }),
      workload('mirror-1', '10.0.0.3', { mirror: mirror.port }),
    ],
    ...more,
  });
  return { w, v1, v2, mirror, agent: h1Client(w) };
}

const to = (svc: string, weight = 1): RouteBackend => ({ service: key(svc), port: PORT, weight });

async function many(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

test('no-route-sends-to-the-service-endpoints-and-records-telemetry', async (t) => {
  const { w, v1, v2, agent } = await bookinfo(t);
  for (let i = 0; i < 20; i++) t.is((await get(agent, `/r${i}`)).status, 200);
  t.true(v1.seen.length > 0 && v2.seen.length > 0, 'both endpoints of the Service take requests');
  t.is(v1.seen.length + v2.seen.length, 20);
  const rec = w.records.at(-1)!;
  t.is(rec.status, 200);
  t.is(rec.flags, '-');
  t.is(rec.req.source.namespace, 'shop');
  t.is(rec.req.destination.service, key('reviews'));
  t.is(rec.destination?.service, key('reviews'));
  t.true(rec.responseBytes > 0);
  t.deepEqual(w.authzTargets[0], ['Gateway/shop/waypoint', `Service/${key('reviews')}`]);
  t.regex(w.dials[0]!.identity, /^spiffe:\/\/cluster\.local\/ns\/shop\/sa\/reviews-v[12]$/);
  t.true(w.dials.length <= 16, 'HTTP/1.1 connections to endpoints are reused');
});

/** mulberry32: a small seeded PRNG, so that statistical tests give the same draw every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

test('weighted-split-90-10-over-1000-requests-lands-within-3-percent', async (t) => {
  // Math.random would miss ±3 % about once in 600 runs (σ ≈ 0.95 %); a seeded draw does not flake.
  const { v1, v2, agent } = await bookinfo(t, { routes: [route('reviews', rule('HTTPRoute/shop/split/0', { backends: [to('reviews-v1', 90), to('reviews-v2', 10)] }))], options: { random: seeded(13) } });
  await many(1000, 16, async () => {
    if ((await get(agent, '/')).status !== 200) throw new Error('request failed');
  });
  t.is(v1.seen.length + v2.seen.length, 1000);
  t.true(Math.abs(v1.seen.length - 900) <= 30, `v1 got ${v1.seen.length}`);
  t.true(Math.abs(v2.seen.length - 100) <= 30, `v2 got ${v2.seen.length}`);
});

test('header-match-routes-to-v2-only', async (t) => {
  const { w, v1, v2, agent } = await bookinfo(t, {
    routes: [
      route(
        'reviews',
        rule('HTTPRoute/shop/jason/0', { matches: [{ path: null, method: '', headers: [{ type: 'EXACT', name: 'end-user', value: 'jason' }], queryParams: [], grpc: null }], backends: [to('reviews-v2')] }),
        rule('HTTPRoute/shop/jason/1', { backends: [to('reviews-v1')] }),
      ),
    ],
  });
  for (let i = 0; i < 20; i++) t.is((await get(agent, '/', { headers: { 'end-user': 'jason' } })).body, 'v2 /');
  t.is(v1.seen.length, 0);
  for (let i = 0; i < 5; i++) t.is((await get(agent, '/')).body, 'v1 /');
  t.is(v2.seen.length, 20);
  t.is(w.records.at(-1)!.route, 'HTTPRoute/shop/jason/1');
});

test('mirror-receives-copies-while-the-client-sees-only-the-primary', async (t) => {
  const { v1, mirror, agent } = await bookinfo(t, {
    routes: [
      route(
        'reviews',
        rule('HTTPRoute/shop/mirror/0', {
          filters: [{ type: 'REQUEST_MIRROR', requestMirror: { backend: to('mirror'), percent: 100 }, requestHeaderModifier: null, responseHeaderModifier: null, urlRewrite: null, requestRedirect: null }],
          backends: [to('reviews-v1')],
        }),
      ),
    ],
  });
  for (let i = 0; i < 10; i++) {
    const r = await get(agent, `/m${i}`, { method: 'POST', body: `payload-${i}` });
    t.is(r.body, `v1 /m${i}`);
    t.is(r.headers['x-backend'], 'v1');
  }
  for (let i = 0; i < 50 && mirror.seen.length < 10; i++) await sleep(10);
  t.is(v1.seen.length, 10);
  t.deepEqual(
    mirror.seen.map((s) => `${s.url} ${s.body}`).sort(),
    v1.seen.map((s) => `${s.url} ${s.body}`).sort(),
  );
});

test('a-dead-or-silent-mirror-never-affects-the-client', async (t) => {
  const dead = await deadPort();
  const silent = await h1Backend(t, 'silent', () => {});
  const v1 = await h1Backend(t, 'v1');
  const mirrorTo = (svc: string) => ({ type: 'REQUEST_MIRROR' as const, requestMirror: { backend: to(svc), percent: 100 }, requestHeaderModifier: null, responseHeaderModifier: null, urlRewrite: null, requestRedirect: null });
  const w = waypoint(t, {
    services: [service('reviews', REVIEWS_VIP), service('dead', '10.96.0.41'), service('silent', '10.96.0.42'), service('reviews-v1', '10.96.0.11')],
    workloads: [workload('dead-1', '10.0.0.41', { dead }), workload('silent-1', '10.0.0.42', { silent: silent.port }), workload('reviews-v1-1', '10.0.0.1', { 'reviews-v1': v1.port })],
    routes: [route('reviews', rule('r', { filters: [mirrorTo('dead'), mirrorTo('silent')], backends: [to('reviews-v1')] }))],
  });
  const agent = h1Client(w);
  for (let i = 0; i < 5; i++) {
    const r = await get(agent, '/', { method: 'POST', body: 'x' });
    t.is(r.status, 200);
    t.true(r.ms < 200, `answered after ${r.ms.toFixed(0)} ms`);
  }
  t.is(v1.seen.length, 5);
  for (let i = 0; i < 50 && silent.seen.length < 5; i++) await sleep(10);
  t.is(silent.seen.length, 5);
  t.is(w.records.length, 5);
  t.true(w.records.every((r) => r.status === 200 && r.destination?.service === key('reviews-v1')));
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

test('an-unreachable-only-endpoint-answers-503-UF', async (t) => {
  const dead = await deadPort();
  const w = waypoint(t, { services: [service('reviews', REVIEWS_VIP)], workloads: [workload('reviews-1', '10.0.0.1', { reviews: dead })] });
  const r = await get(h1Client(w), '/');
  t.is(r.status, 503);
  t.is(w.records[0]!.flags, 'UF');
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

test('an-unresolved-backend-gets-its-share-answered-500', async (t) => {
  const { w, v1, agent } = await bookinfo(t, { routes: [route('reviews', rule('r', { backends: [to('reviews-v1', 50), { service: '', port: PORT, weight: 50 }] }))], options: { random: seeded(7) } });
  const statuses = new Map<number, number>();
  for (let i = 0; i < 100; i++) {
    const s = (await get(agent, '/')).status;
    statuses.set(s, (statuses.get(s) ?? 0) + 1);
  }
  t.deepEqual([...statuses.keys()].sort(), [200, 500]);
  t.is(v1.seen.length, statuses.get(200) ?? 0);
  t.true(w.records.some((r) => r.status === 500 && r.flags === 'NR'));
  const none = await bookinfo(t, { routes: [route('reviews', rule('r', { backends: [] }))] });
  t.is((await get(none.agent, '/')).status, 500);
});

test('redirect-answers-3xx-with-location-and-never-reaches-a-backend', async (t) => {
  const { v1, v2, agent } = await bookinfo(t, {
    routes: [
      route(
        'reviews',
        rule('r', {
          filters: [{ type: 'REQUEST_REDIRECT', requestRedirect: { scheme: 'https', hostname: 'example.com', path: { type: 'REPLACE_FULL_PATH', value: '/new' }, port: 0, statusCode: 301 }, requestHeaderModifier: null, responseHeaderModifier: null, urlRewrite: null, requestMirror: null }],
          backends: [to('reviews-v1')],
        }),
      ),
    ],
  });
  const r = await get(agent, '/old?x=1');
  t.is(r.status, 301);
  t.is(r.headers.location, 'https://example.com/new?x=1');
  t.is(v1.seen.length + v2.seen.length, 0);
});

test('url-rewrite-changes-host-and-path-prefix', async (t) => {
  const { v1, agent } = await bookinfo(t, {
    routes: [
      route(
        'reviews',
        rule('r', {
          matches: [{ path: { type: 'PATH_PREFIX', value: '/api' }, method: '', headers: [], queryParams: [], grpc: null }],
          filters: [{ type: 'URL_REWRITE', urlRewrite: { hostname: 'internal.reviews', path: { type: 'REPLACE_PREFIX_MATCH', value: '/v2' } }, requestHeaderModifier: null, responseHeaderModifier: null, requestRedirect: null, requestMirror: null }],
          backends: [to('reviews-v1')],
        }),
      ),
    ],
  });
  t.is((await get(agent, '/api/items?id=3')).status, 200);
  t.is(v1.seen[0]!.url, '/v2/items?id=3');
  t.is(v1.seen[0]!.headers.host, 'internal.reviews');
});

test('header-modifiers-change-request-and-response-headers', async (t) => {
  const { v1, agent } = await bookinfo(t, {
    routes: [
      route(
        'reviews',
        rule('r', {
          filters: [
            { type: 'REQUEST_HEADER_MODIFIER', requestHeaderModifier: { set: [{ name: 'x-set', value: 'yes' }], add: [{ name: 'x-add', value: 'two' }], remove: ['x-drop'] }, responseHeaderModifier: null, urlRewrite: null, requestRedirect: null, requestMirror: null },
            { type: 'RESPONSE_HEADER_MODIFIER', responseHeaderModifier: { set: [{ name: 'x-backend', value: 'hidden' }], add: [{ name: 'x-via', value: 'waypoint' }], remove: ['content-type'] }, requestHeaderModifier: null, urlRewrite: null, requestRedirect: null, requestMirror: null },
          ],
          backends: [to('reviews-v1')],
        }),
      ),
    ],
  });
  const r = await get(agent, '/', { headers: { 'x-set': 'no', 'x-add': 'one', 'x-drop': 'bye', connection: 'keep-alive, x-hop', 'x-hop': 'only to the waypoint' } });
  const h = v1.seen[0]!.headers;
  t.is(h['x-hop'], undefined, 'fields named by Connection stop at the waypoint');
  t.is(h['x-set'], 'yes');
  t.is(h['x-add'], 'one, two');
  t.is(h['x-drop'], undefined);
  t.is(r.headers['x-backend'], 'hidden');
  t.is(r.headers['x-via'], 'waypoint');
  t.is(r.headers['content-type'], undefined);
});

test('traceparent-keeps-the-trace-and-gets-a-new-parent', async (t) => {
  const { w, v1, agent } = await bookinfo(t);
  const incoming = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  await get(agent, '/', { headers: { traceparent: incoming } });
  const sent = String(v1.seen[0]?.headers.traceparent ?? w.records[0]!.traceparent);
  t.regex(sent, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  t.not(sent, incoming);
  await get(agent, '/');
  t.regex(w.records[1]!.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  t.is(w.records[0]!.traceparent, sent);
});

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

test('a-pod-dialled-directly-gets-that-pod-only-without-routes', async (t) => {
  const { w, v1, v2 } = await bookinfo(t, { routes: [route('reviews', rule('r', { backends: [to('reviews-v2')] }))] });
  const agent = h1Client(w, { ...w.meta, dst: { ip: '10.0.0.1', port: v1.port } });
  for (let i = 0; i < 5; i++) t.is((await get(agent, '/')).body, 'v1 /');
  t.is(v2.seen.length, 0);
  t.deepEqual(w.authzTargets.at(-1), ['Gateway/shop/waypoint']);
});

async function grpcMesh(t: ExecutionContext): Promise<{ w: Waypoint; a: Backend; b: Backend }> {
  const a = await grpcBackend(t, 'a');
  const b = await grpcBackend(t, 'b');
  const w = waypoint(t, {
    services: [service('reviews', REVIEWS_VIP), service('grpc-a', '10.96.0.31'), service('grpc-b', '10.96.0.32')],
    workloads: [workload('grpc-a-1', '10.0.0.31', { reviews: a.port, 'grpc-a': a.port }), workload('grpc-b-1', '10.0.0.32', { 'grpc-b': b.port })],
    routes: [
      route(
        'reviews',
        rule('GRPCRoute/shop/by-method/0', { kind: 'GRPC', matches: [{ path: null, method: '', headers: [], queryParams: [], grpc: { type: 'EXACT', service: 'shop.Reviews', method: 'List' } }], backends: [to('grpc-b')] }),
        rule('GRPCRoute/shop/by-method/1', { kind: 'GRPC', backends: [to('grpc-a')] }),
      ),
    ],
  });
  return { w, a, b };
}

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

test('h2c-http-requests-reuse-one-upstream-session', async (t) => {
  const { w, a } = await grpcMesh(t);
  const session = h2Client(t, w);
  const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => h2Request(session, `/plain/${i}`, { ':method': 'GET' })));
  t.true(replies.every((r) => r.status === 200));
  t.is(a.seen.length, 20);
  t.is(w.dials.length, 1);
});

test('drain-lets-requests-in-flight-finish-and-refuses-new-streams', async (t) => {
  const { w } = await grpcMesh(t);
  const slow = await h1Backend(t, 'slow', (_q, res) => setTimeout(() => res.end('done'), 150).unref());
  w.state.replace(
    'type.googleapis.com/mesh.config.v1.Workload',
    [...w.state.workloads.entries(), ['slow', workload('slow-1', '10.0.0.50', { reviews: slow.port })]],
    true,
  );
  const agent = h1Client(w, { ...w.meta, dst: { ip: '10.0.0.50', port: slow.port } });
  const inFlight = get(agent, '/');
  await sleep(30);
  const drained = w.proxy.drain(2000);
  const r = await inFlight;
  t.is(r.status, 200);
  t.is(r.headers.connection, 'close');
  await drained;
  const late = tunnel(w);
  await new Promise((resolve) => late.once('close', resolve));
  t.pass();
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

/** Reads from a raw stream until `pattern` shows up in what has arrived. */
function readUntil(s: import('node:stream').Duplex, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (c: Buffer): void => {
      got += c.toString();
      if (pattern.test(got)) {
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error(`closed after ${JSON.stringify(got)}`)));
  });
}

const wsRequest = (extra = ''): string => `GET /ws HTTP/1.1\r\nHost: reviews\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

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

test('the-normalized-path-is-routed-and-forwarded', async (t) => {
  const { v1, v2, agent } = await bookinfo(t, {
    routes: [route('reviews', rule('admin', { matches: [{ path: { type: 'PATH_PREFIX', value: '/admin' }, method: '', headers: [], queryParams: [], grpc: null }], backends: [to('reviews-v2')] }), rule('rest', { backends: [to('reviews-v1')] }))],
  });
  t.is((await get(agent, '/public/..//admin/%75sers?x=1')).status, 200);
  t.is(v1.seen.length, 0);
  t.is(v2.seen[0]!.url, '/admin/users?x=1');
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

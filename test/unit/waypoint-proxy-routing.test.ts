// The waypoint's routing end to end in one process: Gateway API matches, weighted backends,
// filters, mirrors, pods dialled directly, trace context. Clients speak HTTP/1.1 through
// in-memory tunnels into L7Proxy; endpoints are real loopback servers.
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { bookinfo, deadPort, get, h1Backend, h1Client, key, many, PORT, REVIEWS_VIP, route, rule, seeded, service, to, waypoint, workload } from '../helpers/waypoint.ts';

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

test('the-normalized-path-is-routed-and-forwarded', async (t) => {
  const { v1, v2, agent } = await bookinfo(t, {
    routes: [route('reviews', rule('admin', { matches: [{ path: { type: 'PATH_PREFIX', value: '/admin' }, method: '', headers: [], queryParams: [], grpc: null }], backends: [to('reviews-v2')] }), rule('rest', { backends: [to('reviews-v1')] }))],
  });
  t.is((await get(agent, '/public/..//admin/%75sers?x=1')).status, 200);
  t.is(v1.seen.length, 0);
  t.is(v2.seen[0]!.url, '/admin/users?x=1');
});

test('a-pod-dialled-directly-gets-that-pod-only-without-routes', async (t) => {
  const { w, v1, v2 } = await bookinfo(t, { routes: [route('reviews', rule('r', { backends: [to('reviews-v2')] }))] });
  const agent = h1Client(w, { ...w.meta, dst: { ip: '10.0.0.1', port: v1.port } });
  for (let i = 0; i < 5; i++) t.is((await get(agent, '/')).body, 'v1 /');
  t.is(v2.seen.length, 0);
  t.deepEqual(w.authzTargets.at(-1), ['Gateway/shop/waypoint']);
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

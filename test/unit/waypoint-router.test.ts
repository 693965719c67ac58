// The waypoint's pure parts: rule selection with Gateway API match semantics, weighted backends,
// the filters' rewrites and redirects, P2C balancing, protocol detection, the replayable body.
import { PassThrough } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import test from 'ava';
import { propagatingTracer } from '../../src/tracing/index.ts';
import { Balancer, classify, modifyHeaders, modifyPath, normalizeTarget, pickBackend, redirectLocation, RequestBody, selectRule, type HeaderMap } from '../../src/waypoint/index.ts';
import type { Backend, Redirect, Route, RouteMatch, RouteRule } from '../../src/xds/routes.ts';

function match(o: Partial<RouteMatch> = {}): RouteMatch {
  return { path: null, method: '', headers: [], queryParams: [], grpc: null, ...o };
}

function rule(origin: string, o: Partial<RouteRule> = {}): RouteRule {
  return { origin, kind: 'HTTP', port: 0, matches: [], filters: [], backends: [], timeouts: { requestMs: 0, backendRequestMs: 0 }, retry: null, ...o };
}

function route(...rules: RouteRule[]): Route {
  return { service: 'shop/reviews.shop.svc.cluster.local', namespace: 'shop', hostname: 'reviews.shop.svc.cluster.local', rules, resilience: null };
}

const req = (path: string, o: { method?: string; headers?: Record<string, string>; port?: number } = {}) => ({ method: o.method ?? 'GET', path, headers: o.headers ?? {}, port: o.port ?? 80 });

test('path-prefix-matches-whole-segments-only', (t) => {
  const r = route(rule('api', { matches: [match({ path: { type: 'PATH_PREFIX', value: '/abc' } })] }));
  for (const p of ['/abc', '/abc/', '/abc/def', '/abc?x=1']) t.is(selectRule(r, req(p))?.rule.origin, 'api', p);
  for (const p of ['/abcd', '/ab', '/']) t.is(selectRule(r, req(p)), undefined, p);
  const slash = route(rule('s', { matches: [match({ path: { type: 'PATH_PREFIX', value: '/abc/' } })] }));
  t.is(selectRule(slash, req('/abc'))?.rule.origin, 's');
});

test('exact-and-regex-paths-match-the-whole-path-without-query', (t) => {
  const r = route(rule('exact', { matches: [match({ path: { type: 'EXACT', value: '/a' } })] }), rule('re', { matches: [match({ path: { type: 'REGULAR_EXPRESSION', value: '/v[0-9]+' } })] }));
  t.is(selectRule(r, req('/a?q=1'))?.rule.origin, 'exact');
  t.is(selectRule(r, req('/a/'))?.rule.origin, undefined);
  t.is(selectRule(r, req('/v12'))?.rule.origin, 're');
  t.is(selectRule(r, req('/v12/x')), undefined);
});

test('method-headers-and-query-are-anded-matches-ored-first-rule-wins', (t) => {
  const r = route(
    rule('v2', { matches: [match({ method: 'GET', headers: [{ type: 'EXACT', name: 'end-user', value: 'jason' }], queryParams: [{ type: 'REGULAR_EXPRESSION', name: 'v', value: '[0-9]' }] })] }),
    rule('any', { matches: [match({ headers: [{ type: 'EXACT', name: 'x', value: '1' }] }), match({ method: 'POST' })] }),
  );
  t.is(selectRule(r, req('/?v=3', { headers: { 'end-user': 'jason' } }))?.rule.origin, 'v2');
  t.is(selectRule(r, req('/?v=x', { headers: { 'end-user': 'jason' } })), undefined);
  t.is(selectRule(r, req('/', { method: 'POST', headers: { 'end-user': 'jason' } }))?.rule.origin, 'any');
  t.is(selectRule(r, req('/', { headers: { x: '1' } }))?.rule.origin, 'any');
  t.is(selectRule(undefined, req('/')), undefined);
});

test('rule-port-limits-a-rule-to-one-service-port', (t) => {
  const r = route(rule('p8080', { port: 8080 }), rule('all'));
  t.is(selectRule(r, req('/', { port: 8080 }))?.rule.origin, 'p8080');
  t.is(selectRule(r, req('/', { port: 80 }))?.rule.origin, 'all');
});

test('grpc-method-match-reads-service-and-method-from-the-path', (t) => {
  const r = route(
    rule('get', { kind: 'GRPC', matches: [match({ grpc: { type: 'EXACT', service: 'shop.Reviews', method: 'Get' } })] }),
    rule('svc', { kind: 'GRPC', matches: [match({ grpc: { type: 'REGULAR_EXPRESSION', service: 'shop\\..*', method: '' } })] }),
  );
  t.is(selectRule(r, req('/shop.Reviews/Get', { method: 'POST' }))?.rule.origin, 'get');
  t.is(selectRule(r, req('/shop.Reviews/List', { method: 'POST' }))?.rule.origin, 'svc');
  t.is(selectRule(r, req('/other.X/Get', { method: 'POST' })), undefined);
});

test('weighted-backends-split-by-weight-and-skip-zero', (t) => {
  const backends: Backend[] = [
    { service: 'a', port: 80, weight: 90 },
    { service: 'z', port: 80, weight: 0 },
    { service: 'b', port: 80, weight: 10 },
  ];
  const counts: Record<string, number> = {};
  for (let i = 0; i < 100; i++) {
    const b = pickBackend(backends, () => i / 100)!;
    counts[b.service] = (counts[b.service] ?? 0) + 1;
  }
  t.deepEqual(counts, { a: 90, b: 10 });
  t.is(pickBackend([{ service: 'z', port: 80, weight: 0 }]), undefined);
  t.is(pickBackend([]), undefined);
});

test('header-modifier-removes-then-sets-then-adds', (t) => {
  const h: HeaderMap = { 'x-a': '1', 'x-gone': 'y', 'x-multi': 'one' };
  modifyHeaders(h, { set: [{ name: 'X-A', value: '2' }], add: [{ name: 'x-multi', value: 'two' }, { name: 'x-new', value: 'n' }], remove: ['X-Gone'] });
  t.deepEqual(h, { 'x-a': '2', 'x-multi': ['one', 'two'], 'x-new': 'n' });
});

test('replace-prefix-match-follows-the-gateway-api-table', (t) => {
  const m = (prefix: string) => match({ path: { type: 'PATH_PREFIX', value: prefix } });
  const cases: [string, string, string, string][] = [
    ['/foo', '/xyz', '/foo/bar', '/xyz/bar'],
    ['/foo', '/xyz', '/foo', '/xyz'],
    ['/foo', '/xyz', '/foo/', '/xyz/'],
    ['/foo/', '/xyz', '/foo/bar', '/xyz/bar'],
    ['/foo', '/xyz/', '/foo/bar', '/xyz/bar'],
    ['/foo', '/', '/foo/bar', '/bar'],
    ['/foo', '/', '/foo', '/'],
    ['/', '/xyz', '/foo', '/xyz/foo'],
  ];
  for (const [prefix, value, path, want] of cases) t.is(modifyPath(path, { type: 'REPLACE_PREFIX_MATCH', value }, m(prefix)), want, `${prefix} ${value} ${path}`);
  t.is(modifyPath('/a/b?x=1', { type: 'REPLACE_FULL_PATH', value: '/new' }, null), '/new?x=1');
});

test('redirect-keeps-unset-parts-and-drops-default-ports', (t) => {
  const r = (o: Partial<Redirect>): Redirect => ({ scheme: '', hostname: '', path: null, port: 0, statusCode: 302, ...o });
  const at = { authority: 'reviews:9080', target: '/a?x=1', port: 9080 };
  t.deepEqual(redirectLocation(r({}), at, null), { status: 302, location: 'http://reviews:9080/a?x=1' });
  t.deepEqual(redirectLocation(r({ scheme: 'https', statusCode: 301 }), at, null), { status: 301, location: 'https://reviews/a?x=1' });
  t.deepEqual(redirectLocation(r({ hostname: 'new.example', port: 80 }), at, null), { status: 302, location: 'http://new.example/a?x=1' });
  t.is(redirectLocation(r({ path: { type: 'REPLACE_FULL_PATH', value: '/b' } }), at, null).location, 'http://reviews:9080/b?x=1');
  t.is(redirectLocation(r({}), { authority: '[fd00::1]:80', target: '/', port: 80 }, null).location, 'http://[fd00::1]/');
});

test('p2c-prefers-the-less-busy-and-avoids-tried-endpoints', (t) => {
  const b = new Balancer(() => 0);
  const eps = ['a', 'b'];
  const busy = b.start('a');
  t.is(b.pick(eps, (e) => e), 'b');
  busy();
  t.is(b.inFlight('a'), 0);
  t.is(b.pick(eps, (e) => e, new Set(['a'])), 'b');
  t.is(b.pick(['a'], (e) => e, new Set(['a'])), 'a', 'the only endpoint is retried');
  t.is(b.pick([], (e: string) => e), undefined);
});

test('detect-tells-h2c-http1-and-tcp-apart', (t) => {
  t.is(classify(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'http2');
  t.is(classify(Buffer.from('PRI * HTTP')), undefined);
  t.is(classify(Buffer.from('GET / HTTP/1.1\r\n')), 'http1');
  t.is(classify(Buffer.from('DELE')), undefined);
  t.is(classify(Buffer.from('P')), undefined);
  t.is(classify(Buffer.from('SET key value\r\n')), 'tcp');
  t.is(classify(Buffer.from('PROPFIND /d HTTP/1.1\r\n')), 'http1', 'any method with a whole request line');
  t.is(classify(Buffer.from('PURGE /cache')), undefined);
  t.is(classify(Buffer.from('+OK ready\r\n')), 'tcp');
  t.is(classify(Buffer.from([0x16, 0x03, 0x01])), 'tcp');
});

test('request-body-replays-until-it-outgrows-the-limit', async (t) => {
  const src = new PassThrough();
  const body = new RequestBody(src, 8);
  const first = body.open()!;
  src.write('abcd');
  src.end('efg');
  t.is((await buffer(first)).toString(), 'abcdefg');
  t.is((await buffer(body.open()!)).toString(), 'abcdefg');
  t.is(body.bytes, 7);

  const big = new PassThrough();
  const b2 = new RequestBody(big, 4);
  const primary = b2.open()!;
  const mirror = b2.open(true)!;
  const mirrorClosed = new Promise((resolve) => mirror.once('close', resolve));
  mirror.on('error', () => {});
  big.end('0123456789');
  t.is((await buffer(primary)).toString(), '0123456789');
  await mirrorClosed;
  t.false(b2.replayable);
  t.is(b2.open(), null);
});

const nextTraceparent = (incoming: string | undefined) => propagatingTracer().start('hop', incoming === undefined ? {} : { traceparent: incoming }).traceparent;

test('traceparent-of-an-intermediary-keeps-trace-and-flags-and-replaces-invalid-ones', (t) => {
  const kept = nextTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  t.regex(kept, /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
  t.not(kept.split('-')[2], '00f067aa0ba902b7');
  for (const bad of ['garbage', '00-00000000000000000000000000000000-00f067aa0ba902b7-01', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']) {
    const fresh = nextTraceparent(bad);
    t.regex(fresh, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    t.not(fresh.split('-')[1], '4bf92f3577b34da6a3ce929d0e0e4736');
  }
  const ids = new Set(Array.from({ length: 2000 }, () => nextTraceparent(undefined).split('-')[1]));
  t.is(ids.size, 2000, 'trace ids do not repeat across pool refills');
});

test('paths-are-normalized-as-istio-does-before-routing-and-forwarding', (t) => {
  const cases: [string, string][] = [
    ['/public/../admin', '/admin'],
    ['/a/./b/', '/a/b/'],
    ['//admin//x', '/admin/x'],
    ['/%61dmin?q=%2e%2e', '/admin?q=%2e%2e'],
    ['/a%2fb', '/a%2Fb'],
    ['/../../etc', '/etc'],
    ['/a/..', '/'],
    ['http://evil.example/admin?x=1', '/admin?x=1'],
    ['/plain?x=/../y', '/plain?x=/../y'],
  ];
  for (const [raw, want] of cases) t.is(normalizeTarget(raw), want, raw);
});

// Gateway API routes attached to Services (GAMMA) and TrafficPolicies → the waypoint's Routes and
// the routes' and policies' status (src/controller/model/routes.ts, traffic-policy.ts).
import type * as k8s from '@kubernetes/client-node';
import test from 'ava';
import { parseDuration } from '../../src/controller/model/kube.ts';
import { buildRoutes, ROUTE_CONTROLLER, type RoutesInput } from '../../src/controller/model/routes.ts';
import type { KubeObject } from '../../src/controller/model/index.ts';
import type { Route, RouteRule } from '../../src/xds/index.ts';

const DOMAIN = 'cluster.local';
const host = (ns: string, name: string) => `${ns}/${name}.${ns}.svc.${DOMAIN}`;

function svc(ns: string, name: string, ports: { port: number; name?: string }[] = [{ port: 80, name: 'http' }], type = 'ClusterIP'): k8s.V1Service {
  return { metadata: { namespace: ns, name }, spec: { type, ports } };
}

let clock = 0;
function route(kind: 'HTTPRoute' | 'GRPCRoute', ns: string, name: string, spec: Record<string, unknown>, created?: string): KubeObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind,
    metadata: { namespace: ns, name, generation: 3, creationTimestamp: new Date(created ?? new Date(Date.UTC(2026, 0, 1, 0, 0, clock++)).toISOString()) },
    spec,
  };
}
const http = (ns: string, name: string, rules: unknown[], parent = 'web', created?: string) =>
  route('HTTPRoute', ns, name, { parentRefs: [{ group: '', kind: 'Service', name: parent }], rules }, created);
const to = (name: string, extra: Record<string, unknown> = {}) => ({ name, port: 80, ...extra });

function build(parts: Partial<RoutesInput>) {
  return buildRoutes({ httpRoutes: [], grpcRoutes: [], services: [svc('shop', 'web'), svc('shop', 'v1'), svc('shop', 'v2')], referenceGrants: [], trafficPolicies: [], ...parts }, DOMAIN);
}
const rulesOf = (r: Route | undefined): RouteRule[] => r?.rules ?? [];
const cond = (out: ReturnType<typeof build>, key: string, type: string, parent = 0) => out.routeStatus.get(key)?.parents[parent]?.conditions.find((c) => c.type === type);

test('parse-duration-follows-the-gateway-api-format', (t) => {
  t.is(parseDuration('200ms'), 200);
  t.is(parseDuration('1h2m3s4ms'), 3_723_004);
  t.is(parseDuration('0s'), 0);
  for (const bad of ['1.5s', '1d', '', 's', '100000s', '1s1s1s1s1s', '-1s']) t.is(parseDuration(bad), null, bad);
});

test('routes-attach-to-service-parents-with-spec-defaults-and-ignore-gateway-parents', (t) => {
  const gw = route('HTTPRoute', 'shop', 'ingress', { parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge' }], rules: [{ backendRefs: [to('v1')] }] });
  const r = http('shop', 'web', [
    {
      backendRefs: [to('v1')],
      filters: [
        { type: 'RequestMirror', requestMirror: { backendRef: to('v2') } },
        { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Env', value: 'prod' }], remove: ['X-Debug'] } },
      ],
      timeouts: { request: '2s', backendRequest: '500ms' },
      retry: { attempts: 3, codes: [503, 502], backoff: '25ms' },
    },
    { matches: [{ path: { type: 'Exact', value: '/old' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'new.example' } }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [to('v2')], retry: {} },
  ]);
  const out = build({ httpRoutes: [r, gw] });
  t.false(out.routeStatus.has('HTTPRoute/shop/ingress'), 'a Gateway parentRef is not ours: no status');
  t.deepEqual([...out.routes.keys()], [host('shop', 'web')]);
  const web = out.routes.get(host('shop', 'web'))!;
  t.like(web, { service: host('shop', 'web'), namespace: 'shop', hostname: 'web.shop.svc.cluster.local', resilience: null });
  t.deepEqual(
    web.rules.map((x) => [x.origin, x.matches[0]!.path]),
    [
      ['HTTPRoute/shop/web/1', { type: 'EXACT', value: '/old' }],
      ['HTTPRoute/shop/web/2', { type: 'PATH_PREFIX', value: '/api' }],
      ['HTTPRoute/shop/web/0', { type: 'PATH_PREFIX', value: '/' }],
    ],
  );
  const [redirect, api, all] = web.rules as [RouteRule, RouteRule, RouteRule];
  t.deepEqual(all.backends, [{ service: host('shop', 'v1'), port: 80, weight: 1 }], 'weight defaults to 1');
  t.deepEqual(all.filters[0]!.requestMirror, { backend: { service: host('shop', 'v2'), port: 80, weight: 1 }, percent: 100 });
  t.deepEqual(all.filters[1]!.requestHeaderModifier, { set: [{ name: 'x-env', value: 'prod' }], add: [], remove: ['x-debug'] });
  t.deepEqual(all.timeouts, { requestMs: 2000, backendRequestMs: 500 });
  t.deepEqual(all.retry, { attempts: 3, codes: [502, 503], backoffMs: 25 });
  t.like(all, { kind: 'HTTP', port: 0 });
  t.deepEqual(redirect.filters[0]!.requestRedirect, { scheme: '', hostname: 'new.example', path: null, port: 0, statusCode: 302 });
  t.deepEqual(redirect.backends, []);
  t.deepEqual(api.retry, { attempts: 2, codes: [503], backoffMs: 0 }, "an empty retry takes Istio's defaults");
  t.deepEqual(api.timeouts, { requestMs: 0, backendRequestMs: 0 });

  t.deepEqual(out.routeStatus.get('HTTPRoute/shop/web'), {
    parents: [
      {
        parentRef: { group: '', kind: 'Service', name: 'web' },
        controllerName: ROUTE_CONTROLLER,
        conditions: [
          { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'attached to Service shop/web', observedGeneration: 3 },
          { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'every backendRef resolved', observedGeneration: 3 },
        ],
      },
    ],
  });
});

test('precedence-exact-then-longest-prefix-then-method-then-headers-then-query-then-oldest-route', (t) => {
  const older = http('shop', 'b-older', [{ matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: [to('v1')] }], 'web', '2025-01-01T00:00:00Z');
  const newer = http('shop', 'a-newer', [{ matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: [to('v2')] }], 'web', '2026-01-01T00:00:00Z');
  const sameAge1 = http('shop', 'z', [{ matches: [{ path: { type: 'PathPrefix', value: '/z' } }] }], 'web', '2025-06-01T00:00:00Z');
  const sameAge2 = http('shop', 'y', [{ matches: [{ path: { type: 'PathPrefix', value: '/z' } }] }], 'web', '2025-06-01T00:00:00Z');
  const mixed = http('shop', 'mixed', [
    { matches: [{ path: { type: 'PathPrefix', value: '/' } }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' } }, { path: { type: 'Exact', value: '/api/v1' } }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'get' }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'GET', headers: [{ name: 'X-A', value: '1' }] }] },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'GET', headers: [{ name: 'x-a', value: '1' }], queryParams: [{ name: 'q', value: '1' }] }] },
    { matches: [{ path: { type: 'RegularExpression', value: '^/re/[0-9]+$' } }] },
  ]);
  const out = build({ httpRoutes: [mixed, newer, sameAge1, older, sameAge2] });
  const order = rulesOf(out.routes.get(host('shop', 'web'))).map((r) => {
    const m = r.matches[0]!;
    return `${r.origin} ${m.path!.type} ${m.path!.value} ${m.method}${m.headers.length ? ` h${m.headers.length}` : ''}${m.queryParams.length ? ` q${m.queryParams.length}` : ''}`;
  });
  t.deepEqual(order, [
    'HTTPRoute/shop/mixed/1 EXACT /api/v1 ',
    'HTTPRoute/shop/mixed/5 REGULAR_EXPRESSION ^/re/[0-9]+$ ',
    'HTTPRoute/shop/mixed/4 PATH_PREFIX /api GET h1 q1',
    'HTTPRoute/shop/mixed/3 PATH_PREFIX /api GET h1',
    'HTTPRoute/shop/mixed/2 PATH_PREFIX /api GET',
    'HTTPRoute/shop/mixed/1 PATH_PREFIX /api ',
    // Equal matches: the oldest route first, then by name (prefixes of equal length never overlap
    // unless equal, so /z sits between them by age only).
    'HTTPRoute/shop/b-older/0 PATH_PREFIX /a ',
    'HTTPRoute/shop/y/0 PATH_PREFIX /z ',
    'HTTPRoute/shop/z/0 PATH_PREFIX /z ',
    'HTTPRoute/shop/a-newer/0 PATH_PREFIX /a ',
    'HTTPRoute/shop/mixed/0 PATH_PREFIX / ',
  ]);
});

test('unsupported-filters-make-only-their-route-accepted-false-unsupported-value', (t) => {
  const good = http('shop', 'good', [{ backendRefs: [to('v1')] }]);
  const ext = http('shop', 'ext', [{ matches: [{ path: { type: 'PathPrefix', value: '/x' } }], filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'Y', name: 'z' } }], backendRefs: [to('v2')] }]);
  const cors = http('shop', 'cors', [{ backendRefs: [to('v2')] }, { filters: [{ type: 'CORS', cors: { allowOrigins: ['*'] } }] }]);
  const badDuration = http('shop', 'slow', [{ timeouts: { request: '1.5s' }, backendRefs: [to('v2')] }]);
  const badRegex = http('shop', 'regex', [{ matches: [{ path: { type: 'RegularExpression', value: '([' } }], backendRefs: [to('v2')] }]);
  const out = build({ httpRoutes: [good, ext, cors, badDuration, badRegex] });
  t.deepEqual(
    rulesOf(out.routes.get(host('shop', 'web'))).map((r) => r.origin),
    ['HTTPRoute/shop/good/0'],
    'the bad routes contribute nothing, the good one keeps serving',
  );
  for (const [name, re] of [
    ['ext', /spec\.rules\[0\]\.filters\[0\]: filter type "ExtensionRef" is not supported/],
    ['cors', /spec\.rules\[1\]\.filters\[0\]: filter type "CORS" is not supported/],
    ['slow', /spec\.rules\[0\]\.timeouts\.request: "1\.5s" is not a duration/],
    ['regex', /spec\.rules\[0\]\.matches\[0\]\.path\.value: "\(\[" is not a valid regular expression/],
  ] as const) {
    const a = cond(out, `HTTPRoute/shop/${name}`, 'Accepted')!;
    t.like(a, { status: 'False', reason: 'UnsupportedValue' }, name);
    t.regex(a.message, re);
  }
  t.like(cond(out, 'HTTPRoute/shop/good', 'Accepted'), { status: 'True', reason: 'Accepted' });
});

test('unresolvable-backends-give-resolved-refs-false-with-each-reason-and-answer-500-for-their-share', (t) => {
  const grant = {
    apiVersion: 'gateway.networking.k8s.io/v1beta1',
    kind: 'ReferenceGrant',
    metadata: { namespace: 'shared', name: 'from-shop' },
    spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'shop' }], to: [{ group: '', kind: 'Service', name: 'granted' }] },
  };
  const services = [svc('shop', 'web'), svc('shop', 'v1'), svc('shared', 'granted'), svc('shared', 'private')];
  const missing = http('shop', 'missing', [{ backendRefs: [to('v1', { weight: 90 }), to('gone', { weight: 10 })] }]);
  const kind = http('shop', 'kind', [{ matches: [{ path: { type: 'PathPrefix', value: '/k' } }], backendRefs: [{ group: 'example.com', kind: 'Bucket', name: 'b' }] }]);
  const cross = http('shop', 'cross', [
    { matches: [{ path: { type: 'PathPrefix', value: '/c' } }], backendRefs: [to('granted', { namespace: 'shared' }), to('private', { namespace: 'shared' })] },
  ]);
  const out = build({ services, referenceGrants: [grant], httpRoutes: [missing, kind, cross] });
  for (const [name, reason, re] of [
    ['missing', 'BackendNotFound', /backendRefs\[1\]: Service shop\/gone does not exist/],
    ['kind', 'InvalidKind', /example\.com\/Bucket b is not a Service/],
    ['cross', 'RefNotPermitted', /Service shared\/private is in another namespace and no ReferenceGrant in shared allows HTTPRoutes from shop/],
  ] as const) {
    const c = cond(out, `HTTPRoute/shop/${name}`, 'ResolvedRefs')!;
    t.like(c, { status: 'False', reason }, name);
    t.regex(c.message, re);
    t.like(cond(out, `HTTPRoute/shop/${name}`, 'Accepted'), { status: 'True' }, `${name} is still accepted`);
  }
  const rules = rulesOf(out.routes.get(host('shop', 'web')));
  t.deepEqual(rules.find((r) => r.origin === 'HTTPRoute/shop/missing/0')!.backends, [
    { service: host('shop', 'v1'), port: 80, weight: 90 },
    { service: '', port: 80, weight: 10 },
  ]);
  t.deepEqual(rules.find((r) => r.origin === 'HTTPRoute/shop/kind/0')!.backends, [{ service: '', port: 0, weight: 1 }]);
  t.deepEqual(rules.find((r) => r.origin === 'HTTPRoute/shop/cross/0')!.backends, [
    { service: host('shared', 'granted'), port: 80, weight: 1 },
    { service: '', port: 80, weight: 1 },
  ]);
});

test('a-missing-parent-service-or-port-is-no-matching-parent-and-a-port-parent-scopes-the-rules', (t) => {
  const gone = http('shop', 'gone', [{ backendRefs: [to('v1')] }], 'nothere');
  const ported = route('HTTPRoute', 'shop', 'ported', { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }, { group: '', kind: 'Service', name: 'web', port: 81 }], rules: [{ backendRefs: [to('v1')] }] });
  const out = build({ httpRoutes: [gone, ported] });
  t.like(cond(out, 'HTTPRoute/shop/gone', 'Accepted'), { status: 'False', reason: 'NoMatchingParent', message: 'Service shop/nothere does not exist' });
  t.like(cond(out, 'HTTPRoute/shop/ported', 'Accepted', 0), { status: 'True' });
  t.like(cond(out, 'HTTPRoute/shop/ported', 'Accepted', 1), { status: 'False', reason: 'NoMatchingParent', message: 'Service shop/web has no port 81' });
  t.deepEqual(out.routeStatus.get('HTTPRoute/shop/ported')!.parents.map((p) => p.parentRef), [
    { group: '', kind: 'Service', name: 'web', port: 80 },
    { group: '', kind: 'Service', name: 'web', port: 81 },
  ]);
  t.deepEqual(rulesOf(out.routes.get(host('shop', 'web'))).map((r) => r.port), [80]);
  t.false(out.routes.has(host('shop', 'nothere')));
});

test('a-consumer-route-is-unsupported-and-a-mirror-to-a-missing-backend-mirrors-nothing', (t) => {
  const consumer = route('HTTPRoute', 'client', 'consumer', { parentRefs: [{ group: '', kind: 'Service', name: 'web', namespace: 'shop' }], rules: [{ backendRefs: [to('v1', { namespace: 'shop' })] }] });
  const mirror = http('shop', 'mirror', [{ backendRefs: [to('v1')], filters: [{ type: 'RequestMirror', requestMirror: { backendRef: to('shadow'), percent: 10 } }] }]);
  const out = build({ httpRoutes: [consumer, mirror] });
  t.like(cond(out, 'HTTPRoute/client/consumer', 'Accepted'), { status: 'False', reason: 'UnsupportedValue' });
  t.regex(cond(out, 'HTTPRoute/client/consumer', 'Accepted')!.message, /consumer route/);
  const rules = rulesOf(out.routes.get(host('shop', 'web')));
  t.deepEqual(rules.map((r) => r.origin), ['HTTPRoute/shop/mirror/0']);
  t.deepEqual(rules[0]!.filters, [], 'the mirror filter is left out');
  t.deepEqual(rules[0]!.backends, [{ service: host('shop', 'v1'), port: 80, weight: 1 }]);
  t.like(cond(out, 'HTTPRoute/shop/mirror', 'ResolvedRefs'), { status: 'False', reason: 'BackendNotFound' });
});

test('grpc-routes-match-by-method', (t) => {
  const g = route('GRPCRoute', 'shop', 'echo', {
    parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
    rules: [
      { matches: [{ method: { service: 'echo.Echo', method: 'Say' } }], backendRefs: [to('v2')] },
      { matches: [{ method: { service: 'echo.Echo' } }], backendRefs: [to('v1')] },
      { backendRefs: [to('v1')], filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'x' } }] },
    ],
  });
  const ok = route('GRPCRoute', 'shop', 'echo2', {
    parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
    rules: [
      { matches: [{ method: { service: 'echo.Echo', method: 'Say' } }], backendRefs: [to('v2')] },
      { matches: [{ method: { service: 'echo.Echo' }, headers: [{ name: 'X-Canary', value: '1' }] }], backendRefs: [to('v1')] },
      { backendRefs: [to('v1')] },
    ],
  });
  const out = build({ grpcRoutes: [g, ok] });
  t.like(cond(out, 'GRPCRoute/shop/echo', 'Accepted'), { status: 'False', reason: 'UnsupportedValue' }, 'URLRewrite is not a GRPCRoute filter');
  const rules = rulesOf(out.routes.get(host('shop', 'web')));
  t.deepEqual(
    rules.map((r) => [r.kind, r.origin, r.matches[0]!.grpc, r.matches[0]!.headers.length]),
    [
      ['GRPC', 'GRPCRoute/shop/echo2/0', { type: 'EXACT', service: 'echo.Echo', method: 'Say' }, 0],
      ['GRPC', 'GRPCRoute/shop/echo2/1', { type: 'EXACT', service: 'echo.Echo', method: '' }, 1],
      ['GRPC', 'GRPCRoute/shop/echo2/2', null, 0],
    ],
  );
  t.is(rules[0]!.retry, null);
});

function policy(name: string, spec: Record<string, unknown>, created: string): KubeObject {
  return { apiVersion: 'networking.mesh.io/v1alpha1', kind: 'TrafficPolicy', metadata: { namespace: 'shop', name, generation: 2, creationTimestamp: new Date(created) }, spec };
}

test('traffic-policies-become-the-resilience-of-their-services-oldest-wins', (t) => {
  const full = policy(
    'full',
    {
      targetRefs: [{ group: '', kind: 'Service', name: 'web' }, { kind: 'Service', name: 'v1' }],
      faultInjection: { delay: { fixedDelay: '200ms' }, abort: { httpStatus: 503, percentage: 12.5 } },
      connectionPool: { maxConnections: 10 },
      outlierDetection: {},
      rateLimit: { maxTokens: 100, tokensPerFill: 10, fillInterval: '1s' },
    },
    '2025-01-01T00:00:00Z',
  );
  const younger = policy('younger', { targetRefs: [{ kind: 'Service', name: 'web' }], connectionPool: { maxConnections: 1 } }, '2026-01-01T00:00:00Z');
  const partly = policy('partly', { targetRefs: [{ kind: 'Service', name: 'v1' }, { kind: 'Service', name: 'v2' }] }, '2026-01-01T00:00:00Z');
  const nowhere = policy('nowhere', { targetRefs: [{ kind: 'Service', name: 'nope' }] }, '2026-01-01T00:00:00Z');
  const invalid = policy('invalid', { targetRefs: [{ kind: 'Service', name: 'v2' }], faultInjection: { delay: { fixedDelay: 'soon' } } }, '2024-01-01T00:00:00Z');
  const out = build({ trafficPolicies: [younger, invalid, partly, full, nowhere] });
  t.deepEqual(out.routes.get(host('shop', 'web'))!.resilience, {
    origin: 'TrafficPolicy/shop/full',
    fault: { delayMs: 200, delayPercent: 100, abortStatus: 503, abortPercent: 12.5 },
    connectionPool: { maxConnections: 10, maxPendingRequests: 0, maxRequestsPerConnection: 0 },
    outlierDetection: { consecutive5xxErrors: 5, baseEjectionMs: 30_000, maxEjectionPercent: 10 },
    rateLimit: { maxTokens: 100, tokensPerFill: 10, fillIntervalMs: 1000 },
  });
  t.deepEqual(out.routes.get(host('shop', 'web'))!.rules, [], 'a Service with a policy and no route still gets a Route');
  t.is(out.routes.get(host('shop', 'v1'))!.resilience!.origin, 'TrafficPolicy/shop/full');
  t.is(out.routes.get(host('shop', 'v2'))!.resilience!.origin, 'TrafficPolicy/shop/partly', 'the invalid older policy does not take the Service');
  const st = (n: string) => out.trafficPolicyStatus.get(`TrafficPolicy/shop/${n}`)!.conditions[0]!;
  t.like(st('full'), { type: 'Accepted', status: 'True', reason: 'Accepted', observedGeneration: 2 });
  t.like(st('younger'), { status: 'False', reason: 'Conflicted' });
  t.regex(st('younger').message, /already targeted by the older TrafficPolicy\/shop\/full/);
  t.like(st('partly'), { status: 'True', reason: 'Accepted' });
  t.regex(st('partly').message, /applied to Service shop\/v2.*not applied to Service shop\/v1/);
  t.like(st('nowhere'), { status: 'False', reason: 'TargetNotFound', message: 'Service shop/nope does not exist' });
  t.like(st('invalid'), { status: 'False', reason: 'Invalid' });
  t.regex(st('invalid').message, /spec\.faultInjection\.delay\.fixedDelay: "soon" is not a duration/);
});

test('routes-are-deterministic-whatever-the-input-order', (t) => {
  const a = http('shop', 'a', [{ matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: [to('v1')] }], 'web', '2025-01-01T00:00:00Z');
  const b = http('shop', 'b', [{ matches: [{ path: { type: 'PathPrefix', value: '/b' } }], backendRefs: [to('v1')] }], 'web', '2025-01-01T00:00:00Z');
  t.deepEqual(build({ httpRoutes: [a, b] }), build({ httpRoutes: [b, a] }));
});

import test from 'ava';
import { Histogram, Registry } from 'prom-client';
import { MeshState } from '../../src/state/index.ts';
import { ISTIO_BUCKETS, RequestTelemetry, traceIdOf, type CompletedRequest, type L7Flow } from '../../src/waypoint/telemetry.ts';
import type { RequestInfo } from '../../src/waypoint/request.ts';
import { SERVICE, WORKLOAD, type Service, type Workload } from '../../src/xds/index.ts';

function workload(ns: string, pod: string, app: string, sa: string, ip: number[]): Workload {
  return {
    uid: `Kubernetes//v1/Pod/${ns}/${pod}`,
    name: pod,
    namespace: ns,
    addresses: [Uint8Array.from(ip)],
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
    podUid: `uid-${pod}`,
  };
}

const web = workload('front', 'web-5d9f-abcde', 'web', 'web', [10, 244, 2, 9]);
const cart = workload('shop', 'cart-7c4b-xyz12', 'cart', 'cart', [10, 244, 1, 7]);
const cartSvc: Service = { name: 'cart', namespace: 'shop', hostname: 'cart.shop.svc.cluster.local', addresses: [], ports: [], subjectAltNames: [], waypoint: null };

function state(): MeshState {
  const s = new MeshState();
  s.replace(WORKLOAD, [web, cart].map((w) => [w.uid, w]), true);
  s.replace(SERVICE, [[`shop/${cartSvc.hostname}`, cartSvc]], true);
  return s;
}

function req(extra: Partial<RequestInfo> = {}): RequestInfo {
  return {
    version: '2',
    protocol: 'http',
    method: 'GET',
    path: '/items?page=2',
    authority: 'cart.shop.svc.cluster.local:8080',
    headers: { 'x-request-id': 'r-1', 'user-agent': 'curl/8' },
    source: { principal: 'cluster.local/ns/front/sa/web', namespace: 'front', ip: '10.244.2.9' },
    destination: { ip: '10.96.0.20', port: 8080, service: `shop/${cartSvc.hostname}` },
    ...extra,
  };
}

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

function completed(extra: Partial<CompletedRequest> = {}): CompletedRequest {
  return {
    req: req(),
    status: 200,
    grpcStatus: '',
    flags: '-',
    durationMs: 12,
    requestBytes: 0,
    responseBytes: 1024,
    destination: { service: `shop/${cartSvc.hostname}`, workloadUid: cart.uid, ip: '10.244.1.7', port: 8080 },
    route: 'HTTPRoute/shop/cart/0',
    traceparent: TRACEPARENT,
    ...extra,
  };
}

function setup() {
  const registry = new Registry();
  const lines: string[] = [];
  const flows: L7Flow[] = [];
  const t = new RequestTelemetry({
    registry,
    lookup: state(),
    waypoint: { namespace: 'shop', name: 'waypoint' },
    accessLog: (l) => lines.push(l),
    onFlow: (f) => flows.push(f),
    now: () => Date.parse('2026-12-07T04:00:00.012Z'),
  });
  return { registry, t, lines, flows };
}

async function series(registry: Registry, name: string): Promise<{ labels: Record<string, string | number>; value: number }[]> {
  const m = await registry.getSingleMetric(name)!.get();
  return m.values.map((v) => ({ labels: v.labels as Record<string, string | number>, value: v.value }));
}

test('istio_requests_total carries Istio’s labels with reporter="waypoint"', async (t) => {
  const { registry, t: tel } = setup();
  tel.record(completed());
  tel.record(completed());
  const s = await series(registry, 'istio_requests_total');
  t.is(s.length, 1);
  t.is(s[0]!.value, 2);
  t.deepEqual(s[0]!.labels, {
    reporter: 'waypoint',
    source_workload: 'web',
    source_canonical_service: 'web',
    source_canonical_revision: 'v1',
    source_workload_namespace: 'front',
    source_principal: 'spiffe://cluster.local/ns/front/sa/web',
    source_app: 'web',
    source_version: 'v1',
    source_cluster: 'Kubernetes',
    destination_service: 'cart.shop.svc.cluster.local',
    destination_service_namespace: 'shop',
    destination_service_name: 'cart',
    destination_workload: 'cart',
    destination_canonical_service: 'cart',
    destination_canonical_revision: 'v1',
    destination_workload_namespace: 'shop',
    destination_principal: 'spiffe://cluster.local/ns/shop/sa/cart',
    destination_app: 'cart',
    destination_version: 'v1',
    destination_cluster: 'Kubernetes',
    request_protocol: 'http',
    response_code: '200',
    grpc_response_status: '',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
  });
});

test('response code, gRPC status and flags each make their own series', async (t) => {
  const { registry, t: tel } = setup();
  tel.record(completed({ status: 503, flags: 'UO', destination: null }));
  tel.record(completed({ req: req({ protocol: 'grpc', method: 'POST', path: '/shop.Cart/Get' }), grpcStatus: '14' }));
  tel.record(completed({ status: 403, flags: 'RBAC', destination: null }));
  const s = await series(registry, 'istio_requests_total');
  const by = (code: string) => s.find((x) => x.labels.response_code === code)!.labels;
  t.is(by('503').response_flags, 'UO');
  t.is(by('503').destination_workload, 'unknown', 'no endpoint was picked');
  t.is(by('503').destination_service, 'cart.shop.svc.cluster.local', 'the Service addressed is still known');
  t.is(by('200').request_protocol, 'grpc');
  t.is(by('200').grpc_response_status, '14');
  t.is(by('403').response_flags, 'RBAC');
});

test('histograms use Istio’s buckets and observe duration and body sizes', async (t) => {
  const { registry, t: tel } = setup();
  tel.record(completed({ durationMs: 7, requestBytes: 300, responseBytes: 1024 }));
  const text = await registry.metrics();
  t.regex(text, /istio_request_duration_milliseconds_bucket\{le="5",[^}]*reporter="waypoint"[^}]*\} 0/);
  t.regex(text, /istio_request_duration_milliseconds_bucket\{le="10",[^}]*\} 1/);
  t.regex(text, /istio_request_duration_milliseconds_bucket\{le="3600000",[^}]*\} 1/);
  t.regex(text, /istio_request_bytes_sum\{[^}]*\} 300/);
  t.regex(text, /istio_response_bytes_sum\{[^}]*\} 1024/);
  t.regex(text, /istio_response_bytes_bucket\{le="1000",[^}]*\} 0/);
  t.regex(text, /istio_response_bytes_bucket\{le="2500",[^}]*\} 1/);
  t.regex(text, /# TYPE istio_requests_total counter/);
});

test('a source address whose workload runs as another identity does not lend its labels', async (t) => {
  const { registry, t: tel } = setup();
  tel.record(completed({ req: req({ source: { principal: 'cluster.local/ns/evil/sa/x', namespace: 'evil', ip: '10.244.2.9' } }) }));
  const [s] = await series(registry, 'istio_requests_total');
  t.is(s!.labels.source_workload, 'unknown');
  t.is(s!.labels.source_workload_namespace, 'evil');
  t.is(s!.labels.source_principal, 'spiffe://cluster.local/ns/evil/sa/x');
});

test('an unknown Service still fills the service labels from its key', async (t) => {
  const { registry, t: tel } = setup();
  tel.record(completed({ destination: { service: 'other/api.other.svc.cluster.local', workloadUid: '', ip: '10.244.9.9', port: 80 } }));
  const [s] = await series(registry, 'istio_requests_total');
  t.is(s!.labels.destination_service, 'api.other.svc.cluster.local');
  t.is(s!.labels.destination_service_name, 'api');
  t.is(s!.labels.destination_service_namespace, 'other');
  t.is(s!.labels.destination_workload, 'unknown');
});

test('one JSON access-log line per request, Envoy-like fields', (t) => {
  const { t: tel, lines } = setup();
  tel.record(completed({ sourcePort: 40312 }));
  t.is(lines.length, 1);
  const e = JSON.parse(lines[0]!);
  t.like(e, {
    start_time: '2026-12-07T04:00:00.000Z',
    method: 'GET',
    path: '/items?page=2',
    protocol: 'HTTP/2',
    response_code: 200,
    response_flags: '-',
    grpc_status: null,
    duration: 12,
    bytes_received: 0,
    bytes_sent: 1024,
    upstream_host: '10.244.1.7:8080',
    upstream_cluster: 'outbound|8080||cart.shop.svc.cluster.local',
    authority: 'cart.shop.svc.cluster.local:8080',
    user_agent: 'curl/8',
    request_id: 'r-1',
    traceparent: TRACEPARENT,
    downstream_remote_address: '10.244.2.9:40312',
    source_principal: 'spiffe://cluster.local/ns/front/sa/web',
    route_name: 'HTTPRoute/shop/cart/0',
    waypoint: 'shop/waypoint',
  });
});

test('an L7 flow per request: FORWARDED, or DROPPED when policy denied it', (t) => {
  const { t: tel, flows } = setup();
  tel.record(completed());
  tel.record(completed({ status: 403, flags: 'RBAC', destination: null, route: '' }));
  tel.record(completed({ status: 403 }));
  t.deepEqual(flows[0], {
    timeUnixNano: Date.parse('2026-12-07T04:00:00.000Z') * 1e6,
    waypoint: 'shop/waypoint',
    source: { workload: 'web', pod: 'web-5d9f-abcde', namespace: 'front', ip: '10.244.2.9', port: 0, identity: 'spiffe://cluster.local/ns/front/sa/web' },
    destination: { workload: 'cart', pod: 'cart-7c4b-xyz12', namespace: 'shop', ip: '10.244.1.7', port: 8080, identity: 'spiffe://cluster.local/ns/shop/sa/cart', service: 'shop/cart.shop.svc.cluster.local' },
    dialled: { ip: '10.96.0.20', port: 8080 },
    protocol: 'http',
    httpVersion: '2',
    method: 'GET',
    path: '/items?page=2',
    authority: 'cart.shop.svc.cluster.local:8080',
    status: 200,
    grpcStatus: '',
    responseFlags: '-',
    latencyMs: 12,
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    verdict: 'FORWARDED',
    route: 'HTTPRoute/shop/cart/0',
  });
  t.is(flows[1]!.verdict, 'DROPPED');
  t.like(flows[1]!.destination, { ip: '10.96.0.20', port: 8080, workload: '', namespace: 'shop' });
  t.is(flows[2]!.verdict, 'FORWARDED', 'a 403 from the backend was forwarded');
});

test('traceIdOf reads W3C traceparents and refuses the rest', (t) => {
  t.is(traceIdOf(TRACEPARENT), '4bf92f3577b34da6a3ce929d0e0e4736');
  t.is(traceIdOf(''), '');
  t.is(traceIdOf('00-00000000000000000000000000000000-00f067aa0ba902b7-01'), '');
  t.is(traceIdOf('garbage'), '');
});

test('without sinks only metrics are recorded', async (t) => {
  const registry = new Registry();
  const tel = new RequestTelemetry({ registry, lookup: state(), waypoint: { namespace: 'shop', name: 'waypoint' } });
  tel.record(completed());
  const [s] = await series(registry, 'istio_requests_total');
  t.is(s!.value, 1);
});

test('the histograms expose what prom-client’s own Histogram would for the same observations', async (t) => {
  const { registry, t: tel } = setup();
  const reference = new Registry();
  const h = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'The duration of requests', labelNames: ['response_code'], buckets: [...ISTIO_BUCKETS], registers: [reference] });
  for (const [ms, code] of [[0.2, 200], [0.5, 200], [5, 200], [7.5, 200], [4e6, 200], [12, 503]] as const) {
    tel.record(completed({ durationMs: ms, status: code }));
    h.observe({ response_code: String(code) }, ms);
  }
  const strip = (text: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith('istio_request_duration_milliseconds'))
      .map((l) => l.replace(/\{(.*)\}/, (_m, inner: string) => `{${inner.split(/,(?=[a-z_]+=)/).filter((p) => /^(le|response_code)=/.test(p)).sort().join(',')}}`))
      .sort();
  t.deepEqual(strip(await registry.getSingleMetricAsString('istio_request_duration_milliseconds')), strip(await reference.metrics()));
  const json = await registry.getMetricsAsJSON();
  t.true(json.some((m) => m.name === 'istio_request_bytes' && m.values.length > 0));
});

test('past maxSeries, new label sets fold into an overflow series that keeps namespaces and codes', async (t) => {
  const registry = new Registry();
  const s = new MeshState();
  s.replace(WORKLOAD, [web, cart, workload('shop', 'cart-v2-1', 'cart-v2', 'cart', [10, 244, 1, 8])].map((w) => [w.uid, w]), true);
  const tel = new RequestTelemetry({ registry, lookup: s, waypoint: { namespace: 'shop', name: 'waypoint' }, maxSeries: 1 });
  tel.record(completed());
  tel.record(completed({ destination: { service: '', workloadUid: 'Kubernetes//v1/Pod/shop/cart-v2-1', ip: '10.244.1.8', port: 8080 } }));
  tel.record(completed({ status: 500, destination: { service: '', workloadUid: 'Kubernetes//v1/Pod/shop/cart-v2-1', ip: '10.244.1.8', port: 8080 } }));
  const all = await series(registry, 'istio_requests_total');
  t.is(all.length, 3);
  const folded = all.filter((x) => x.labels.destination_workload === 'overflow');
  t.deepEqual(folded.map((x) => [x.labels.response_code, x.labels.destination_workload_namespace, x.labels.source_workload]).sort(), [
    ['200', 'shop', 'overflow'],
    ['500', 'shop', 'overflow'],
  ]);
  const [overflow] = await series(registry, 'mesh_waypoint_metric_series_overflow_total');
  t.is(overflow!.value, 2);
});

// Traces through waypoints, as a user sets them up: the mesh's waypoints export a span per request
// over OTLP to a collector Service in the cluster (`meshctl dev up --tracing-endpoint`, the chart's
// tracing.otlp.endpoint), and apps that forward trace headers get one trace across hops.
// Here: client → (waypoint) → front, which calls back with the headers it received →
// (waypoint) → back. The collector is an OTLP receiver pod (test/helpers/otlp-receiver.ts).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { startMesh, waitFor, type Mesh } from '../helpers/mesh.ts';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../helpers/otlp-receiver.ts';
import { HTTP_ECHO_SERVER, HTTP_REQUESTS } from '../helpers/scripts.ts';
import { requireRoot } from '../helpers/topology.ts';

const NODE = process.execPath;
const GATEWAY_API = fileURLToPath(new URL('../../daemonset/chart/files/gateway-api-crds.yaml', import.meta.url));
const RECEIVER = fileURLToPath(new URL('../helpers/otlp-receiver.ts', import.meta.url));
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER = '00f067aa0ba902b7';

/** front: answers each request by calling back with the trace headers it received (what any
 *  instrumented app does), and returns what back saw. */
const FRONT = `
const http = require('node:http');
const TRACE = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled'];
http.createServer((q, s) => {
  s.on('error', () => {});
  const headers = Object.fromEntries(TRACE.filter((h) => q.headers[h] !== undefined).map((h) => [h, q.headers[h]]));
  http.get('http://back/', { headers }, (r) => {
    r.resume();
    r.on('end', () => s.writeHead(200, { 'x-front-saw': JSON.stringify(headers), 'x-back-saw': r.headers['x-seen-headers'] || '' }).end('front'));
  }).on('error', (e) => s.writeHead(502).end(e.message));
}).listen(8080);
`;

let mesh: Mesh;
let l4Receiver: OtlpReceiver;
const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

let clients = 0;
async function request(headers: Record<string, string>, url = 'http://front/', ns = 'shop'): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const name = `client-${++clients}`;
  await mesh.core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { name }, spec: { nodeName: 'node1', restartPolicy: 'Never', containers: [{ name: 'main', image: 'local', command: [NODE, '-e', HTTP_REQUESTS, JSON.stringify({ url, n: 1, headers })] }] } } as k8s.V1Pod,
  });
  const line = await waitFor(`${name} to finish`, () => {
    try {
      return readFileSync(`${mesh.stateDir}/logs/${ns}_${name}_main.log`, 'utf8').split('\n').find((l) => l.startsWith('RESULT '));
    } catch {
      return undefined;
    }
  }, 60_000);
  await mesh.core.deleteNamespacedPod({ name, namespace: ns, gracePeriodSeconds: 0 }).catch(() => undefined);
  const r = JSON.parse(line.slice('RESULT '.length)) as { samples: { status: number; headers: Record<string, string>; body: string }[]; errors: Record<string, number> };
  if (!r.samples[0]) throw new Error(`no answer: ${JSON.stringify(r.errors)}`);
  return r.samples[0];
}

/** The spans the collector pod has printed so far. */
function received(): ReceivedSpan[] {
  try {
    return readFileSync(`${mesh.stateDir}/logs/observability_otel-collector_main.log`, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('SPAN '))
      .map((l) => JSON.parse(l.slice(5)) as ReceivedSpan);
  } catch {
    return [];
  }
}

test.before(async (t) => {
  if (!(await requireRoot(t))) return;
  // Sampling 100 %: every new trace is recorded, and a caller's unsampled flag still wins.
  // ztunnels export L4 spans too (the chart's tracing.l4): on the local cluster they run in the
  // host's network namespace, so to a receiver on loopback.
  l4Receiver = await startOtlpReceiver();
  cleanups.push(() => l4Receiver.close());
  mesh = await startMesh({ teardown: (fn) => cleanups.push(fn) }, {
    ztunnel: true,
    tracing: { tracingEndpoint: 'http://otel-collector.observability.svc.cluster.local:4318/v1/traces', tracingProtocol: 'http/protobuf', tracingSampling: 100, tracingFlushInterval: 200 },
    l4SpansEndpoint: l4Receiver.httpUrl,
  });
  await mesh.kubectl('apply', '-f', GATEWAY_API);
  await mesh.core.createNamespace({ body: { metadata: { name: 'observability' } } });
  await mesh.core.createNamespacedPod({ namespace: 'observability', body: { metadata: { name: 'otel-collector', labels: { app: 'otel-collector' } }, spec: { nodeName: 'node2', containers: [{ name: 'main', image: 'local', command: [NODE, RECEIVER, '4318', '4317'] }] } } as k8s.V1Pod });
  await mesh.core.createNamespacedService({ namespace: 'observability', body: { metadata: { name: 'otel-collector' }, spec: { selector: { app: 'otel-collector' }, ports: [{ name: 'otlp-http', port: 4318, targetPort: 4318 as unknown as k8s.IntOrString }, { name: 'otlp-grpc', port: 4317, targetPort: 4317 as unknown as k8s.IntOrString }] } } });
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient', 'mesh.io/use-waypoint': 'waypoint' } } } });
  const app = (name: string, script: string, node: string) =>
    mesh.core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name, labels: { app: name } }, spec: { nodeName: node, containers: [{ name: 'main', image: 'local', command: [NODE, '-e', script, name] }] } } as k8s.V1Pod });
  await app('front', FRONT, 'node1');
  await app('back', HTTP_ECHO_SERVER, 'node2');
  // A namespace without a waypoint: ztunnel to ztunnel, for the L4 spans.
  await mesh.core.createNamespace({ body: { metadata: { name: 'direct', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  await mesh.core.createNamespacedPod({ namespace: 'direct', body: { metadata: { name: 'echo', labels: { app: 'echo' } }, spec: { nodeName: 'node2', containers: [{ name: 'main', image: 'local', command: [NODE, '-e', HTTP_ECHO_SERVER, 'echo'] }] } } as k8s.V1Pod });
  await mesh.core.createNamespacedService({ namespace: 'direct', body: { metadata: { name: 'echo' }, spec: { selector: { app: 'echo' }, ports: [{ name: 'http', port: 80, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
  for (const name of ['front', 'back']) {
    await mesh.core.createNamespacedService({ namespace: 'shop', body: { metadata: { name }, spec: { selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
  }
  const f = `${mesh.stateDir}/waypoint.yaml`;
  writeFileSync(f, 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\nspec:\n  gatewayClassName: mesh-waypoint\n  listeners:\n  - {name: mesh, port: 15008, protocol: HBONE}\n');
  await mesh.kubectl('apply', '-f', f);
  await waitFor('the waypoint Programmed', async () => {
    const { stdout } = await mesh.kubectl('get', 'gateway', '-n', 'shop', 'waypoint', '-o', 'jsonpath={.status.conditions[?(@.type=="Programmed")].status}');
    return stdout === 'True' ? true : undefined;
  }, 60_000);
  await waitFor('the collector listening', () => (readFileSync(`${mesh.stateDir}/logs/observability_otel-collector_main.log`, 'utf8').includes('OTLP receiver listening') ? true : undefined), 30_000);
});

test.serial('traces-two-hops: one request through two waypoint hops is one trace, each span a child of the one before, with the mesh attributes', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const res = await request({ traceparent: `00-${TRACE}-${CALLER}-01` });
  t.is(res.status, 200, JSON.stringify(res));
  const spans = await waitFor('two spans of the trace', () => {
    const mine = received().filter((s) => s.traceId === TRACE);
    return mine.length >= 2 ? mine : undefined;
  }, 30_000);
  t.is(spans.length, 2, JSON.stringify(spans));
  const first = spans.find((s) => s.parentSpanId === CALLER);
  t.truthy(first, 'the first hop continues the caller');
  const second = spans.find((s) => s.parentSpanId === first!.spanId);
  t.truthy(second, "the second hop is the first's child (front forwarded the header it got)");
  t.log(`trace ${TRACE}: ${first!.name} (${first!.spanId}, ${(first!.endMs - first!.startMs).toFixed(1)} ms) → ${second!.name} (${second!.spanId}, ${(second!.endMs - second!.startMs).toFixed(1)} ms)`);
  for (const [s, src, dst] of [
    [first!, 'client-', 'front'],
    [second!, 'front', 'back'],
  ] as const) {
    t.is(s.kind, 2, 'SERVER');
    t.is(s.name, `${dst}.shop.svc.cluster.local:80/*`);
    t.like(s.resource, { 'service.name': 'waypoint.shop', 'mesh.reporter': 'waypoint', 'k8s.namespace.name': 'shop' });
    t.like(s.attributes, { 'http.request.method': 'GET', 'http.response.status_code': 200, 'mesh.destination.workload': dst, 'mesh.destination.namespace': 'shop', 'mesh.destination.service': `${dst}.shop.svc.cluster.local`, 'mesh.source.namespace': 'shop' });
    t.true(String(s.attributes['mesh.source.workload']).startsWith(src), `source ${s.attributes['mesh.source.workload']}`);
    t.is(s.attributes['mesh.source.principal'], 'spiffe://cluster.local/ns/shop/sa/default');
    t.is(s.attributes['mesh.destination.principal'], 'spiffe://cluster.local/ns/shop/sa/default');
  }
  // back got the second hop's context: trace kept, parent = the second span.
  const backSaw = JSON.parse(res.headers['x-back-saw']!) as Record<string, string>;
  t.regex(backSaw['traceparent']!, new RegExp(`^00-${TRACE}-${second!.spanId}-01$`));
  t.true(first!.startMs <= second!.startMs && second!.endMs <= first!.endMs + 1, 'the second hop happens within the first');
});

test.serial('traces-b3: a B3 caller continues its trace through the waypoints and its app gets B3 back', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const trace = 'a3ce929d0e0e47364bf92f3577b34da6';
  const res = await request({ 'x-b3-traceid': trace, 'x-b3-spanid': CALLER, 'x-b3-sampled': '1' });
  t.is(res.status, 200, JSON.stringify(res));
  const frontSaw = JSON.parse(res.headers['x-front-saw']!) as Record<string, string>;
  t.is(frontSaw['x-b3-traceid'], trace);
  t.regex(frontSaw['traceparent']!, new RegExp(`^00-${trace}-${frontSaw['x-b3-spanid']}-01$`), 'W3C and B3 name the same span');
  const spans = await waitFor('the B3 trace', () => {
    const mine = received().filter((s) => s.traceId === trace);
    return mine.length >= 2 ? mine : undefined;
  }, 30_000);
  t.truthy(spans.find((s) => s.parentSpanId === CALLER && s.spanId === frontSaw['x-b3-spanid']));
});

test.serial('traces-unsampled: a request nobody sampled reaches the app with a traceparent but makes no span', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const trace = '0e0e47364bf92f3577b34da6a3ce929d';
  const res = await request({ traceparent: `00-${trace}-${CALLER}-00` });
  t.is(res.status, 200);
  t.regex((JSON.parse(res.headers['x-front-saw']!) as Record<string, string>)['traceparent']!, new RegExp(`^00-${trace}-[0-9a-f]{16}-00$`));
  // Two flush intervals and more after the sampled requests' spans arrived: none of this trace.
  await new Promise((r) => setTimeout(r, 1500));
  t.deepEqual(received().filter((s) => s.traceId === trace), []);
});

test.serial("traces-l4: with L4 spans on, the source ztunnel's CLIENT span and the destination's SERVER span of one connection share a trace", async (t) => {
  if (!mesh) return t.fail('no mesh');
  const res = await request({}, 'http://echo/', 'direct');
  t.is(res.status, 200, JSON.stringify(res));
  const pair = await waitFor('the L4 spans of the connection', () => {
    const l4 = l4Receiver.spans.filter((s) => s.resource['mesh.reporter'] === 'ztunnel' && s.attributes['mesh.destination.workload'] === 'echo');
    const server = l4.find((s) => s.kind === 2);
    const client = server && l4.find((s) => s.kind === 3 && s.spanId === server.parentSpanId);
    return client && server ? { client, server } : undefined;
  }, 30_000);
  t.is(pair.server.traceId, pair.client.traceId);
  t.regex(pair.client.name, /^10\.96\.\d+\.\d+:80$/, 'named after the address the app dialled (the VIP)');
  t.like(pair.client.attributes, { 'mesh.reporter': 'source', 'mesh.connection_security_policy': 'mutual_tls', 'mesh.destination.service': 'echo.direct.svc.cluster.local' });
  t.like(pair.server.attributes, { 'mesh.reporter': 'destination', 'mesh.source.principal': 'spiffe://cluster.local/ns/direct/sa/default' });
  t.like(pair.client.resource, { 'service.name': 'ztunnel.mesh-system', 'k8s.node.name': 'node1' });
  t.like(pair.server.resource, { 'k8s.node.name': 'node2' });
  t.log(`L4 spans: ${pair.client.name} CLIENT ${(pair.client.endMs - pair.client.startMs).toFixed(1)} ms, SERVER ${(pair.server.endMs - pair.server.startMs).toFixed(1)} ms`);
});

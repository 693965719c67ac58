// The service map without a cluster: flows folded into edges (rates, errors, p99, mTLS, denials,
// waypoints), the dashboard's flow queries against meshctl flows' own request building, and the
// HTTP server (page, libraries, SSE, /api/flows) with flows from an in-memory source.
import test from 'ava';
import { buildRequest, type FlowsOptions } from '../../src/cli/commands/flows.ts';
import { flowsRequest, type FlowSource, type Inventory, ServiceGraph, startDashboard } from '../../src/controller/dashboard/index.ts';
import { requestMatches } from '../../src/flows/filter.ts';
import type { Flow, GetFlowsRequest, GetFlowsResponse } from '../../src/flows/types.ts';
import { type FlowOverrides, meshFlow } from '../helpers/flows.ts';

const NOW = 1_800_000_000_000;
let n = 0;
function flow(over: FlowOverrides & { at?: number } = {}): Flow {
  n++;
  const { at, ...rest } = over;
  return meshFlow(n, { timeUnixNano: ((at ?? NOW - 1000) + (n % 7)) * 1e6, destinationService: 'catalog.shop.svc.cluster.local', durationMs: 5, ...rest }, { src: 'shop/frontend', dst: 'shop/catalog' });
}

const INVENTORY: Inventory = {
  workloads: [
    { namespace: 'shop', name: 'frontend', serviceAccount: 'frontend', inMesh: true },
    { namespace: 'shop', name: 'catalog', serviceAccount: 'catalog', inMesh: true },
    { namespace: 'shop', name: 'idle', serviceAccount: 'idle', inMesh: false },
  ],
  services: [{ namespace: 'shop', name: 'catalog', hostname: 'catalog.shop.svc.cluster.local', waypoint: '' }],
};

test('graph: a call through a Service is client → service → backend, counted once though both ztunnels report it', (t) => {
  const g = new ServiceGraph({ windowMs: 10_000 });
  for (let i = 0; i < 20; i++) {
    g.add(flow({ reporter: 'ztunnel-source', durationMs: i === 0 ? 900 : 5 }));
    g.add(flow({ reporter: 'ztunnel-destination', trafficDirection: 'INGRESS' }));
  }
  const s = g.snapshot(INVENTORY, NOW);
  t.deepEqual(s.edges.map((e) => e.id).sort(), ['svc:shop/catalog->wl:shop/catalog', 'wl:shop/frontend->svc:shop/catalog']);
  const e = s.edges.find((x) => x.source === 'wl:shop/frontend')!;
  t.is(e.rate, 2, '20 connections over a 10 s window, not 40');
  t.is(e.unit, 'conn/s');
  t.is(e.security, 'mtls');
  t.is(e.errorRate, 0);
  t.is(e.p99Ms, 900);
  t.false(e.deniedNow);
  t.deepEqual(e.filter, { 'from-pod': 'shop/frontend', 'to-service': 'catalog.shop.svc.cluster.local' });
  t.truthy(s.nodes.find((x) => x.id === 'wl:shop/idle'), 'workloads without traffic are drawn too');
});

test('graph: denials mark the edge; plaintext, errors and idle edges are told apart', (t) => {
  const g = new ServiceGraph({ windowMs: 10_000, keepMs: 60_000 });
  g.add(flow({ verdict: 'DROPPED', reporter: 'ztunnel-destination', dropReasonDesc: 'Policy denied', responseFlags: 'DENY' }));
  g.add(flow({ verdict: 'DROPPED', reporter: 'ztunnel-source', responseFlags: 'DENY' }));
  g.add(flow({ src: 'shop/loadgen', dst: 'shop/frontend', destinationService: '', ip: { source: '10.0.0.9', destination: '10.0.0.8', ipVersion: 4, encrypted: false }, reporter: 'kernel' }));
  g.add(flow({ src: 'shop/orders', dst: 'shop/payments', destinationService: '', verdict: 'ERROR' }));
  g.add(flow({ src: 'shop/orders', dst: 'shop/payments', destinationService: '' }));
  g.add(flow({ src: 'shop/old', dst: 'shop/gone', destinationService: '', at: NOW - 30_000 }));
  const s = g.snapshot(INVENTORY, NOW);
  const by = (id: string) => s.edges.find((e) => e.id === id)!;
  const denied = by('wl:shop/frontend->svc:shop/catalog');
  t.true(denied.deniedNow);
  t.is(denied.denied, 1, 'one denied connection, reported by both ends');
  t.is(by('wl:shop/loadgen->wl:shop/frontend').security, 'plaintext');
  t.is(by('wl:shop/orders->wl:shop/payments').errorRate, 0.5);
  const idle = by('wl:shop/old->wl:shop/gone');
  t.is(idle.flows, 0, 'outside the window: drawn, idle');
  t.is(g.snapshot(INVENTORY, NOW + 120_000).edges.length, 0, 'and gone after keepMs');
});

test('graph: a waypoint on the path, from its L7 flows (requests per second, HTTP errors, request p99)', (t) => {
  const g = new ServiceGraph({ windowMs: 10_000 });
  const inv: Inventory = { ...INVENTORY, services: [{ namespace: 'shop', name: 'catalog', hostname: 'catalog.shop.svc.cluster.local', waypoint: 'shop/waypoint' }] };
  for (let i = 0; i < 10; i++) {
    g.add(flow({ type: 'L7', reporter: 'waypoint shop/waypoint', destinationService: 'catalog.shop.svc.cluster.local', l7: { latencyNs: (i + 1) * 1e6, http: { code: i < 2 ? 503 : 200, method: 'GET', url: '/', protocol: 'HTTP/1.1' } } }));
  }
  // The source ztunnel's flow goes to the waypoint pod: it is a hop, not catalog's backend.
  g.add(flow({ dst: 'shop/waypoint' }));
  const s = g.snapshot(inv, NOW);
  const e = s.edges.find((x) => x.id === 'wl:shop/frontend->svc:shop/catalog')!;
  t.is(e.waypoint, 'shop/waypoint');
  t.is(e.unit, 'req/s');
  t.is(e.rate, 1);
  t.is(e.errorRate, 0.2);
  t.is(e.p99Ms, 10);
  t.falsy(s.edges.find((x) => x.target === 'wl:shop/waypoint'), 'no edge from the service to its waypoint');
});

const opts = (o: Partial<FlowsOptions>): FlowsOptions => ({
  stateDir: '/nonexistent', namespace: [], pod: [], fromPod: [], toPod: [], fromNamespace: [], toNamespace: [], identity: [], fromIdentity: [], toIdentity: [],
  ip: [], fromIp: [], toIp: [], port: [], fromPort: [], toPort: [], verdict: [], protocol: [], nodeName: [], trafficDirection: [], toService: [], output: 'compact', ...o,
});

test('query: the dashboard builds the same request as meshctl flows for the same flags', (t) => {
  const cases: [string, Partial<FlowsOptions>][] = [
    ['namespace=shop&verdict=DROPPED&last=20', { namespace: ['shop'], verdict: ['DROPPED'], last: 20 }],
    ['from-pod=shop/frontend&to-service=catalog.shop.svc.cluster.local&last=5', { fromPod: ['shop/frontend'], toService: ['catalog.shop.svc.cluster.local'], last: 5 }],
    ['pod=web&namespace=shop&protocol=mtls&port=8080&last=9', { pod: ['web'], namespace: ['shop'], protocol: ['mtls'], port: [8080], last: 9 }],
    ['identity=shop/frontend&traffic-direction=ingress&node-name=node1&last=3', { identity: ['shop/frontend'], trafficDirection: ['INGRESS'], nodeName: ['node1'], last: 3 }],
    // Hubble's newer filters and --not, as "not-" before the parameter.
    ['label=app%3Dweb&http-status=5%2B&type=l7&not-namespace=kube-system&last=7', { label: ['app=web'], httpStatus: ['5+'], type: ['l7'], not: { namespace: ['kube-system'] }, last: 7 }],
  ];
  for (const [q, o] of cases) {
    const ours = flowsRequest(new URLSearchParams(q), NOW);
    const theirs = buildRequest(opts(o), NOW);
    t.deepEqual(ours, theirs, q);
  }
  // The filters mean what filter.ts says: a DROPPED flow into shop matches the first case.
  t.true(requestMatches(flow({ verdict: 'DROPPED' }), flowsRequest(new URLSearchParams('namespace=shop&verdict=DROPPED'), NOW)));
  t.false(requestMatches(flow(), flowsRequest(new URLSearchParams('namespace=shop&verdict=DROPPED'), NOW)));
});

test('query: bad filters are refused with what is wrong', (t) => {
  t.throws(() => flowsRequest(new URLSearchParams('verdcit=DROPPED')), { message: /unknown flows filter "verdcit"/ });
  t.throws(() => flowsRequest(new URLSearchParams('verdict=DENIED')), { message: /verdict=DENIED: DENIED is not a verdict/ });
  t.throws(() => flowsRequest(new URLSearchParams('http-status=5xx')), { message: /http-status=5xx/ });
  t.throws(() => flowsRequest(new URLSearchParams('port=99999')), { message: /not a port/ });
  t.throws(() => flowsRequest(new URLSearchParams('since=yesterday')), { message: /neither a duration/ });
});

function memorySource(flows: Flow[]): FlowSource & { follows: number; requests: GetFlowsRequest[]; push(f: Flow): void } {
  const listeners = new Set<(f: Flow) => void>();
  const src = {
    follows: 0,
    requests: [] as GetFlowsRequest[],
    push(f: Flow) {
      flows.push(f);
      for (const l of listeners) l(f);
    },
    follow(onFlow: (f: Flow) => void) {
      src.follows++;
      listeners.add(onFlow);
      return { stop: () => listeners.delete(onFlow) };
    },
    async history(req: GetFlowsRequest): Promise<GetFlowsResponse[]> {
      src.requests.push(req);
      const matched = flows.filter((f) => requestMatches(f, req));
      return (req.number ? matched.slice(-req.number) : matched).map((f) => ({ responseTypes: 'flow', flow: f, nodeName: f.nodeName, timeUnixNano: f.timeUnixNano }));
    },
    close() {},
  };
  return src;
}

test('server: serves the page and its libraries, streams the map live, and answers flow queries with meshctl filters', async (t) => {
  const now = Date.now();
  const src = memorySource([flow({ at: now - 2000 }), flow({ at: now - 1000, verdict: 'DROPPED', reporter: 'ztunnel-source' })]);
  const d = await startDashboard({ host: '127.0.0.1', port: 0, source: src, inventory: () => INVENTORY, peersKey: () => 'a', pushMs: 100 });
  t.teardown(() => d.close());
  const page = await (await fetch(d.url)).text();
  t.regex(page, /<script src="\/lib\/cytoscape.min.js">/);
  const lib = await fetch(new URL('/lib/cytoscape.min.js', d.url));
  t.is(lib.status, 200);
  t.true((await lib.text()).length > 100_000, 'the library itself, from node_modules');
  t.is((await fetch(new URL('/lib/cytoscape-dagre.min.js', d.url))).status, 200);
  t.is((await fetch(new URL('/static/app.js', d.url))).status, 200);

  // Live: the history fill shows at once; a flow pushed later arrives in a later frame.
  const ctl = new AbortController();
  const res = await fetch(new URL('/api/events', d.url), { signal: ctl.signal });
  t.is(res.headers.get('content-type'), 'text/event-stream');
  const reader = res.body!.getReader();
  let text = '';
  const frames = async (until: (s: string) => boolean) => {
    const deadline = Date.now() + 5000;
    while (!until(text) && Date.now() < deadline) text += new TextDecoder().decode((await reader.read()).value);
    return text;
  };
  await frames((s) => s.includes('"deniedNow":true'));
  t.regex(text, /event: graph\ndata: \{/);
  src.push(flow({ at: Date.now(), src: 'shop/loadgen', dst: 'shop/frontend', destinationService: '' }));
  await frames((s) => s.includes('wl:shop/loadgen->wl:shop/frontend'));
  t.regex(text, /wl:shop\/loadgen->wl:shop\/frontend/);
  ctl.abort();

  const q = await (await fetch(new URL('/api/flows?from-pod=shop/frontend&verdict=DROPPED', d.url))).json() as { flows: Flow[] };
  t.is(q.flows.length, 1);
  t.is(q.flows[0]!.verdict, 'DROPPED');
  const bad = await fetch(new URL('/api/flows?verdict=NOPE', d.url));
  t.is(bad.status, 400);
  t.regex(((await bad.json()) as { error: string }).error, /not a verdict/);
  t.is((await fetch(new URL('/nothing', d.url))).status, 404);
});

test('server: a new node reopens the follow stream', async (t) => {
  let key = 'node1';
  const src = memorySource([]);
  const d = await startDashboard({ host: '127.0.0.1', port: 0, source: src, inventory: () => INVENTORY, peersKey: () => key });
  t.teardown(() => d.close());
  await fetch(new URL('/api/graph', d.url));
  t.is(src.follows, 1);
  key = 'node1,node2';
  await new Promise((r) => setTimeout(r, 2500));
  t.is(src.follows, 2);
});

test('server: flows are followed only while someone looks at the map; a map asked for after a quiet spell is filled from history first', async (t) => {
  const now = Date.now();
  const src = memorySource([flow({ at: now - 1000, src: 'shop/loadgen', dst: 'shop/frontend', destinationService: '' })]);
  let stopped = 0;
  const follow = src.follow.bind(src);
  src.follow = (onFlow: (f: Flow) => void, onEnd: (why: string) => void) => {
    const f = follow(onFlow, onEnd);
    return { stop: () => (stopped++, f.stop()) };
  };
  const d = await startDashboard({ host: '127.0.0.1', port: 0, source: src, inventory: () => INVENTORY, peersKey: () => 'a', idleMs: 500 });
  t.teardown(() => d.close());
  t.is(src.follows, 0, 'no viewer, no flow stream');
  const map = (await (await fetch(new URL('/api/graph', d.url))).json()) as { edges: { id: string }[] };
  t.is(src.follows, 1);
  t.true(map.edges.some((e) => e.id === 'wl:shop/loadgen->wl:shop/frontend'), 'the first answer already has the flows from before it (history fill)');
  // No viewer for idleMs: the stream stops at the next check (every 2 s).
  await new Promise((r) => setTimeout(r, 2600));
  t.is(stopped, 1, 'stopped once idle');
  // A live viewer keeps it however long it stays.
  const ctl = new AbortController();
  const res = await fetch(new URL('/api/events', d.url), { signal: ctl.signal });
  void res.body!.getReader().read();
  t.is(src.follows, 2);
  await new Promise((r) => setTimeout(r, 2600));
  t.is(stopped, 1, 'kept while the page is open');
  ctl.abort();
});

test('server: a port in use is refused with the setting to change, and nothing is left running', async (t) => {
  const src = memorySource([]);
  let closed = 0;
  src.close = () => void closed++;
  const first = await startDashboard({ host: '127.0.0.1', port: 0, source: memorySource([]), inventory: () => INVENTORY, peersKey: () => '' });
  t.teardown(() => first.close());
  const err = await t.throwsAsync(startDashboard({ host: '127.0.0.1', port: first.port, source: src, inventory: () => INVENTORY, peersKey: () => '' }));
  t.regex(err!.message, /cannot listen on 127\.0\.0\.1:\d+: .*MESH_DASHBOARD_PORT/);
  t.is((err as Error & { code?: string }).code, 'MESH_ERR_DASHBOARD_LISTEN');
  t.is(closed, 1, 'its flow source is closed');
});

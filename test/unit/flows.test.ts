// The flows machinery without the kernel: the ring, Hubble's filter semantics, meshctl's filter
// building, the per-node Observer over real gRPC (history, follow, lost events when a reader
// falls a ring behind) and the relay merging two nodes and reporting one that is down.
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { FlowCollector, splitAddr } from '../../src/agent/flows.ts';
import { buildRequest, compactLine, type FlowsOptions } from '../../src/cli/commands/flows.ts';
import type { DatapathEvent } from '../../src/datapath/index.ts';
import { requestMatches } from '../../src/flows/filter.ts';
import { localObserver } from '../../src/flows/local.ts';
import { Relay } from '../../src/flows/relay.ts';
import { FlowRing } from '../../src/flows/ring.ts';
import { observerClient, serveObserver, type ServingObserver, unary } from '../../src/flows/server.ts';
import type { Flow, GetFlowsRequest, GetFlowsResponse, ServerStatus } from '../../src/flows/types.ts';
import { type FlowOverrides, meshFlow } from '../helpers/flows.ts';

let n = 0;
function flow(over: FlowOverrides = {}): Flow {
  return meshFlow(++n, over, { src: 'shop/client', dst: 'shop/web' });
}

const opts = (o: Partial<FlowsOptions> = {}): FlowsOptions => ({
  stateDir: '/nonexistent',
  namespace: [], pod: [], fromPod: [], toPod: [], fromNamespace: [], toNamespace: [], identity: [], fromIdentity: [], toIdentity: [],
  ip: [], fromIp: [], toIp: [], port: [], fromPort: [], toPort: [], verdict: [], protocol: [], nodeName: [], trafficDirection: [], toService: [],
  output: 'compact',
  ...o,
});

test('the ring keeps the newest items and counts what it overwrote', (t) => {
  const ring = new FlowRing(4);
  for (let i = 0; i < 10; i++) ring.push(flow());
  t.is(ring.size, 4);
  t.is(ring.seenFlows, 10);
  t.is(ring.overwritten, 6);
  t.is(ring.at(5), undefined, 'overwritten');
  t.truthy(ring.at(9));
  t.throws(() => new FlowRing(0), { message: /positive integer/ });
});

test('filters: fields AND, values OR, whitelist OR, blacklist excludes', (t) => {
  const a = flow({ src: 'shop/client', dst: 'shop/web' });
  const b = flow({ src: 'shop/client', dst: 'shop/db', verdict: 'DROPPED' });
  const c = flow({ src: 'other/x', dst: 'shop/web', ip: { source: '10.9.0.1', destination: '10.101.0.2', ipVersion: 4, encrypted: false } });
  const keep = (req: GetFlowsRequest) => [a, b, c].filter((f) => requestMatches(f, req)).map((f) => f.uuid);
  t.deepEqual(keep({ whitelist: [{ sourcePod: ['shop/'] }] }), [a.uuid, b.uuid]);
  t.deepEqual(keep({ whitelist: [{ sourcePod: ['shop/'], verdict: ['DROPPED'] }] }), [b.uuid]);
  t.deepEqual(keep({ whitelist: [{ destinationPod: ['shop/db'] }, { sourcePod: ['other/'] }] }), [b.uuid, c.uuid]);
  t.deepEqual(keep({ blacklist: [{ destinationPod: ['shop/web'] }] }), [b.uuid]);
  t.deepEqual(keep({ whitelist: [{ protocol: ['plaintext'] }] }), [c.uuid]);
  t.deepEqual(keep({ whitelist: [{ sourceIp: ['10.9.0.0/16'] }] }), [c.uuid]);
  t.deepEqual(keep({ whitelist: [{ destinationIdentity: ['shop/db'] }] }), [b.uuid]);
  t.deepEqual(keep({ whitelist: [{ destinationIdentity: ['spiffe://cluster.local/ns/shop/sa/web'] }] }), [a.uuid, c.uuid]);
  t.deepEqual(keep({ sinceUnixNano: b.timeUnixNano }), [b.uuid, c.uuid]);
});

test('meshctl flows builds hubble\'s filters: neutral flags make a source and a destination filter', (t) => {
  const r = buildRequest(opts({ pod: ['web'], namespace: ['shop'], verdict: ['DROPPED'] }));
  t.deepEqual(r.whitelist, [
    { sourcePod: ['shop/web', 'shop/'], verdict: ['DROPPED'] },
    { destinationPod: ['shop/web', 'shop/'], verdict: ['DROPPED'] },
  ]);
  t.is(r.number, 20, 'hubble\'s default --last 20');
  const d = buildRequest(opts({ fromPod: ['shop/client'], toPod: ['db'], first: 5 }));
  t.deepEqual(d.whitelist, [{ sourcePod: ['shop/client'], destinationPod: ['default/db'] }]);
  t.true(d.first);
  t.is(d.number, 5);
  const f = buildRequest(opts({ follow: true, since: '5m' }), 1_000_000);
  t.is(f.number, undefined);
  t.is(f.sinceUnixNano, (1_000_000 - 300_000) * 1e6);
});

test('compact output reads like hubble observe, with SPIFFE identities and mTLS', (t) => {
  const f = flow({ timeUnixNano: Date.UTC(2026, 10, 22, 3, 4, 5, 678) * 1e6 });
  const line = compactLine({ responseTypes: 'flow', flow: f, nodeName: 'node1', timeUnixNano: f.timeUnixNano }, true);
  t.is(
    line,
    `Nov 22 03:04:05.678 [node1]: shop/client:${f.tcp.sourcePort} (spiffe://cluster.local/ns/shop/sa/client) -> shop/web:8080 (spiffe://cluster.local/ns/shop/sa/web) egress FORWARDED (HBONE mTLS, 10 B → 20 B ←, 1 ms)`,
  );
});

async function serveRing(t: import('ava').ExecutionContext, ring: FlowRing, nodeName: string): Promise<ServingObserver> {
  const s = await serveObserver(
    localObserver({ ring, nodeName, version: 'test', status: () => ({ kernelEventsLost: 0, ztunnelRecordsLost: 0, enrolledPods: 1, ztunnelConnected: true }) }),
    '127.0.0.1:0',
    grpc.ServerCredentials.createInsecure(),
  );
  t.teardown(() => s.close());
  return s;
}

function read(address: string, req: GetFlowsRequest, until: (got: GetFlowsResponse[]) => boolean = () => false): Promise<GetFlowsResponse[]> {
  const c = observerClient(address, grpc.credentials.createInsecure());
  const got: GetFlowsResponse[] = [];
  return new Promise((resolve, reject) => {
    const s = c.GetFlows(req);
    const timer = setTimeout(() => s.cancel(), 10_000);
    s.on('data', (r: GetFlowsResponse) => {
      got.push(r);
      if (until(got)) s.cancel();
    });
    s.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve(got) : reject(e)));
    s.on('end', () => resolve(got));
    s.on('close', () => {
      clearTimeout(timer);
      c.close();
    });
  });
}

test('observer: last N, first N with the overwritten count, and follow', async (t) => {
  const ring = new FlowRing(8);
  const made = Array.from({ length: 12 }, () => flow());
  for (const f of made) ring.push(f);
  const s = await serveRing(t, ring, 'node1');
  const addr = `127.0.0.1:${s.port}`;
  const last = await read(addr, { number: 3 });
  t.deepEqual(last.map((r) => (r.responseTypes === 'flow' ? r.flow.uuid : '')), made.slice(-3).map((f) => f.uuid));
  const first = await read(addr, { number: 2, first: true });
  t.is(first[0]?.responseTypes, 'lostEvents', 'asking for the oldest says what is gone');
  t.like(first[0], { lostEvents: { source: 'FLOW_RING_BUFFER', numEventsLost: 4 } });
  t.deepEqual(first.slice(1).map((r) => (r.responseTypes === 'flow' ? r.flow.uuid : '')), made.slice(4, 6).map((f) => f.uuid));
  const later = flow({ src: 'shop/late' });
  const followed = read(addr, { follow: true, whitelist: [{ sourcePod: ['shop/late'] }] }, (g) => g.length >= 1);
  await new Promise((r) => setTimeout(r, 300));
  ring.push(flow());
  ring.push(later);
  const got = await followed;
  t.deepEqual(got.map((r) => (r.responseTypes === 'flow' ? r.flow.uuid : r.responseTypes)), [later.uuid], 'only new, matching flows');
});

test('observer: a follower that falls a whole ring behind gets a LostEvent, never a silent gap', async (t) => {
  const ring = new FlowRing(8);
  const s = await serveRing(t, ring, 'node1');
  const followed = read(`127.0.0.1:${s.port}`, { follow: true }, (g) => g.filter((r) => r.responseTypes === 'flow').length >= 8);
  await new Promise((r) => setTimeout(r, 300));
  const burst = Array.from({ length: 30 }, () => flow());
  for (const f of burst) ring.push(f); // one burst, faster than the reader is scheduled
  const got = await followed;
  t.like(got[0], { responseTypes: 'lostEvents', lostEvents: { source: 'FLOW_RING_BUFFER', numEventsLost: 22 } });
  t.deepEqual(got.slice(1).map((r) => (r.responseTypes === 'flow' ? r.flow.uuid : '')), burst.slice(-8).map((f) => f.uuid));
});

test('relay: merges two nodes by time, cuts to the number overall, and reports a node that is down', async (t) => {
  const [r1, r2] = [new FlowRing(), new FlowRing()];
  const all: Flow[] = [];
  for (let i = 0; i < 6; i++) {
    const f = flow({ nodeName: i % 2 ? 'node2' : 'node1' });
    all.push(f);
    (i % 2 ? r2 : r1).push(f);
  }
  const [s1, s2] = [await serveRing(t, r1, 'node1'), await serveRing(t, r2, 'node2')];
  let peers = [
    { name: 'node1', address: `127.0.0.1:${s1.port}`, configClients: [] },
    { name: 'node2', address: `127.0.0.1:${s2.port}`, configClients: [] },
  ];
  const relay = new Relay({ peers: () => peers, credentials: grpc.credentials.createInsecure(), version: 'test', timeoutMs: 1000 });
  t.teardown(() => relay.close());
  const rs = await serveObserver(relay.service(), '127.0.0.1:0', grpc.ServerCredentials.createInsecure());
  t.teardown(() => rs.close());
  const addr = `127.0.0.1:${rs.port}`;
  const merged = await read(addr, { number: 4 });
  t.deepEqual(merged.map((r) => (r.responseTypes === 'flow' ? `${r.nodeName}:${r.flow.uuid}` : r.responseTypes)), all.slice(-4).map((f) => `${f.nodeName}:${f.uuid}`));
  const c = observerClient(addr, grpc.credentials.createInsecure());
  t.teardown(() => c.close());
  const st = await unary<ServerStatus>((o, cb) => c.ServerStatus({}, o, cb));
  t.like(st, { numFlows: 6, numConnectedNodes: 2, numUnavailableNodes: 0, maxFlows: 2 * 4095 });
  peers = [...peers, { name: 'node3', address: '127.0.0.1:1', configClients: [] }];
  const withDown = await read(addr, { number: 2 });
  t.true(withDown.some((r) => r.responseTypes === 'nodeStatus' && r.nodeStatus.state === 'UNAVAILABLE' && r.nodeStatus.nodeNames[0] === 'node3'), 'the unreachable node is reported');
  t.is(withDown.filter((r) => r.responseTypes === 'flow').length, 2, 'the others still answer');
  const st2 = await unary<ServerStatus>((o, cb) => c.ServerStatus({}, o, cb));
  t.deepEqual(st2.unavailableNodes, ['node3']);
});

test('collector: joins ztunnel\'s record with the kernel capture by socket cookie, and names the ends', (t) => {
  const ring = new FlowRing(16);
  const col = new FlowCollector({
    ring,
    nodeName: 'node2',
    resolve: (ip) => (ip === '10.101.0.3' ? { namespace: 'shop', podName: 'client', serviceAccount: 'client', nodeName: 'node2' } : ip === '10.100.0.2' ? { namespace: 'shop', podName: 'web', nodeName: 'node1' } : undefined),
  });
  const ev = (over: Partial<DatapathEvent>): DatapathEvent => ({
    tsNs: process.hrtime.bigint(), sockCookie: 77n, netnsCookie: 5n, kind: 'CAPTURED', reason: '', family: 4, src: '0.0.0.0', sport: 0, dst: '10.100.0.2', dport: 8080, newPort: 15001, podId: 1, bytesSent: 0n, bytesRecv: 0n, startNs: 0n, ...over,
  });
  col.onKernelEvents([ev({})]);
  col.onRecord({
    direction: 'outbound', startMs: Date.now(), mtls: true, flags: '-', sockCookie: '77',
    src: { addr: '10.101.0.3:40000', workload: 'client', namespace: 'shop', identity: 'spiffe://cluster.local/ns/shop/sa/client' },
    dst: { addr: '10.100.0.2:8080', hboneAddr: '10.100.0.2:8080', workload: 'web', namespace: 'shop', identity: 'spiffe://cluster.local/ns/shop/sa/web' },
    bytesSent: 5, bytesRecv: 7, durationMs: 3,
  });
  col.onKernelEvents([ev({ kind: 'REFUSED', reason: 'no-ztunnel-socket', sockCookie: 0n, src: '10.100.0.2', sport: 5555, dst: '10.101.0.3', dport: 8080, newPort: 0 })]);
  const flows = [0, 1].map((i) => ring.at(i)).map((it) => (it && 'flow' in it ? it.flow : undefined));
  t.like(flows[0], { verdict: 'FORWARDED', trafficDirection: 'EGRESS', protocol: 'HBONE', bytesSent: 5, bytesReceived: 7, kernel: { decision: 'CAPTURED', socketCookie: 77, redirectPort: 15001 } });
  t.like(flows[0]?.source, { podName: 'client', serviceAccount: 'client', identity: 'spiffe://cluster.local/ns/shop/sa/client' });
  t.like(flows[1], { verdict: 'DROPPED', trafficDirection: 'INGRESS', reporter: 'kernel', kernel: { decision: 'REFUSED', reason: 'no-ztunnel-socket' } });
  t.like(flows[1]?.source, { podName: 'web' });
  t.deepEqual(col.pending(), { captured: 0, steered: 0 }, 'the capture was consumed by the join');
});

test('collector: a pod outside the mesh is one OBSERVED event at the close, one plaintext flow from when it began', (t) => {
  const ring = new FlowRing(16);
  const col = new FlowCollector({
    ring,
    nodeName: 'node1',
    resolve: (ip) => (ip === '10.101.0.9' ? { namespace: 'plain', podName: 'legacy', inMesh: false, notCapturedReason: 'namespace plain has no mesh.io/dataplane-mode=ambient label' } : ip === '10.100.0.2' ? { namespace: 'shop', podName: 'web', service: 'web.shop.svc.cluster.local' } : undefined),
  });
  const closedNs = process.hrtime.bigint();
  const startNs = closedNs - 250_000_000n;
  col.onKernelEvents([{
    tsNs: closedNs, startNs, sockCookie: 42n, netnsCookie: 5n, kind: 'OBSERVED', reason: '', family: 4,
    src: '10.101.0.9', sport: 41000, dst: '10.100.0.2', dport: 8080, newPort: 8080, podId: 0, bytesSent: 12n, bytesRecv: 345n,
  }]);
  const it = ring.at(0);
  const f = it && 'flow' in it ? it.flow : undefined;
  t.like(f, {
    verdict: 'FORWARDED',
    reporter: 'kernel',
    summary: 'TCP plaintext (not in the mesh)',
    ip: { source: '10.101.0.9', destination: '10.100.0.2', encrypted: false },
    tcp: { sourcePort: 41000, destinationPort: 8080 },
    bytesSent: 12,
    bytesReceived: 345,
    durationMs: 250,
    destinationService: 'web.shop.svc.cluster.local',
    notCapturedReason: 'namespace plain has no mesh.io/dataplane-mode=ambient label',
    kernel: { decision: 'OBSERVED', socketCookie: 42 },
  });
  t.like(f?.source, { podName: 'legacy', namespace: 'plain' });
  t.like(f?.destination, { podName: 'web', namespace: 'shop' });
  // The flow's time is when the connection began (as before, when an event came at the connect).
  const wallNowNs = Date.now() * 1e6;
  t.true(Math.abs(f!.timeUnixNano - (wallNowNs - 250e6)) < 50e6, `flow time ${f!.timeUnixNano} ≈ now - 250 ms`);
  t.is(f?.kernel?.timeUnixNano, f?.timeUnixNano);
  t.is(ring.at(1), undefined, 'one flow, nothing waits for another event');
});

test('collector: a connection refused for an address the mesh does not know is a DROPPED flow that says why, with no pod behind it', (t) => {
  const ring = new FlowRing(16);
  const col = new FlowCollector({ ring, nodeName: 'node1', resolve: (ip) => (ip === '10.250.0.2' ? { namespace: '', nodeName: 'node1' } : undefined) });
  // sk_lookup could not place the address in a pod: no netns cookie, no pod id, no port steered to.
  col.onKernelEvents([{
    tsNs: process.hrtime.bigint(), sockCookie: 0n, netnsCookie: 0n, kind: 'REFUSED', reason: 'unknown-address', family: 6,
    src: 'fe80::1', sport: 41000, dst: 'fe80::8c2e:55ff:fe01:203', dport: 8080, newPort: 0, podId: 0, bytesSent: 0n, bytesRecv: 0n, startNs: 0n,
  }]);
  const it = ring.at(0);
  const f = it && 'flow' in it ? it.flow : undefined;
  t.like(f, {
    verdict: 'DROPPED',
    trafficDirection: 'INGRESS',
    reporter: 'kernel',
    ip: { source: 'fe80::1', destination: 'fe80::8c2e:55ff:fe01:203', ipVersion: 6 },
    tcp: { sourcePort: 41000, destinationPort: 8080 },
    kernel: { decision: 'REFUSED', reason: 'unknown-address', redirectPort: 0 },
  });
  t.regex(f?.dropReasonDesc ?? '', /^fe80::8c2e:55ff:fe01:203 is an address of an enrolled pod that the mesh does not know \(link-local/);
  t.like(f?.destination, { podName: '', namespace: '' });
  t.regex(compactLine({ responseTypes: 'flow', flow: f!, nodeName: 'node1', timeUnixNano: f!.timeUnixNano }, false), /\[fe80::1\]:41000 \(plaintext\) -> \[fe80::8c2e:55ff:fe01:203\]:8080 \(plaintext\) fail-closed DROPPED .*does not know.*kernel: REFUSED\)$/);
});

test('splitAddr: ztunnel\'s address texts into ip and port (IPv4, bracketed IPv6, v4-mapped), anything else with port 0', (t) => {
  const cases: [string, [string, number]][] = [
    ['10.244.1.7:8080', ['10.244.1.7', 8080]],
    ['[fd00:10:244::5]:443', ['fd00:10:244::5', 443]],
    ['[::ffff:10.0.0.1]:80', ['10.0.0.1', 80]],
    ['::ffff:10.0.0.1:80', ['10.0.0.1', 80]],
    ['10.0.0.1', ['10.0.0.1', 0]],
    ['fd00::1', ['fd00::1', 0]],
    ['10.0.0.1:', ['10.0.0.1:', 0]],
    ['host:http', ['host:http', 0]],
    ['', ['', 0]],
  ];
  for (const [text, want] of cases) t.deepEqual(splitAddr(text), want, text);
});

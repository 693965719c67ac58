// What a Hubble user expects of `meshctl flows` (issue 17 §3): label selectors, Services, HTTP
// status / method / path, event types, --not, --print-policy-names, --time-format and L7 lines
// read like `hubble observe`'s; the agent's flows carry the deciding policy, ztunnel's refusals
// and why a bystander's connection was not captured; a bad filter is refused by the Observer
// over real gRPC with a message that names it.
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { type AddressInfo, FlowCollector } from '../../src/agent/flows.ts';
import { buildRequest, type FlowsOptions, flowsCommand } from '../../src/cli/commands/flows.ts';
import { compactLine, formatTime, tableRows } from '../../src/cli/flows-format.ts';
import type { DatapathEvent } from '../../src/datapath/index.ts';
import type { L7Record } from '../../src/flows/l7.ts';
import { FlowFilterError, requestMatches, validateRequest } from '../../src/flows/filter.ts';
import { localObserver } from '../../src/flows/local.ts';
import { Relay } from '../../src/flows/relay.ts';
import { FlowRing } from '../../src/flows/ring.ts';
import { parseSelector, selectorMatches } from '../../src/flows/selector.ts';
import { observerClient, serveObserver } from '../../src/flows/server.ts';
import type { Flow, FlowFilter, GetFlowsRequest, GetFlowsResponse } from '../../src/flows/types.ts';
import type { ConnectionRecord } from '../../src/zds/protocol.ts';
import { Telemetry } from '../../src/ztunnel/telemetry/index.ts';
import { meshFlow } from '../helpers/flows.ts';

let n = 0;
function flow(over: Partial<Flow> = {}): Flow {
  const f = meshFlow(++n, {}, { src: 'shop/client', dst: 'shop/web' });
  return {
    ...f,
    timeUnixNano: Date.parse('2026-12-07T13:04:05.123Z') * 1e6 + 456_789,
    ip: { source: '10.101.0.3', destination: '10.100.0.2', ipVersion: 4, encrypted: true },
    source: { ...f.source!, labels: ['app=client', 'tier=front'] },
    destination: { ...f.destination!, labels: ['app=web', 'version=v2'] },
    trafficDirection: 'INGRESS',
    destinationService: 'web.shop.svc.cluster.local',
    sourceService: 'client.shop.svc.cluster.local',
    reporter: 'ztunnel-destination',
    ...over,
  };
}

function l7(code: number, method = 'GET', url = '/items?page=2', over: Partial<Flow> = {}): Flow {
  return flow({ type: 'L7', reporter: 'waypoint shop/waypoint', protocol: 'HTTP', l7: { latencyNs: 3_200_000, http: { code, method, url, protocol: 'HTTP' }, type: code === 403 ? 'REQUEST' : 'RESPONSE' }, ...over });
}

const keep = (f: Flow, q: FlowFilter) => requestMatches(f, { whitelist: [q] });

test('label selectors: Kubernetes syntax, k8s: prefixes, and a bad one named', (t) => {
  const labels = ['app=web', 'version=v2', 'canary='];
  t.true(selectorMatches(parseSelector('app=web'), labels));
  t.true(selectorMatches(parseSelector('k8s:app==web,version in (v1, v2)'), labels));
  t.true(selectorMatches(parseSelector('app,!tier'), labels));
  t.true(selectorMatches(parseSelector('version notin (v1),tier!=x'), labels), 'notin and != hold for a missing key');
  t.false(selectorMatches(parseSelector('app=web,version=v1'), labels), 'every requirement must hold');
  t.false(selectorMatches(parseSelector('!canary'), labels));
  t.throws(() => parseSelector('app=we b'), { instanceOf: FlowFilterError, message: /"we b" is not a label value/ });
  t.throws(() => parseSelector(''), { message: /empty label selector/ });
});

test('filters: labels on either end, services by [ns/]name, HTTP status codes and prefixes, methods, path regex', (t) => {
  const f = flow();
  t.true(keep(f, { sourceLabel: ['app=client'] }));
  t.false(keep(f, { sourceLabel: ['app=web'] }));
  t.true(keep(f, { destinationLabel: ['app=nope', 'version=v2'] }), 'values of one field are alternatives');
  t.false(keep(flow({ source: { ...f.source, labels: [] } }), { sourceLabel: ['app'] }), 'no labels known: no match');
  t.true(keep(f, { destinationService: ['shop/web'] }));
  t.true(keep(f, { destinationService: ['web'] }), 'a bare name is a hostname prefix, as before');
  t.true(keep(f, { destinationService: ['shop/'] }));
  t.false(keep(f, { destinationService: ['other/web'] }));
  t.true(keep(f, { sourceService: ['shop/client'] }));
  t.false(keep(f, { sourceService: ['shop/web'] }));

  t.true(keep(l7(503), { httpStatusCode: ['5+'] }));
  t.true(keep(l7(404), { httpStatusCode: ['40+'] }));
  t.true(keep(l7(403), { httpStatusCode: ['403'] }));
  t.false(keep(l7(200), { httpStatusCode: ['4+', '5+'] }));
  t.false(keep(flow(), { httpStatusCode: ['2+'] }), 'an L4 flow has no status');
  t.true(keep(l7(200, 'POST'), { httpMethod: ['post'] }), 'methods compare case-insensitively');
  t.false(keep(l7(200, 'GET'), { httpMethod: ['POST', 'PUT'] }));
  t.true(keep(l7(200, 'GET', '/api/v1/items?x=/admin'), { httpPath: ['^/api/v[0-9]+/'] }));
  t.false(keep(l7(200, 'GET', '/items?next=/admin'), { httpPath: ['/admin'] }), 'the path, not the query');
  for (const bad of ['6+', '20', '2000', '+', 'abc']) t.throws(() => validateRequest({ whitelist: [{ httpStatusCode: [bad] }] }), { message: /neither a status code/ }, bad);
  t.throws(() => validateRequest({ blacklist: [{ httpPath: ['(unclosed'] }] }), { message: /--http-path "\(unclosed" is not a regular expression/ });
});

test('event types map onto our flows as Hubble names them', (t) => {
  const http = l7(200);
  const denied = flow({ verdict: 'DROPPED', ingressDeniedBy: [{ name: 'deny-client', namespace: 'shop', kind: 'AuthorizationPolicy' }] });
  const allowed = flow({ ingressAllowedBy: [{ name: 'allow', namespace: 'shop', kind: 'AuthorizationPolicy' }] });
  const observed = flow({ reporter: 'kernel', ip: { ...flow().ip, encrypted: false } });
  const types = (f: Flow) => ['l7', 'drop', 'trace', 'policy-verdict', 'trace-sock'].filter((e) => keep(f, { eventType: [e] }));
  t.deepEqual(types(http), ['l7']);
  t.deepEqual(types(denied), ['drop', 'policy-verdict']);
  t.deepEqual(types(allowed), ['trace', 'policy-verdict']);
  t.deepEqual(types(observed), ['trace', 'trace-sock']);
  t.throws(() => validateRequest({ whitelist: [{ eventType: ['capture'] }] }), { message: /"capture" is not an event type we report/ });
});

async function parse(args: string[]): Promise<FlowsOptions> {
  let got: FlowsOptions | undefined;
  const cmd = flowsCommand(async (o) => {
    got = o;
  }).exitOverride();
  cmd.configureOutput({ writeErr: () => {}, writeOut: () => {} });
  await cmd.parseAsync(args, { from: 'user' });
  return got!;
}

test('--not puts the next filter flag into the blacklist, as hubble observe does', async (t) => {
  const req = buildRequest(await parse(['--not', '--namespace', 'kube-system', '--http-status', '5+', '-l', 'app=web']));
  t.deepEqual(req.whitelist, [
    { sourceLabel: ['app=web'], httpStatusCode: ['5+'] },
    { destinationLabel: ['app=web'], httpStatusCode: ['5+'] },
  ]);
  t.deepEqual(req.blacklist, [{ sourcePod: ['kube-system/'] }, { destinationPod: ['kube-system/'] }], 'from or to kube-system: left out');
  const fromKs = flow({ source: { ...flow().source, namespace: 'kube-system' } });
  const blacklisted = { ...req, whitelist: [] };
  t.false(requestMatches(fromKs, blacklisted));
  t.true(requestMatches(flow(), blacklisted));
  // Only the next flag: a later one is a whitelist filter again.
  const two = buildRequest(await parse(['--not', '--to-pod', 'shop/db', '--verdict', 'DROPPED', '--not', '--type', 'l7']));
  t.deepEqual(two.whitelist, [{ verdict: ['DROPPED'] }]);
  t.deepEqual(two.blacklist, [{ destinationPod: ['shop/db'], eventType: ['l7'] }]);
  await t.throwsAsync(parse(['--not', '--not', '--pod', 'x']), { message: /two --not in a row/ });
  await t.throwsAsync(parse(['--pod', 'x', '--not']), { message: /--not must be followed by a filter flag/ });
  await t.throwsAsync(parse(['--http-status', '6+']), { message: /neither a status code/ });
  await t.throwsAsync(parse(['--from-label', 'app=(x)']), { message: /is not a label value/ });
  await t.throwsAsync(parse(['--type', 'capture']), { message: /not an event type/ });
});

test('L7 flows print as hubble does: http-request / http-response with method, URL, code and latency; policy names on request', (t) => {
  const resp = (f: Flow): GetFlowsResponse => ({ responseTypes: 'flow', flow: f, nodeName: 'node1', timeUnixNano: f.timeUnixNano });
  const ok = l7(200);
  t.is(
    compactLine(resp(ok), false),
    `Dec  7 13:04:05.123: shop/client:${ok.tcp.sourcePort} (spiffe://cluster.local/ns/shop/sa/client) -> shop/web:8080 (spiffe://cluster.local/ns/shop/sa/web) http-response FORWARDED (HTTP 200 3.2ms (GET /items?page=2), via web.shop.svc.cluster.local)`,
  );
  const denied = l7(403, 'POST', '/admin', { verdict: 'DROPPED', responseFlags: 'RBAC', dropReasonDesc: 'Policy denied (L7 authorization at the waypoint)', ingressDeniedBy: [{ name: 'deny-post', namespace: 'shop', kind: 'AuthorizationPolicy' }] });
  const line = compactLine(resp(denied), { printPolicyNames: true });
  t.regex(line, / http-request DROPPED DENIED BY AuthorizationPolicy shop\/deny-post \(HTTP POST \/admin, flags RBAC, via web\.shop\.svc\.cluster\.local, Policy denied/);
  t.notRegex(compactLine(resp(denied), false), /DENIED BY/, 'policy names only when asked');
  t.regex(tableRows([resp(denied)], { printPolicyNames: true }).split('\n')[0]!, /VERDICT\s+POLICIES\s+SUMMARY/);
  const notCaptured = flow({ reporter: 'kernel', ip: { ...flow().ip, encrypted: false }, notCapturedReason: 'opted out by its label mesh.io/dataplane-mode=none', summary: 'TCP plaintext (not in the mesh)' });
  t.regex(compactLine(resp(notCaptured), false), /observed FORWARDED \(TCP plaintext \(not in the mesh\), .*not captured: opted out by its label mesh\.io\/dataplane-mode=none/);
});

test('--time-format: hubble\'s layouts, in UTC', (t) => {
  const ns = Date.parse('2026-12-07T03:04:05.123Z') * 1e6 + 456_000;
  t.is(formatTime(ns, 'StampMilli'), 'Dec  7 03:04:05.123');
  t.is(formatTime(ns, 'RFC3339'), '2026-12-07T03:04:05Z');
  t.is(formatTime(ns, 'RFC3339Milli'), '2026-12-07T03:04:05.123Z');
  t.is(formatTime(ns, 'RFC3339Micro'), '2026-12-07T03:04:05.123456Z');
  t.is(formatTime(ns, 'RFC3339Nano'), '2026-12-07T03:04:05.123456Z', 'trailing zeros trimmed, as Go does');
  t.is(formatTime(Date.parse('2026-12-07T03:04:05Z') * 1e6, 'RFC3339Nano'), '2026-12-07T03:04:05Z');
  t.is(formatTime(ns, 'RFC1123Z'), 'Mon, 07 Dec 2026 03:04:05 +0000');
});

const ev = (over: Partial<DatapathEvent>): DatapathEvent => ({
  tsNs: process.hrtime.bigint(), sockCookie: 9n, netnsCookie: 5n, kind: 'OBSERVED', reason: '', family: 4, src: '10.101.0.9', sport: 41000, dst: '10.100.0.2', dport: 8080, newPort: 0, podId: 0, bytesSent: 0n, bytesRecv: 0n, startNs: 0n, ...over,
});

function collected(ring: FlowRing): Flow[] {
  const out: Flow[] = [];
  for (let s = ring.oldestSeq; s < ring.nextSeq; s++) {
    const it = ring.at(s);
    if (it && 'flow' in it) out.push(it.flow);
  }
  return out;
}

test('collector: ztunnel\'s refusal is a DROPPED flow with its reason; the deciding policy is named; bystanders say why they were not captured', (t) => {
  const ring = new FlowRing(32);
  const model: Record<string, AddressInfo> = {
    '10.101.0.3': { namespace: 'shop', podName: 'client', serviceAccount: 'client', labels: ['app=client'], backs: ['client.shop.svc.cluster.local'], inMesh: true },
    '10.100.0.2': { namespace: 'shop', podName: 'web', labels: ['app=web'], inMesh: true },
    '10.101.0.9': { namespace: 'shop', podName: 'legacy', labels: ['app=legacy'], inMesh: false, notCapturedReason: 'opted out by its label mesh.io/dataplane-mode=none' },
    '10.101.0.10': { namespace: 'plain', podName: 'outside', inMesh: false, notCapturedReason: 'namespace plain has no mesh.io/dataplane-mode=ambient label' },
    '10.101.0.11': { namespace: 'shop', podName: 'young', inMesh: true },
    '10.96.0.30': { namespace: 'shop', service: 'empty.shop.svc.cluster.local' },
  };
  const col = new FlowCollector({ ring, nodeName: 'node1', resolve: (ip) => model[ip] });
  const base = { direction: 'outbound' as const, startMs: Date.now(), mtls: false, bytesSent: 0, bytesRecv: 0, durationMs: 0 };
  col.onRecord({ ...base, flags: 'CONNECT', refused: true, error: 'service empty.shop.svc.cluster.local has no healthy endpoint for port 80',
    src: { addr: '10.101.0.3:40001', workload: 'client', namespace: 'shop' }, dst: { addr: '10.96.0.30:80', service: 'empty.shop.svc.cluster.local', workload: 'unknown', namespace: 'unknown' } });
  col.onRecord({ ...base, direction: 'inbound', mtls: true, flags: 'DENY', error: 'denied by DENY policy shop/deny-client', policy: { namespace: 'shop', name: 'deny-client', kind: 'AuthorizationPolicy', allowed: false },
    src: { addr: '10.101.0.3:40002', workload: 'client', namespace: 'shop', identity: 'spiffe://cluster.local/ns/shop/sa/client' }, dst: { addr: '10.100.0.2:8080', workload: 'web', namespace: 'shop' } });
  col.onRecord({ ...base, direction: 'inbound', mtls: true, flags: '-', policy: { namespace: 'shop', name: 'allow-client', kind: 'AuthorizationPolicy', allowed: true },
    src: { addr: '10.101.0.3:40003', workload: 'client', namespace: 'shop' }, dst: { addr: '10.100.0.2:8080', workload: 'web', namespace: 'shop' } });
  for (const [src, cookie] of [['10.101.0.9', 1n], ['10.101.0.10', 2n], ['10.101.0.11', 3n], ['10.250.0.1', 4n]] as const) {
    const now = process.hrtime.bigint();
    col.onKernelEvents([ev({ src, sockCookie: cookie, startNs: now - 1_000_000n, tsNs: now, bytesSent: 4n, bytesRecv: 4n })]);
  }
  const rec: L7Record = { startMs: Date.now(), reporter: 'waypoint shop/waypoint', src: { ip: '10.101.0.3', port: 40004, identity: 'spiffe://cluster.local/ns/shop/sa/client' }, dst: { ip: '10.100.0.2', port: 8080, service: 'shop/web.shop.svc.cluster.local' }, upstream: null, method: 'POST', url: '/admin', protocol: 'HTTP', status: 403, flags: 'RBAC', latencyMs: 0.4, traceId: 'ab'.repeat(16), policy: 'shop/deny-post' };
  col.onL7(rec);
  const [refused, denied, allowed, optedOut, noNsLabel, young, unknown, l7denied] = collected(ring);
  t.like(refused, { verdict: 'DROPPED', summary: 'TCP refused by ztunnel before it was set up', dropReasonDesc: 'service empty.shop.svc.cluster.local has no healthy endpoint for port 80', destinationService: 'empty.shop.svc.cluster.local', sourceService: 'client.shop.svc.cluster.local' });
  t.like(refused?.source, { podName: 'client', labels: ['app=client'] });
  t.like(denied, { verdict: 'DROPPED', ingressDeniedBy: [{ name: 'deny-client', namespace: 'shop', kind: 'AuthorizationPolicy' }], ingressAllowedBy: [] });
  t.like(allowed, { verdict: 'FORWARDED', ingressAllowedBy: [{ name: 'allow-client', namespace: 'shop' }] });
  t.is(optedOut?.notCapturedReason, 'opted out by its label mesh.io/dataplane-mode=none');
  t.is(noNsLabel?.notCapturedReason, 'namespace plain has no mesh.io/dataplane-mode=ambient label');
  t.regex(young?.notCapturedReason ?? '', /shop\/young is in the mesh but not enrolled on its node yet/);
  t.regex(unknown?.notCapturedReason ?? '', /10\.250\.0\.1 is not a pod the mesh knows/);
  // The model names that pod later (it was younger than the agent's config): read again, the flow says why.
  model['10.250.0.1'] = { namespace: 'batch', podName: 'job-1', inMesh: false, notCapturedReason: 'namespace batch has no mesh.io/dataplane-mode=ambient label' };
  col.enrich(unknown!);
  t.like(unknown, { source: { podName: 'job-1' }, notCapturedReason: 'namespace batch has no mesh.io/dataplane-mode=ambient label' });
  t.like(l7denied, { type: 'L7', verdict: 'DROPPED', traceId: 'ab'.repeat(16), l7: { type: 'REQUEST', http: { code: 403, method: 'POST' } }, ingressDeniedBy: [{ name: 'deny-post', namespace: 'shop', kind: 'AuthorizationPolicy' }] });
});

test('observer: a filter it cannot apply is INVALID_ARGUMENT naming it, over real gRPC', async (t) => {
  const ring = new FlowRing(8);
  ring.push(flow());
  const s = await serveObserver(
    localObserver({ ring, nodeName: 'node1', version: 'test', status: () => ({ kernelEventsLost: 0, ztunnelRecordsLost: 0, enrolledPods: 1, ztunnelConnected: true }) }),
    '127.0.0.1:0',
    grpc.ServerCredentials.createInsecure(),
  );
  t.teardown(() => s.close());
  const c = observerClient(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
  t.teardown(() => c.close());
  const call = (req: GetFlowsRequest) =>
    new Promise<GetFlowsResponse[]>((resolve, reject) => {
      const got: GetFlowsResponse[] = [];
      const st = c.GetFlows(req);
      st.on('data', (r: GetFlowsResponse) => got.push(r));
      st.on('error', reject);
      st.on('end', () => resolve(got));
    });
  const err = await t.throwsAsync<grpc.ServiceError>(call({ whitelist: [{ destinationLabel: ['app in (a'] }] }));
  t.is(err?.code, grpc.status.INVALID_ARGUMENT);
  // Filters travel over the wire with the new fields intact and match there.
  const got = await call({ whitelist: [{ destinationLabel: ['version=v2'], destinationService: ['shop/web'] }], number: 5 });
  t.is(got.length, 1);
  const wire = got[0]?.responseTypes === 'flow' ? got[0].flow : undefined;
  t.deepEqual(wire?.destination.labels, ['app=web', 'version=v2'], 'labels cross the wire');
  t.is(wire?.sourceService, 'client.shop.svc.cluster.local');
});

test('ztunnel\'s telemetry hands the agent a refusal and the deciding policy with the connection record', (t) => {
  const records: ConnectionRecord[] = [];
  const tel = new Telemetry({ onClose: (r) => records.push(r) });
  const refused = tel.connectionOpened({ reporter: 'source', mtls: false, src: { ip: '10.101.0.3', port: 40001 }, dst: { ip: '10.96.0.30', port: 80 }, sockCookie: 42n });
  refused.close({ flags: 'CONNECT', error: 'service empty.shop.svc.cluster.local has no healthy endpoint for port 80', refused: true });
  const denied = tel.connectionOpened({ reporter: 'destination', mtls: false, src: { ip: '10.101.0.9', port: 40002 }, dst: { ip: '10.100.0.2', port: 8080 } });
  denied.decidedBy({ namespace: 'store', name: 'converted_peer_authentication_db', kind: 'PeerAuthentication', allowed: false });
  denied.close({ flags: 'DENY', error: 'requires mutual TLS' });
  t.like(records[0], { refused: true, flags: 'CONNECT', sockCookie: '42', policy: undefined });
  t.like(records[1], { refused: undefined, flags: 'DENY', policy: { kind: 'PeerAuthentication', allowed: false, name: 'converted_peer_authentication_db' } });
});

test('relay: flows from an agent that ignores the new filter fields are filtered again, so old and new nodes answer alike', async (t) => {
  // An "old agent": serves every flow it has, whatever the request asks.
  const ring = [flow({ source: { ...flow().source, labels: ['app=client'] } }), flow({ source: { ...flow().source, labels: ['app=other'] } }), l7(503)];
  const old = await serveObserver(
    {
      GetFlows(call: grpc.ServerWritableStream<GetFlowsRequest, GetFlowsResponse>) {
        for (const f of ring) call.write({ responseTypes: 'flow', flow: f, nodeName: 'old', timeUnixNano: f.timeUnixNano });
        call.end();
      },
      ServerStatus: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, {}),
      GetNodes: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { nodes: [] }),
    },
    '127.0.0.1:0',
    grpc.ServerCredentials.createInsecure(),
  );
  t.teardown(() => old.close());
  const relay = new Relay({ peers: () => [{ name: 'old', address: `127.0.0.1:${old.port}`, configClients: [] }], credentials: grpc.credentials.createInsecure(), version: 'test', timeoutMs: 2000 });
  t.teardown(() => relay.close());
  const rs = await serveObserver(relay.service(), '127.0.0.1:0', grpc.ServerCredentials.createInsecure());
  t.teardown(() => rs.close());
  const c = observerClient(`127.0.0.1:${rs.port}`, grpc.credentials.createInsecure());
  t.teardown(() => c.close());
  const call = (req: GetFlowsRequest) =>
    new Promise<GetFlowsResponse[]>((resolve, reject) => {
      const got: GetFlowsResponse[] = [];
      const st = c.GetFlows(req);
      st.on('data', (r: GetFlowsResponse) => got.push(r));
      st.on('error', reject);
      st.on('end', () => resolve(got));
    });
  const uuids = (rs: GetFlowsResponse[]) => rs.flatMap((r) => (r.responseTypes === 'flow' ? [r.flow.uuid] : []));
  t.deepEqual(uuids(await call({ whitelist: [{ sourceLabel: ['app=client'] }] })), [ring[0]!.uuid, ring[2]!.uuid]);
  t.deepEqual(uuids(await call({ whitelist: [{ httpStatusCode: ['5+'] }] })), [ring[2]!.uuid]);
  const bad = await t.throwsAsync<grpc.ServiceError>(call({ whitelist: [{ httpPath: ['('] }] }));
  t.is(bad?.code, grpc.status.INVALID_ARGUMENT, 'the relay refuses a filter no node could apply');
});

test('follow through the relay: only new flows that match the new filters stream', async (t) => {
  const ring = new FlowRing(64);
  const node = await serveObserver(
    localObserver({ ring, nodeName: 'node1', version: 'test', status: () => ({ kernelEventsLost: 0, ztunnelRecordsLost: 0, enrolledPods: 1, ztunnelConnected: true }) }),
    '127.0.0.1:0',
    grpc.ServerCredentials.createInsecure(),
  );
  t.teardown(() => node.close());
  const relay = new Relay({ peers: () => [{ name: 'node1', address: `127.0.0.1:${node.port}`, configClients: [] }], credentials: grpc.credentials.createInsecure(), version: 'test', timeoutMs: 2000 });
  t.teardown(() => relay.close());
  const rs = await serveObserver(relay.service(), '127.0.0.1:0', grpc.ServerCredentials.createInsecure());
  t.teardown(() => rs.close());
  const c = observerClient(`127.0.0.1:${rs.port}`, grpc.credentials.createInsecure());
  t.teardown(() => c.close());
  ring.push(l7(403, 'POST', '/admin')); // before the follow: not streamed
  const denied = l7(403, 'POST', '/admin', { verdict: 'DROPPED' });
  const got: GetFlowsResponse[] = [];
  await new Promise<void>((resolve, reject) => {
    const st = c.GetFlows({ follow: true, whitelist: [{ httpStatusCode: ['403'], destinationLabel: ['app=web'] }], blacklist: [{ httpMethod: ['GET'] }] });
    const timer = setTimeout(() => st.cancel(), 10_000);
    st.on('data', (r: GetFlowsResponse) => {
      got.push(r);
      if (got.length >= 1) st.cancel();
    });
    st.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve() : reject(e)));
    st.on('close', () => clearTimeout(timer));
    setTimeout(() => {
      ring.push(l7(200));
      ring.push(l7(403, 'GET', '/admin')); // blacklisted
      ring.push(flow());
      ring.push(denied);
    }, 300);
  });
  t.deepEqual(got.map((r) => (r.responseTypes === 'flow' ? r.flow.uuid : r.responseTypes)), [denied.uuid]);
});

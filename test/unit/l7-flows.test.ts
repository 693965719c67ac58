// L7 flow records from a waypoint to its node's agent (src/flows/l7.ts) and the flows the agent
// makes of them (FlowCollector.onL7): over a real unix socket.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import test from 'ava';
import { FlowCollector } from '../../src/agent/flows.ts';
import { L7FlowSender, L7FlowServer, type L7Record } from '../../src/flows/l7.ts';
import { FlowRing } from '../../src/flows/ring.ts';
import type { Flow } from '../../src/flows/types.ts';

function record(o: Partial<L7Record> = {}): L7Record {
  return {
    startMs: Date.parse('2026-12-07T05:00:00Z'),
    reporter: 'waypoint shop/waypoint',
    src: { ip: '10.101.0.4', port: 53306, identity: 'spiffe://cluster.local/ns/shop/sa/default' },
    dst: { ip: '10.96.0.20', port: 80, service: 'shop/web.shop.svc.cluster.local' },
    upstream: { ip: '10.100.0.2', port: 8080 },
    method: 'GET',
    url: '/items?page=2',
    protocol: 'HTTP',
    status: 200,
    flags: '-',
    latencyMs: 3.2,
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    ...o,
  };
}

function flows(ring: FlowRing): Flow[] {
  const out: Flow[] = [];
  for (let s = 0; s < 100; s++) {
    const it = ring.at(s);
    if (it && 'flow' in it) out.push(it.flow);
  }
  return out;
}

test('a waypoint record sent before the agent answered still arrives; garbage is counted, not fatal', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'l7-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'l7-flows.sock');
  const got: L7Record[] = [];
  const server = await L7FlowServer.listen(path, (r) => got.push(r));
  t.teardown(() => server.close());
  const sender = new L7FlowSender(path);
  t.teardown(() => sender.close());
  sender.send(record({ url: '/first' }));
  sender.send(record({ url: '/second' }));
  const bad = net.connect(path);
  bad.end('not json\n{"startMs":"x"}\n');
  for (let i = 0; i < 100 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(
    got.map((r) => r.url),
    ['/first', '/second'],
  );
  t.is(sender.dropped, 0);
  for (let i = 0; i < 100 && server.invalid < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.is(server.invalid, 2);
});

test('a sender without an agent drops and counts, and never throws', async (t) => {
  const sender = new L7FlowSender('/nonexistent/l7-flows.sock');
  t.teardown(() => sender.close());
  await new Promise((r) => setTimeout(r, 50));
  sender.send(record());
  t.is(sender.sent, 0);
});

test('the agent makes an L7 flow of each record, named from its model: DROPPED when policy denied, ERROR when it failed', (t) => {
  const ring = new FlowRing(16);
  const names: Record<string, { namespace: string; podName: string; workload: string; serviceAccount: string }> = {
    '10.101.0.4': { namespace: 'shop', podName: 'client-1', workload: 'client', serviceAccount: 'default' },
    '10.100.0.2': { namespace: 'shop', podName: 'web-v1', workload: 'web', serviceAccount: 'web' },
  };
  const c = new FlowCollector({ ring, nodeName: 'node2', resolve: (ip) => names[ip] });
  c.onL7(record());
  c.onL7(record({ status: 403, flags: 'RBAC', upstream: null }));
  c.onL7(record({ status: 504, flags: 'UT' }));
  const [ok, denied, failed] = flows(ring);
  t.like(ok, {
    type: 'L7',
    verdict: 'FORWARDED',
    reporter: 'waypoint shop/waypoint',
    ip: { source: '10.101.0.4', destination: '10.96.0.20', encrypted: true },
    tcp: { sourcePort: 53306, destinationPort: 80 },
    source: { podName: 'client-1', identity: 'spiffe://cluster.local/ns/shop/sa/default' },
    destination: { podName: 'web-v1' },
    destinationService: 'web.shop.svc.cluster.local',
    l7: { http: { code: 200, method: 'GET', url: '/items?page=2', protocol: 'HTTP' } },
  });
  t.is(ok!.l7!.latencyNs, 3_200_000);
  t.is(ok!.summary, 'HTTP GET /items?page=2 → 200 (3.2 ms)');
  t.like(denied, { verdict: 'DROPPED', responseFlags: 'RBAC' });
  t.regex(denied!.dropReasonDesc, /L7 authorization/);
  t.like(failed, { verdict: 'ERROR', responseFlags: 'UT' });
});

// A pod that starts and calls at once is faster than its Workload's way to the node: the first
// flow of such a pod must still name it (issue 17), for a reader that follows the ring as the flow
// is pushed (meshctl flows -f, the dashboard) as much as for one that reads it later. The agent's
// collector holds a flow whose ends the model cannot name yet, bounded in time and count, and lets
// it go as soon as the model names them.
import test from 'ava';
import { type AddressInfo, FlowCollector } from '../../src/agent/flows.ts';
import type { DatapathEvent } from '../../src/datapath/index.ts';
import { FlowRing } from '../../src/flows/ring.ts';
import type { Flow } from '../../src/flows/types.ts';

const DB: AddressInfo = { namespace: 'store', podName: 'db', serviceAccount: 'db', nodeName: 'node1', inMesh: true };

const ev = (over: Partial<DatapathEvent>): DatapathEvent => ({
  tsNs: process.hrtime.bigint(), sockCookie: 9n, netnsCookie: 5n, kind: 'OBSERVED', reason: '', family: 4, src: '10.101.0.9', sport: 41000, dst: '10.100.0.2', dport: 8080, newPort: 0, podId: 0, bytesSent: 0n, bytesRecv: 0n, startNs: 0n, ...over,
});

/** One plaintext connection of a bystander: reported once, at its close. */
function connection(col: FlowCollector, src: string, cookie: bigint): void {
  const now = process.hrtime.bigint();
  col.onKernelEvents([ev({ src, sockCookie: cookie, startNs: now - 1_000_000n, tsNs: now, bytesSent: 3n, bytesRecv: 4n })]);
}

/** What a follower sees: each flow as it enters the ring (no enrich-on-read is wired here). */
function follow(ring: FlowRing): Flow[] {
  const seen: Flow[] = [];
  ring.subscribe(() => {
    const it = ring.at(ring.nextSeq - 1);
    if (it && 'flow' in it) seen.push(structuredClone(it.flow));
  });
  return seen;
}

test('naming: the first flow of a pod that called before its Workload arrived names the pod', (t) => {
  const ring = new FlowRing(16);
  const model: Record<string, AddressInfo> = { '10.100.0.2': DB };
  const col = new FlowCollector({ ring, nodeName: 'node1', resolve: (ip) => model[ip], nameWaitMs: 60_000 });
  const seen = follow(ring);
  connection(col, '10.101.0.9', 1n);
  t.is(seen.length, 0, 'the flow waits for its source to be named');
  t.is(col.waitingForNames, 1);
  // The Workload reaches the node; the agent's config stream says so.
  model['10.101.0.9'] = { namespace: 'legacy', podName: 'client-1', serviceAccount: 'default', nodeName: 'node1', labels: ['app=client'], inMesh: false, notCapturedReason: 'namespace legacy has no mesh.io/dataplane-mode=ambient label' };
  col.names();
  t.is(seen.length, 1);
  t.like(seen[0], { source: { namespace: 'legacy', podName: 'client-1', labels: ['app=client'] }, destination: { podName: 'db' }, bytesSent: 3, notCapturedReason: 'namespace legacy has no mesh.io/dataplane-mode=ambient label' });
  t.is(col.waitingForNames, 0);
  // Once named, the pod's next flows go straight in.
  connection(col, '10.101.0.9', 2n);
  t.is(seen.length, 2);
  t.is(seen[1]?.source.podName, 'client-1');
});

test('naming: an address that left the model names only connections older than its leaving', (t) => {
  const ring = new FlowRing(16);
  const leftAt = Date.now() - 1000;
  // The local cluster hands a finished pod's address to the next pod: the old name is remembered
  // for flows read late, but a connection made after it left is the new pod's.
  const model: Record<string, AddressInfo> = { '10.100.0.2': DB, '10.101.0.7': { namespace: 'legacy', podName: 'client-old', goneAtMs: leftAt } };
  const col = new FlowCollector({ ring, nodeName: 'node1', resolve: (ip) => model[ip], nameWaitMs: 60_000 });
  const seen = follow(ring);
  connection(col, '10.101.0.7', 3n);
  t.is(seen.length, 0, 'not named after the pod that left');
  model['10.101.0.7'] = { namespace: 'legacy', podName: 'client-new' };
  col.names();
  t.is(seen[0]?.source.podName, 'client-new');
  // A record of ztunnel's from before the old pod left still names the old one.
  model['10.101.0.7'] = { namespace: 'legacy', podName: 'client-old', goneAtMs: leftAt };
  col.onRecord({ direction: 'outbound', startMs: leftAt - 500, mtls: true, flags: '-', src: { addr: '10.101.0.7:40000', workload: 'unknown', namespace: 'unknown' }, dst: { addr: '10.100.0.2:8080', workload: 'db', namespace: 'store' }, bytesSent: 1, bytesRecv: 1, durationMs: 1 });
  t.is(seen[1]?.source.podName, 'client-old');
});

test('naming: the wait is bounded in time and in count; an address no model names goes out unnamed', async (t) => {
  const ring = new FlowRing(16);
  const model: Record<string, AddressInfo> = { '10.100.0.2': DB };
  const col = new FlowCollector({ ring, nodeName: 'node1', resolve: (ip) => model[ip], nameWaitMs: 100, nameWaitMax: 2 });
  const seen = follow(ring);
  connection(col, '203.0.113.1', 4n);
  connection(col, '203.0.113.2', 5n);
  t.is(seen.length, 0);
  connection(col, '203.0.113.3', 6n);
  t.is(seen.length, 1, 'a third waiting flow pushes the oldest out');
  t.is(seen[0]?.ip.source, '203.0.113.1');
  t.is(seen[0]?.source.podName, '');
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(seen.map((f) => f.ip.source), ['203.0.113.1', '203.0.113.2', '203.0.113.3'], 'the rest went after the wait, in order');
  t.is(col.waitingForNames, 0);
});

test('naming: without a model to wait for (no config stream), flows go in at once', (t) => {
  const ring = new FlowRing(16);
  const col = new FlowCollector({ ring, nodeName: 'node1', resolve: () => undefined });
  connection(col, '10.101.0.9', 7n);
  t.is(ring.size, 1);
});

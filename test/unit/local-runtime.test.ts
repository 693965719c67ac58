import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { HostsWriter } from '../../src/local/runtime/dns.ts';
import { sandboxName } from '../../src/local/runtime/kubelet.ts';
import { renderRuleset } from '../../src/local/runtime/proxy.ts';
import { pickNode } from '../../src/local/runtime/scheduler.ts';

const pod = (name: string, labels: Record<string, string>, ip: string, ready: boolean, node = 'node1'): k8s.V1Pod => ({
  metadata: { name, namespace: 'shop', uid: `uid-${name}`, labels },
  spec: { nodeName: node, containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }] }] },
  status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
});

test('service rules: one endpoint DNATs, several pick at random, none refuse', (t) => {
  const nft = renderRuleset([
    { clusterIP: '10.96.0.10', port: 80, protocol: 'TCP', endpoints: [{ ip: '10.100.0.2', port: 8080 }] },
    { clusterIP: '10.96.0.11', port: 80, protocol: 'TCP', endpoints: [{ ip: '10.100.0.2', port: 8080 }, { ip: '10.101.0.3', port: 8080 }] },
    { clusterIP: '10.96.0.12', port: 443, protocol: 'TCP', endpoints: [] },
  ]);
  t.true(nft.includes('ip daddr 10.96.0.10 tcp dport 80 dnat ip to 10.100.0.2:8080'));
  t.true(nft.includes('ip daddr 10.96.0.11 tcp dport 80 dnat ip to numgen random mod 2 map { 0 : 10.100.0.2 . 8080, 1 : 10.101.0.3 . 8080 }'));
  t.true(nft.includes('ip daddr 10.96.0.12 tcp dport 443 reject with tcp reset'));
  t.true(nft.startsWith('table ip mesh-services\ndelete table ip mesh-services\n'), 'replaces the table in one transaction');
});

test('hosts files give services their DNS names, short names only within the namespace', (t) => {
  const h = new HostsWriter('/nonexistent');
  h.setServices([{ name: 'web', namespace: 'shop', clusterIP: '10.96.0.10' }, { name: 'db', namespace: 'data', clusterIP: '10.96.0.11' }]);
  const text = h.render({ ip: '10.100.0.5', hostname: 'client', namespace: 'shop' });
  t.true(text.includes('10.96.0.10\tweb.shop.svc.cluster.local web.shop.svc web.shop web\n'));
  t.true(text.includes('10.96.0.11\tdb.data.svc.cluster.local db.data.svc db.data\n'));
  t.true(text.includes('10.100.0.5\tclient\n'));
});

test('the scheduler picks the ready node with the fewest pods', (t) => {
  const node = (name: string, ready = true): k8s.V1Node => ({ metadata: { name }, status: { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] } });
  t.is(pickNode([node('node1'), node('node2')], [pod('a', {}, '1.1.1.1', true, 'node1')]), 'node2');
  t.is(pickNode([node('node1'), node('node2', false)], [pod('a', {}, '1.1.1.1', true, 'node1')]), 'node1');
  t.is(pickNode([], []), undefined);
});

test('sandbox names fit a netns name and stay unique', (t) => {
  t.is(sandboxName('shop', 'web'), 'shop-web');
  const long = sandboxName('a-very-long-namespace-name', 'and-an-even-longer-pod-name-0');
  t.true(long.length <= 32);
  t.not(long, sandboxName('a-very-long-namespace-name', 'and-an-even-longer-pod-name-1'));
});

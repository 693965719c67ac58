// Events recorded by the local cluster's scheduler, read back with the real kubectl: why a pod is
// pending (FailedScheduling, aggregated on repeats), where it went (Scheduled), shown by
// `kubectl get events` and in `kubectl describe pod`. No pod runs, so no root is needed.
import * as k8s from '@kubernetes/client-node';
import test from 'ava';
import { EventRecorder } from '../../src/local/runtime/events.ts';
import { Scheduler } from '../../src/local/runtime/scheduler.ts';
import { call, harness, type Harness, kubectl } from '../helpers/apiserver.ts';

async function setup(h: Harness) {
  const node = await call(h.server, 'POST', '/api/v1/nodes', { metadata: { name: 'node1', labels: { 'kubernetes.io/hostname': 'node1' } } });
  node.body.status = { conditions: [{ type: 'Ready', status: 'True' }] };
  await call(h.server, 'PUT', '/api/v1/nodes/node1/status', node.body);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(h.kubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  let nodes: k8s.V1Node[] = [];
  let pods: k8s.V1Pod[] = [];
  const scheduler = new Scheduler({ core, recorder: new EventRecorder(core, 'default-scheduler'), nodes: () => nodes, pods: () => pods });
  return {
    async schedule(name: string) {
      nodes = (await core.listNode()).items;
      pods = (await core.listNamespacedPod({ namespace: 'default' })).items;
      return scheduler.schedule(await core.readNamespacedPod({ name, namespace: 'default' }));
    },
  };
}

const POD = (name: string, selector?: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default}
spec:
  ${selector ? `nodeSelector: {${selector}}` : ''}
  containers: [{name: app, image: busybox, command: [sleep, "1000"]}]
`;

test('kubectl get events and describe pod show why a pod is pending, aggregated on repeats', async (t) => {
  const h = await harness(t);
  const s = await setup(h);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: POD('web', 'disk: ssd') })).code, 0);
  t.is(await s.schedule('web'), undefined);
  t.is(await s.schedule('web'), undefined);
  const ev = await kubectl(h, ['get', 'events']);
  t.is(ev.code, 0, ev.stderr);
  t.regex(ev.stdout, /^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE\n/);
  t.regex(ev.stdout, /\d+s \(x2 over \d+s\)\s+Warning\s+FailedScheduling\s+pod\/web\s+0\/1 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector\. preemption: /);
  t.is(ev.stdout.trim().split('\n').length, 2, 'the repeat is counted on one event, not a second one');
  const d = await kubectl(h, ['describe', 'pod', 'web']);
  t.is(d.code, 0, d.stderr);
  t.regex(d.stdout, /Events:\n\s+Type\s+Reason\s+Age\s+From\s+Message\n\s+----.*\n\s+Warning\s+FailedScheduling\s+\d+s \(x2 over \d+s\)\s+default-scheduler\s+0\/1 nodes are available/);
});

test('a pod that fits is bound and gets a Scheduled event naming its node', async (t) => {
  const h = await harness(t);
  const s = await setup(h);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: POD('ok', 'kubernetes.io/hostname: node1') })).code, 0);
  t.is(await s.schedule('ok'), 'node1');
  t.is((await kubectl(h, ['get', 'pod', 'ok', '-o', 'jsonpath={.spec.nodeName}'])).stdout, 'node1');
  const ev = await kubectl(h, ['get', 'events', '--field-selector', 'involvedObject.name=ok', '-o', 'json']);
  const items = JSON.parse(ev.stdout).items;
  t.is(items.length, 1);
  t.like(items[0], { type: 'Normal', reason: 'Scheduled', message: 'Successfully assigned default/ok to node1', count: 1, source: { component: 'default-scheduler' }, reportingComponent: 'default-scheduler', involvedObject: { kind: 'Pod', name: 'ok', namespace: 'default' } });
  t.truthy(items[0].firstTimestamp);
  t.truthy(items[0].involvedObject.uid);
});

test('with no node at all the event says so', async (t) => {
  const h = await harness(t);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(h.kubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: POD('lonely') })).code, 0);
  const scheduler = new Scheduler({ core, recorder: new EventRecorder(core, 'default-scheduler'), nodes: () => [], pods: () => [] });
  await scheduler.schedule(await core.readNamespacedPod({ name: 'lonely', namespace: 'default' }));
  t.regex((await kubectl(h, ['get', 'events'])).stdout, /Warning\s+FailedScheduling\s+pod\/lonely\s+no nodes available to schedule pods/);
});

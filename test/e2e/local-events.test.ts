// Events from the local cluster's scheduler and kubelet, read as a user reads them: why a pod is
// pending (FailedScheduling), its containers' lifecycle (Scheduled, Pulled, Created, Started),
// a crash loop (BackOff), a failing readiness probe (Unhealthy) and a deletion (Killing), in
// `kubectl describe pod` and `kubectl get events`. Needs root (pods are network namespaces).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { LocalCluster } from '../../src/local/runtime/cluster.ts';
import { requireRoot } from '../helpers/topology.ts';
import { startTestCluster } from '../helpers/cluster.ts';
import { waitFor } from '../helpers/wait.ts';

const NODE = process.execPath;

function kubectl(cluster: LocalCluster, dir: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('kubectl', args, { env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, KUBECACHEDIR: join(dir, 'kube-cache'), HOME: dir } }, (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)));
  });
}

test('the scheduler and kubelet record the events kubectl describe and get events show', async (t) => {
  if (!(await requireRoot(t))) return;
  const { cluster, stateDir } = await startTestCluster(t, 1);
  const core = cluster.kc.makeApiClient(k8s.CoreV1Api);
  const pod = (name: string, spec: Partial<k8s.V1PodSpec>, container: Partial<k8s.V1Container>) =>
    core.createNamespacedPod({ namespace: 'default', body: { metadata: { name }, spec: { ...spec, containers: [{ name: 'app', image: 'registry.local/app:1', ...container }] } } });
  await pod('pending', { nodeSelector: { disk: 'ssd' } }, { command: ['sleep', '100'] });
  await pod('crash', {}, { command: [NODE, '-e', 'process.exit(3)'] });
  await pod('unready', {}, {
    command: [NODE, '-e', `require('node:http').createServer((q, s) => { s.statusCode = 500; s.end(); }).listen(8080)`],
    readinessProbe: { httpGet: { path: '/', port: 8080 as unknown as k8s.IntOrString }, periodSeconds: 1 },
  });

  const eventsOf = async (name: string) => (await core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${name}` })).items;
  const has = (name: string, reason: string) => waitFor(`${reason} for ${name}`, async () => (await eventsOf(name)).find((e) => e.reason === reason));

  const failed = await has('pending', 'FailedScheduling');
  t.is(failed.type, 'Warning');
  t.regex(failed.message!, /^0\/1 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector\./);
  t.is(failed.source?.component, 'default-scheduler');

  for (const reason of ['Scheduled', 'Pulled', 'Created', 'Started']) await has('crash', reason);
  const backoff = await has('crash', 'BackOff');
  t.is(backoff.type, 'Warning');
  t.regex(backoff.message!, /^Back-off restarting failed container app in pod crash_default\(/);
  t.is(backoff.involvedObject.fieldPath, 'spec.containers{app}');
  t.is(backoff.source?.component, 'kubelet');
  t.is(backoff.source?.host, 'node1');

  const unhealthy = await has('unready', 'Unhealthy');
  t.regex(unhealthy.message!, /^Readiness probe failed/);
  const repeated = await waitFor('a repeated Unhealthy counted on one event', async () => (await eventsOf('unready')).find((e) => e.reason === 'Unhealthy' && e.count! >= 2));
  t.is(repeated.message, 'Readiness probe failed: HTTP probe failed with statuscode: 500');

  const describe = await kubectl(cluster, stateDir, ['describe', 'pod', 'unready']);
  t.regex(describe, /Normal\s+Scheduled\s+.*default-scheduler\s+Successfully assigned default\/unready to node1/);
  t.regex(describe, /Normal\s+Pulled\s+.*kubelet\s+Container image "registry.local\/app:1" already present on machine/);
  t.regex(describe, /Warning\s+Unhealthy\s+\S+ \(x\d+ over \S+\)\s+kubelet\s+Readiness probe failed/);
  const pending = await kubectl(cluster, stateDir, ['get', 'events', '--field-selector', 'reason=FailedScheduling']);
  t.regex(pending, /Warning\s+FailedScheduling\s+pod\/pending\s+0\/1 nodes are available/);

  await core.deleteNamespacedPod({ name: 'unready', namespace: 'default' });
  const killing = await has('unready', 'Killing');
  t.is(killing.message, 'Stopping container app');
});

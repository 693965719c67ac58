// The local cluster's workload controllers, driven as a user drives them — with the real kubectl:
// a Deployment becomes ReplicaSets and Ready pods behind its Service; `kubectl scale`; a rolling
// update that a client looping through the Service never notices; `kubectl rollout
// status|history|undo|restart`; deleting the Deployment takes its sets and pods with it; a
// DaemonSet puts a pod on each node and rolls with maxSurge; Jobs complete or fail. One two-node
// cluster shared by the tests in order. Needs root (pods are network namespaces).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { LocalCluster } from '../../src/local/runtime/cluster.ts';
import { HTTP_LOOP, loopResults } from '../helpers/scripts.ts';
import { assertNothingLeaked, requireRoot, uniquePrefix } from '../helpers/topology.ts';
import { waitFor } from '../helpers/wait.ts';

const NODE = process.execPath;
// Answers "ok" on :8080; on SIGTERM it keeps serving for a while, as a server with a drain
// period (or a preStop sleep) does, so that the Service stops sending to it before it goes.
const DRAINING_SERVER = `require('node:http').createServer((q, s) => { s.on('error', () => {}); s.end('ok'); }).listen(8080);
process.on('SIGTERM', () => setTimeout(() => process.exit(0), 2000));`;

let cluster: LocalCluster;
let core: k8s.CoreV1Api;
let apps: k8s.AppsV1Api;
let batch: k8s.BatchV1Api;
let prefix = '';
let stateDir = '';

function kubectl(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('kubectl', args, { env: { ...process.env, KUBECONFIG: cluster.kubeconfigPath, KUBECACHEDIR: join(stateDir, 'kube-cache'), HOME: stateDir } }, (err, stdout, stderr) =>
      err ? reject(new Error(`kubectl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
    );
  });
}

async function apply(name: string, yaml: string): Promise<void> {
  const f = join(stateDir, `${name}.yaml`);
  writeFileSync(f, yaml);
  await kubectl('apply', '-f', f);
}

const ready = (p: k8s.V1Pod) => p.status?.phase === 'Running' && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
const podsOf = async (selector: string) => (await core.listNamespacedPod({ namespace: 'default', labelSelector: selector })).items.filter((p) => !p.metadata?.deletionTimestamp);
/** Waits until exactly `n` pods match and all are Running and Ready. */
const readyPods = (selector: string, n: number) =>
  waitFor(`${n} ready pods of ${selector}`, async () => {
    const pods = await podsOf(selector);
    return pods.length === n && pods.every(ready) ? pods : undefined;
  });
const envOf = (p: k8s.V1Pod) => Object.fromEntries((p.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
const clientResults = () => loopResults(join(stateDir, 'logs', 'default_client_main.log'), (f) => readFileSync(f, 'utf8'));

/** Samples the pods of `selector` every 100 ms until stopped: the most that existed, the fewest Ready. */
function sample(selector: string): () => Promise<{ most: number; fewestReady: number }> {
  let most = 0;
  let fewestReady = Infinity;
  let on = true;
  const loop = (async () => {
    while (on) {
      const pods = await podsOf(selector).catch(() => undefined);
      if (pods) {
        most = Math.max(most, pods.length);
        fewestReady = Math.min(fewestReady, pods.filter(ready).length);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return async () => {
    on = false;
    await loop;
    return { most, fewestReady };
  };
}

const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

test.before(async (t) => {
  if (!(await requireRoot(t))) return;
  prefix = uniquePrefix();
  stateDir = mkdtempSync(`/tmp/mesh-${prefix}-state-`);
  cleanups.push(async () => {
    rmSync(stateDir, { recursive: true, force: true });
    const left = await assertNothingLeaked(prefix);
    if (left.length) throw new Error(`left on the host: ${left.join('; ')}`);
  });
  cluster = await LocalCluster.start({ stateDir, nodes: 2, prefix });
  cleanups.push(() => cluster.stop());
  core = cluster.kc.makeApiClient(k8s.CoreV1Api);
  apps = cluster.kc.makeApiClient(k8s.AppsV1Api);
  batch = cluster.kc.makeApiClient(k8s.BatchV1Api);
});

const DEPLOYMENT = (env: string) => `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: local
        command: [${JSON.stringify(NODE)}, -e, ${JSON.stringify(DRAINING_SERVER)}]
        env: [{name: VERSION, value: "${env}"}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 8080}]
`;

test.serial('deployment-apply: kubectl apply makes a ReplicaSet and two Ready pods behind the Service', async (t) => {
  if (!cluster) return t.fail('no cluster');
  await apply('web', DEPLOYMENT('1'));
  t.regex(await kubectl('rollout', 'status', 'deployment/web', '--timeout=60s'), /successfully rolled out/);
  const pods = await readyPods('app=web', 2);
  const sets = (await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=web' })).items;
  t.is(sets.length, 1);
  const rs = sets[0]!;
  const hash = rs.metadata!.labels!['pod-template-hash']!;
  t.is(rs.metadata!.name, `web-${hash}`);
  t.is(rs.metadata!.annotations!['deployment.kubernetes.io/revision'], '1');
  for (const p of pods) {
    t.regex(p.metadata!.name!, new RegExp(`^web-${hash}-[a-z0-9]{5}$`));
    t.is(p.metadata!.labels!['pod-template-hash'], hash);
    t.like(p.metadata!.ownerReferences![0], { kind: 'ReplicaSet', name: rs.metadata!.name, uid: rs.metadata!.uid, controller: true, blockOwnerDeletion: true });
  }
  const dep = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
  t.like(dep.status, { replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2, observedGeneration: dep.metadata!.generation });
  t.is(dep.status!.conditions!.find((c) => c.type === 'Available')?.status, 'True');
  t.is(dep.status!.conditions!.find((c) => c.type === 'Progressing')?.reason, 'NewReplicaSetAvailable');
  const slice = await waitFor('the Service endpoints', async () => {
    const s = await cluster.kc.makeApiClient(k8s.DiscoveryV1Api).readNamespacedEndpointSlice({ name: 'web', namespace: 'default' });
    return (s.endpoints ?? []).filter((e) => e.conditions?.ready).length === 2 ? s : undefined;
  });
  t.deepEqual((slice.endpoints ?? []).map((e) => e.addresses[0]).sort(), pods.map((p) => p.status!.podIP).sort());
  const events = await kubectl('get', 'events', '--field-selector', 'involvedObject.kind=Deployment,involvedObject.name=web');
  t.regex(events, new RegExp(`ScalingReplicaSet\\s+deployment/web\\s+Scaled up replica set web-${hash} to 2 from 0`));
  t.regex(await kubectl('describe', 'replicaset', `web-${hash}`), /SuccessfulCreate\s+.*Created pod: web-/);

  // A client pod that loops through the Service for the rest of the file.
  const svc = await core.readNamespacedService({ name: 'web', namespace: 'default' });
  await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'client' }, spec: { containers: [{ name: 'main', image: 'local', command: [NODE, '-e', HTTP_LOOP, svc.spec!.clusterIP!] }] } } });
  await waitFor('the client to get answers', () => (clientResults().filter(([, r]) => r === 'ok').length >= 5 ? true : undefined));
});

test.serial('deployment-scale: kubectl scale to 3, to 1 and back to 2 changes the pods', async (t) => {
  if (!cluster) return t.fail('no cluster');
  await kubectl('scale', 'deployment/web', '--replicas=3');
  await readyPods('app=web', 3);
  await kubectl('scale', 'deployment/web', '--replicas=1');
  await readyPods('app=web', 1);
  const rs = (await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=web' })).items[0]!;
  t.regex(await kubectl('describe', 'replicaset', rs.metadata!.name!), /SuccessfulDelete\s+.*Deleted pod: web-/);
  await kubectl('scale', 'deployment/web', '--replicas=2');
  await readyPods('app=web', 2);
  t.regex(await kubectl('rollout', 'status', 'deployment/web', '--timeout=60s'), /successfully rolled out/);
});

test.serial('deployment-rolling-update: a new env rolls out while the client sees no failed request', async (t) => {
  if (!cluster) return t.fail('no cluster');
  const t0 = Date.now();
  const sampled = sample('app=web');
  await kubectl('set', 'env', 'deployment/web', 'VERSION=2');
  t.regex(await kubectl('rollout', 'status', 'deployment/web', '--timeout=90s'), /successfully rolled out/);
  // replicas 2, maxSurge 25% → 1, maxUnavailable 25% → 0: never more than 3 pods, never fewer than 2 Ready.
  t.like(await sampled(), { most: 3, fewestReady: 2 });
  const pods = await readyPods('app=web', 2);
  for (const p of pods) t.is(envOf(p).VERSION, '2');
  await new Promise((r) => setTimeout(r, 3000)); // the old pods' drain, and a few more requests
  const during = clientResults().filter(([ts]) => ts >= t0);
  t.true(during.length >= 20, `only ${during.length} requests during the rollout`);
  t.deepEqual(during.filter(([, r]) => r !== 'ok'), [], 'requests failed during the rolling update');
  const sets = (await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=web' })).items;
  t.deepEqual(sets.map((s) => [s.metadata!.annotations!['deployment.kubernetes.io/revision'], s.spec!.replicas]).sort(), [['1', 0], ['2', 2]]);
  const dep = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
  t.is(dep.metadata!.annotations!['deployment.kubernetes.io/revision'], '2');
});

test.serial('deployment-history-undo-restart: rollout history lists revisions, undo goes back, restart rolls anew', async (t) => {
  if (!cluster) return t.fail('no cluster');
  const history = await kubectl('rollout', 'history', 'deployment/web');
  t.regex(history, /REVISION\s+CHANGE-CAUSE\n1\s+<none>\n2\s+<none>/);
  t.regex(await kubectl('rollout', 'history', 'deployment/web', '--revision=1'), /VERSION:\s+1/);
  const first = (await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=web' })).items.find((s) => s.metadata!.annotations!['deployment.kubernetes.io/revision'] === '1')!;

  await kubectl('rollout', 'undo', 'deployment/web');
  t.regex(await kubectl('rollout', 'status', 'deployment/web', '--timeout=90s'), /successfully rolled out/);
  const pods = await readyPods('app=web', 2);
  for (const p of pods) {
    t.is(envOf(p).VERSION, '1');
    t.is(p.metadata!.labels!['pod-template-hash'], first.metadata!.labels!['pod-template-hash'], 'undo reuses the first ReplicaSet');
  }
  t.regex(await kubectl('rollout', 'history', 'deployment/web'), /\n2\s+<none>\n3\s+<none>/);

  await kubectl('rollout', 'restart', 'deployment/web');
  t.regex(await kubectl('rollout', 'status', 'deployment/web', '--timeout=90s'), /successfully rolled out/);
  const restarted = await readyPods('app=web', 2);
  for (const p of restarted) {
    t.truthy(p.metadata!.annotations?.['kubectl.kubernetes.io/restartedAt']);
    t.false(pods.some((old) => old.metadata!.name === p.metadata!.name));
  }
  const dep = await apps.readNamespacedDeployment({ name: 'web', namespace: 'default' });
  t.is(dep.metadata!.annotations!['deployment.kubernetes.io/revision'], '4');
});

test.serial('deployment-delete: deleting the Deployment removes its ReplicaSets and pods', async (t) => {
  if (!cluster) return t.fail('no cluster');
  await kubectl('delete', 'deployment', 'web');
  await waitFor('the ReplicaSets and pods to go', async () => {
    const sets = (await apps.listNamespacedReplicaSet({ namespace: 'default', labelSelector: 'app=web' })).items;
    const pods = (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' })).items;
    return sets.length === 0 && pods.length === 0 ? true : undefined;
  });
  t.pass();
});

test.serial('daemonset: a pod on each node, rolled with maxSurge', async (t) => {
  if (!cluster) return t.fail('no cluster');
  const ds = (env: string) => `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - {name: main, image: local, command: [sleep, "600"], env: [{name: VERSION, value: "${env}"}]}
`;
  await apply('agent', ds('1'));
  t.regex(await kubectl('rollout', 'status', 'daemonset/agent', '--timeout=60s'), /successfully rolled out/);
  const pods = await readyPods('app=agent', 2);
  t.deepEqual(pods.map((p) => p.spec!.nodeName).sort(), ['node1', 'node2']);
  for (const p of pods) t.like(p.metadata!.ownerReferences![0], { kind: 'DaemonSet', name: 'agent', controller: true });
  const status = (await apps.readNamespacedDaemonSet({ name: 'agent', namespace: 'default' })).status!;
  t.like(status, { desiredNumberScheduled: 2, currentNumberScheduled: 2, numberReady: 2, updatedNumberScheduled: 2 });

  const sampled = sample('app=agent');
  await apply('agent', ds('2'));
  t.regex(await kubectl('rollout', 'status', 'daemonset/agent', '--timeout=60s'), /successfully rolled out/);
  t.true((await sampled()).fewestReady >= 2, 'with maxUnavailable 0 each node keeps a Ready daemon pod');
  const rolled = await waitFor('one new pod per node', async () => {
    const p = await podsOf('app=agent');
    return p.length === 2 && p.every((x) => ready(x) && envOf(x).VERSION === '2') ? p : undefined;
  });
  t.deepEqual(rolled.map((p) => p.spec!.nodeName).sort(), ['node1', 'node2']);
  await kubectl('delete', 'daemonset', 'agent');
  await waitFor('the daemon pods to go', async () => ((await podsOf('app=agent')).length === 0 ? true : undefined));
});

test.serial('job: runs pods until completions succeed; a failing one stops at backoffLimit', async (t) => {
  if (!cluster) return t.fail('no cluster');
  const job = (name: string, code: number, extra: string) => `apiVersion: batch/v1
kind: Job
metadata: {name: ${name}, namespace: default}
spec:
  ${extra}
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: main, image: local, command: [${JSON.stringify(NODE)}, -e, "process.exit(${code})"]}
`;
  await apply('ok', job('ok', 0, 'completions: 2'));
  await apply('bad', job('bad', 3, 'backoffLimit: 1'));
  await kubectl('wait', '--for=condition=complete', 'job/ok', '--timeout=60s');
  const ok = await batch.readNamespacedJob({ name: 'ok', namespace: 'default' });
  t.like(ok.status, { succeeded: 2, active: 0 });
  t.truthy(ok.status!.completionTime);
  await kubectl('wait', '--for=condition=failed', 'job/bad', '--timeout=60s');
  const bad = await batch.readNamespacedJob({ name: 'bad', namespace: 'default' });
  t.is(bad.status!.failed, 2);
  t.is(bad.status!.conditions!.find((c) => c.type === 'Failed')?.reason, 'BackoffLimitExceeded');
  t.regex(await kubectl('get', 'jobs'), /ok\s+Complete\s+2\/2/);
});

test.serial('statefulset: stable names created in order, rolled in place, scaled down from the top', async (t) => {
  if (!cluster) return t.fail('no cluster');
  // Ready 1.5 s after start, so that ordered creation shows in the creation times.
  const slow = `setTimeout(() => require('node:http').createServer((q, s) => s.end('ok')).listen(8080), 1500);`;
  const sts = (env: string, replicas: number) => `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  replicas: ${replicas}
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: main
        image: local
        command: [${JSON.stringify(NODE)}, -e, ${JSON.stringify(slow)}]
        env: [{name: VERSION, value: "${env}"}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
`;
  await apply('db', sts('1', 3));
  t.regex(await kubectl('rollout', 'status', 'statefulset/db', '--timeout=60s'), /partitioned roll out complete|rolling update complete/);
  const pods = (await readyPods('app=db', 3)).sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!));
  t.deepEqual(pods.map((p) => p.metadata!.name), ['db-0', 'db-1', 'db-2']);
  const created = pods.map((p) => new Date(p.metadata!.creationTimestamp!).getTime());
  t.true(created[2]! - created[0]! >= 2000, `db-2 was created ${created[2]! - created[0]!} ms after db-0: not one after the other`);
  t.is(pods[1]!.spec!.hostname, 'db-1');
  t.is(pods[1]!.spec!.subdomain, 'db');

  await apply('db', sts('2', 3));
  // partition 0 is defaulted, so kubectl reports the partitioned form, as on a real cluster.
  t.regex(await kubectl('rollout', 'status', 'statefulset/db', '--timeout=90s'), /partitioned roll out complete: 3 new pods have been updated/);
  const rolled = await readyPods('app=db', 3);
  t.deepEqual(rolled.map((p) => p.metadata!.name).sort(), ['db-0', 'db-1', 'db-2']);
  for (const p of rolled) t.is(envOf(p).VERSION, '2');
  const status = (await apps.readNamespacedStatefulSet({ name: 'db', namespace: 'default' })).status!;
  t.like(status, { replicas: 3, readyReplicas: 3, updatedReplicas: 3, currentRevision: status.updateRevision });

  await kubectl('scale', 'statefulset/db', '--replicas=1');
  const left = await readyPods('app=db', 1);
  t.is(left[0]!.metadata!.name, 'db-0');
  await kubectl('delete', 'statefulset', 'db');
  await waitFor('the stateful pods to go', async () => ((await podsOf('app=db')).length === 0 ? true : undefined));
});

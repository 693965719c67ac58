// apps/v1, batch/v1, policy/v1, coordination.k8s.io/v1 and networking.k8s.io/v1 through the real
// kubectl: applied from YAML, defaulted as a real API server defaults them, validated in its
// wording, scaled through the scale subresource, listed by `kubectl get all`.
import test from 'ava';
import { call, harness, kubectl } from '../helpers/apiserver.ts';

const DEPLOYMENT = (templateApp = 'web') => `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: ${templateApp}}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
`;

const OTHERS = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: busybox}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres:17}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: default}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: once, image: busybox, command: [echo, hi]}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: default}
spec: {holderIdentity: controller-0, leaseDurationSeconds: 15}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-hbone, namespace: default}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 15008}]}]
`;

async function getJson(h: Awaited<ReturnType<typeof harness>>, args: string[]) {
  const r = await kubectl(h, ['get', ...args, '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

test('kubectl apply of a Deployment shows the server defaults in kubectl get -o yaml', async (t) => {
  const h = await harness(t);
  const r = await kubectl(h, ['apply', '-f', '-'], { input: DEPLOYMENT() });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /deployment.apps\/web created/);
  const y = await kubectl(h, ['get', 'deployment', 'web', '-o', 'yaml']);
  t.is(y.code, 0, y.stderr);
  t.regex(y.stdout, /\n {2}replicas: 1\n/);
  t.regex(y.stdout, /\n {2}revisionHistoryLimit: 10\n/);
  t.regex(y.stdout, /\n {2}progressDeadlineSeconds: 600\n/);
  t.regex(y.stdout, /rollingUpdate:\n {6}maxSurge: 25%\n {6}maxUnavailable: 25%\n {4}type: RollingUpdate\n/);
  t.regex(y.stdout, /imagePullPolicy: IfNotPresent/);
  t.regex(y.stdout, /restartPolicy: Always/);
  t.regex(y.stdout, /\n {2}generation: 1\n/);
  // Re-applying the same file changes nothing; changing the image bumps generation.
  t.regex((await kubectl(h, ['apply', '-f', '-'], { input: DEPLOYMENT() })).stdout, /deployment.apps\/web unchanged/);
  const changed = await kubectl(h, ['apply', '-f', '-'], { input: DEPLOYMENT().replace('nginx:1.27', 'nginx:1.28') });
  t.regex(changed.stdout, /deployment.apps\/web configured/, changed.stderr);
  const d = await getJson(h, ['deployment', 'web']);
  t.is(d.metadata.generation, 2);
  t.is(d.spec.template.spec.containers[0].image, 'nginx:1.28');
  t.is(d.spec.template.spec.containers[0].ports[0].containerPort, 80, 'the strategic merge kept the container port');
});

test('a Deployment whose selector does not match its template labels is refused with 422', async (t) => {
  const h = await harness(t);
  const r = await kubectl(h, ['apply', '-f', '-'], { input: DEPLOYMENT('other') });
  t.not(r.code, 0);
  t.regex(r.stderr, /The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value: map\[string\]string\{"app":"other"\}: `selector` does not match template `labels`/);
  const raw = await call(h.server, 'POST', '/apis/apps/v1/namespaces/default/deployments', { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } } } });
  t.is(raw.status, 422);
  t.true(raw.body.details.causes.some((c: { field: string; message: string }) => c.field === 'spec.selector' && c.message === 'Required value'));
});

test('the selector of a Deployment is immutable', async (t) => {
  const h = await harness(t);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: DEPLOYMENT() })).code, 0);
  const r = await kubectl(h, ['patch', 'deployment', 'web', '--type=merge', '-p', '{"spec":{"selector":{"matchLabels":{"app":"web","v":"2"}},"template":{"metadata":{"labels":{"v":"2"}}}}}']);
  t.not(r.code, 0);
  t.regex(r.stderr, /spec.selector: Invalid value: .*: field is immutable/);
});

test('kubectl scale deployment changes spec.replicas through the scale subresource', async (t) => {
  const h = await harness(t);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: DEPLOYMENT() })).code, 0);
  const r = await kubectl(h, ['scale', 'deployment', 'web', '--replicas=3']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /deployment.apps\/web scaled/);
  t.is((await getJson(h, ['deployment', 'web'])).spec.replicas, 3);
  const wide = await kubectl(h, ['get', 'deploy', '-o', 'wide']);
  t.regex(wide.stdout, /^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\s+CONTAINERS\s+IMAGES\s+SELECTOR\n/);
  t.regex(wide.stdout, /\nweb\s+0\/3\s+0\s+0\s+\d+s\s+web\s+nginx:1.27\s+app=web\n/);
  const scale = await call(h.server, 'GET', '/apis/apps/v1/namespaces/default/deployments/web/scale');
  t.is(scale.body.kind, 'Scale');
  t.is(scale.body.apiVersion, 'autoscaling/v1');
  t.deepEqual([scale.body.spec.replicas, scale.body.status.selector], [3, 'app=web']);
  const stale = await kubectl(h, ['scale', 'deployment', 'web', '--replicas=5', '--resource-version=1']);
  t.not(stale.code, 0, 'a stale --resource-version is a conflict');
  const neg = await call(h.server, 'PATCH', '/apis/apps/v1/namespaces/default/deployments/web/scale', { spec: { replicas: -1 } }, { contentType: 'application/merge-patch+json' });
  t.is(neg.status, 422);
  t.is(neg.body.details.causes[0].message, 'Invalid value: -1: must be greater than or equal to 0');
});

test('the status subresource splits status from spec and only spec changes bump generation', async (t) => {
  const h = await harness(t);
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: DEPLOYMENT() })).code, 0);
  const path = '/apis/apps/v1/namespaces/default/deployments/web';
  const st = await call(h.server, 'PATCH', `${path}/status`, { spec: { replicas: 7 }, status: { replicas: 1, observedGeneration: 1 } }, { contentType: 'application/merge-patch+json' });
  t.is(st.status, 200, st.text);
  t.is(st.body.spec.replicas, 1, 'status writes ignore spec');
  t.is(st.body.status.observedGeneration, 1);
  t.is(st.body.metadata.generation, 1, 'a status write is no spec change');
  const main = await call(h.server, 'PATCH', path, { spec: { replicas: 2 }, status: { replicas: 9 } }, { contentType: 'application/merge-patch+json' });
  t.is(main.body.status.replicas, 1, 'main-resource writes ignore status');
  t.is(main.body.metadata.generation, 2);
  const label = await call(h.server, 'PATCH', path, { metadata: { labels: { x: 'y' } } }, { contentType: 'application/merge-patch+json' });
  t.is(label.body.metadata.generation, 2, 'a metadata change is no spec change');
});

test('kubectl apply of a DaemonSet, StatefulSet, Job, Lease, PDB and NetworkPolicy, with their defaults', async (t) => {
  const h = await harness(t);
  const r = await kubectl(h, ['apply', '-f', '-'], { input: OTHERS });
  t.is(r.code, 0, r.stderr);
  for (const line of ['daemonset.apps/agent created', 'statefulset.apps/db created', 'job.batch/once created', 'lease.coordination.k8s.io/leader created', 'poddisruptionbudget.policy/web created', 'networkpolicy.networking.k8s.io/allow-hbone created']) {
    t.true(r.stdout.includes(line), line);
  }
  const ds = await getJson(h, ['ds', 'agent']);
  t.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
  const sts = await getJson(h, ['sts', 'db']);
  t.is(sts.spec.podManagementPolicy, 'OrderedReady');
  t.is(sts.spec.replicas, 1);
  const job = await getJson(h, ['job', 'once']);
  t.deepEqual([job.spec.backoffLimit, job.spec.completions, job.spec.parallelism], [6, 1, 1]);
  t.is(job.spec.selector.matchLabels['batch.kubernetes.io/controller-uid'], job.metadata.uid);
  t.is(job.spec.template.metadata.labels['job-name'], 'once');
  t.deepEqual((await getJson(h, ['netpol', 'allow-hbone'])).spec.policyTypes, ['Ingress']);
  t.is((await getJson(h, ['lease', 'leader'])).spec.holderIdentity, 'controller-0');
  t.is((await getJson(h, ['pdb', 'web'])).spec.minAvailable, 1);
  t.regex((await kubectl(h, ['apply', '-f', '-'], { input: OTHERS })).stdout, /job.batch\/once unchanged/);

  const noRestart = await kubectl(h, ['apply', '-f', '-'], { input: OTHERS.split('---')[2]!.replace('once', 'twice').replace('restartPolicy: Never', '') });
  t.regex(noRestart.stderr, /spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"/);
  const all = await kubectl(h, ['get', 'all']);
  t.is(all.code, 0, all.stderr);
  t.regex(all.stdout, /^NAME\s+DESIRED\s+CURRENT\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+NODE SELECTOR\s+AGE\ndaemonset.apps\/agent\s+0\s+0\s+0\s+0\s+0\s+<none>\s+\d+s\n/);
  t.regex(all.stdout, /\nNAME\s+READY\s+AGE\nstatefulset.apps\/db\s+0\/1\s+\d+s\n/);
  t.regex(all.stdout, /\nNAME\s+STATUS\s+COMPLETIONS\s+DURATION\s+AGE\njob.batch\/once\s+Running\s+0\/1\s+\d+s\n/);
  t.regex((await kubectl(h, ['get', 'pdb'])).stdout, /\nweb\s+1\s+N\/A\s+0\s+\d+s\n/);
});

test('kubectl get endpoints follows the service and its ready pods, through the EndpointSlice', async (t) => {
  const h = await harness(t);
  const svc = 'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n';
  const pod = 'apiVersion: v1\nkind: Pod\nmetadata: {name: w1, namespace: default, labels: {app: web}}\nspec: {containers: [{name: web, image: nginx, ports: [{containerPort: 8080}]}]}\n';
  t.is((await kubectl(h, ['apply', '-f', '-'], { input: `${svc}---\n${pod}` })).code, 0);
  const status = (ready: boolean) =>
    call(h.server, 'PATCH', '/api/v1/namespaces/default/pods/w1/status', { status: { podIP: '10.244.1.9', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] } }, { contentType: 'application/merge-patch+json' });
  const until = async (re: RegExp) => {
    for (let i = 0; i < 50; i++) {
      const r = await kubectl(h, ['get', 'endpoints', 'web', '--ignore-not-found']);
      if (re.test(r.stdout)) return r.stdout;
      await new Promise((res) => setTimeout(res, 100));
    }
    return (await kubectl(h, ['get', 'endpoints', 'web', '--ignore-not-found'])).stdout;
  };
  await status(true);
  t.regex(await until(/web\s+10\.244\.1\.9:8080\s/), /^NAME\s+ENDPOINTS\s+AGE\nweb\s+10\.244\.1\.9:8080\s+\d+s\n/);
  await status(false);
  t.regex(await until(/web\s+<none>\s/), /web\s+<none>\s/);
  const ep = await call(h.server, 'GET', '/api/v1/namespaces/default/endpoints/web');
  t.deepEqual(ep.body.subsets[0].notReadyAddresses.map((a: { ip: string }) => a.ip), ['10.244.1.9']);
  t.is((await kubectl(h, ['delete', 'svc', 'web'])).code, 0);
  t.is(await until(/^$/), '', 'the Endpoints go with the service');
});

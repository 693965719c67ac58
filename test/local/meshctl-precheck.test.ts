// `meshctl check --pre-install` against the local API server (no root, no kubelets): the version,
// RBAC and conflict lines come from the API; the node pod is never scheduled, so the node checks
// are reported as skipped within --timeout, and the pod is deleted afterwards.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { call, harness, type Harness } from '../helpers/apiserver.ts';

const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));

function meshctl(h: Harness, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(MESHCTL, [...args, '--kubeconfig', h.kubeconfig], { env: { ...process.env, KUBECONFIG: '', HOME: h.dir, NO_COLOR: '1' }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function create(h: Harness, path: string, body: object): Promise<void> {
  const r = await call(h.server, 'POST', path, body);
  if (r.status !== 201) throw new Error(`POST ${path}: ${r.status} ${r.text}`);
}

function daemonSet(namespace: string, name: string): object {
  const labels = { app: name };
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name, namespace },
    spec: { selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image: 'x' }] } } },
  };
}

test('pre-install-reports-version-rbac-conflicts-and-skipped-node-checks', async (t) => {
  const h = await harness(t);
  await create(h, '/api/v1/namespaces', { metadata: { name: 'istio-system' } });
  await create(h, '/apis/apps/v1/namespaces/istio-system/daemonsets', daemonSet('istio-system', 'ztunnel'));

  const started = Date.now();
  const r = await meshctl(h, ['check', '--pre-install', '--timeout', '3s']);
  t.true(Date.now() - started < 30_000, 'the node pod wait is bounded by --timeout');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /✔ kubernetes-version\s+Kubernetes .*1\.32/);
  t.regex(r.stdout, /✔ rbac\s+allowed to create all 11 kinds/);
  t.regex(r.stdout, /✔ existing-install\s+no install in mesh-system/);
  t.regex(r.stdout, /! istio\s+Istio is installed \(namespace istio-system, ztunnel DaemonSet istio-system\/ztunnel\)/);
  t.regex(r.stdout, /✔ cilium\s+no cilium DaemonSet/);
  t.regex(r.stdout, /! node\/\(any\)\s+node checks skipped: the pod was not scheduled within 3s \(no nodes registered\)/);
  t.regex(r.stdout, /warnings: the cluster is ready for the mesh/);

  // The node pod is gone.
  const pods = await call(h.server, 'GET', '/api/v1/namespaces/default/pods');
  t.deepEqual((JSON.parse(pods.text) as { items: unknown[] }).items, []);

  const json = await meshctl(h, ['check', '--pre-install', '--timeout', '1s', '-o', 'json']);
  const results = JSON.parse(json.stdout) as Array<{ name: string; status: string }>;
  t.deepEqual(results.map((x) => x.name), ['kubernetes-version', 'rbac', 'existing-install', 'istio', 'cilium', 'node/(any)']);
});

test('pre-install-on-a-node-without-kubelet-and-as-a-user-without-rbac', async (t) => {
  const h = await harness(t);
  await create(h, '/api/v1/nodes', { metadata: { name: 'n1' } });
  const r = await meshctl(h, ['check', '--pre-install', '--timeout', '2s']);
  t.regex(r.stdout, /! node\/n1\s+node checks skipped: the pod on n1 did not start within 2s/);
  const pods = await call(h.server, 'GET', '/api/v1/pods');
  t.deepEqual((JSON.parse(pods.text) as { items: unknown[] }).items, [], 'the node pod is deleted');

  // A ServiceAccount with no roles: every permission the chart needs is named as denied.
  await create(h, '/api/v1/namespaces/default/serviceaccounts', { metadata: { name: 'nobody' } });
  const kubeconfig = `${h.dir}/nobody.kubeconfig`;
  await h.server.writeKubeconfig(kubeconfig, { user: 'nobody', token: h.server.issueServiceAccountToken('default', 'nobody') });
  const denied = await meshctl({ ...h, kubeconfig }, ['check', '--pre-install', '--timeout', '1s']);
  t.is(denied.code, 1);
  t.regex(denied.stdout, /✖ rbac\s+not allowed: create namespaces, create customresourcedefinitions\.apiextensions\.k8s\.io, .*create daemonsets\.apps in mesh-system/);
  t.regex(denied.stdout, /! conflicts\s+existing installs, Istio and Cilium not checked: namespaces is forbidden/);
  t.regex(denied.stdout, /! node\/\*\s+node checks skipped: cannot list the nodes: nodes is forbidden/);
  t.regex(denied.stdout, /failed.*: fix these before installing the mesh/);
});

test('pre-install-interrupted-deletes-the-node-pod', async (t) => {
  const h = await harness(t);
  const { spawn } = await import('node:child_process');
  const child = spawn(MESHCTL, ['check', '--pre-install', '--timeout', '60s', '--kubeconfig', h.kubeconfig], { env: { ...process.env, KUBECONFIG: '', HOME: h.dir, NO_COLOR: '1' } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const podsNow = async () => (JSON.parse((await call(h.server, 'GET', '/api/v1/pods')).text) as { items: unknown[] }).items.length;
  const deadline = Date.now() + 20_000;
  while ((await podsNow()) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  t.is(await podsNow(), 1, 'the node pod was created');
  child.kill('SIGINT');
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  t.is(code, 130, stderr);
  t.regex(stderr, /interrupted; deleted 1 node pod\(s\) in default/);
  t.is(await podsNow(), 0);
});

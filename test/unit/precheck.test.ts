// The pure verdicts of `meshctl check --pre-install` (src/cli/precheck.ts), fed listed objects.
import test from 'ava';
import {
  checkCniConfDir,
  checkConflicts,
  checkKubernetesVersion,
  checkRbac,
  describePermission,
  imagePullProblem,
  installPermissions,
  nodeResults,
  parseDuration,
  parseServerVersion,
} from '../../src/cli/precheck.ts';
import { renderChecks } from '../../src/cli/output.ts';

test('server-version-from-major-minor-or-git-version', (t) => {
  t.deepEqual(parseServerVersion({ major: '1', minor: '30' }), [1, 30]);
  t.deepEqual(parseServerVersion({ major: '1', minor: '29+', gitVersion: 'v1.29.4-eks-1' }), [1, 29]);
  t.deepEqual(parseServerVersion({ major: '', minor: '', gitVersion: 'v1.31.2+k3s1' }), [1, 31]);
  t.is(parseServerVersion({ gitVersion: 'devel' }), undefined);
});

test('kubernetes-version-verdicts', (t) => {
  const table: Array<[string, string, 'ok' | 'warn' | 'fail']> = [
    ['1', '32', 'ok'],
    ['1', '30', 'ok'],
    ['1', '29', 'warn'],
    ['1', '27', 'warn'],
    ['1', '26', 'fail'],
    ['x', 'y', 'warn'],
  ];
  for (const [major, minor, status] of table) t.is(checkKubernetesVersion({ major, minor }).status, status, `${major}.${minor}`);
  t.regex(checkKubernetesVersion({ major: '1', minor: '28', gitVersion: 'v1.28.3' }).detail, /KEP-4193.*falls back to looking up each pod/);
});

test('rbac-list-covers-what-the-chart-creates', (t) => {
  const described = installPermissions().map((p) => describePermission(p, 'mesh-system'));
  for (const want of [
    'create customresourcedefinitions.apiextensions.k8s.io',
    'create clusterroles.rbac.authorization.k8s.io',
    'create clusterrolebindings.rbac.authorization.k8s.io',
    'create daemonsets.apps in mesh-system',
    'create deployments.apps in mesh-system',
    'create services in mesh-system',
    'create serviceaccounts in mesh-system',
    'create namespaces',
  ]) t.true(described.includes(want), want);
});

test('rbac-names-each-denied-permission', (t) => {
  const perms = installPermissions();
  t.is(checkRbac(perms.map((permission) => ({ permission, allowed: true })), 'mesh-system').status, 'ok');
  const r = checkRbac(perms.map((permission) => ({ permission, allowed: permission.resource !== 'clusterroles' && permission.resource !== 'daemonsets' })), 'mesh-system');
  t.is(r.status, 'fail');
  t.is(r.detail, 'not allowed: create clusterroles.rbac.authorization.k8s.io, create daemonsets.apps in mesh-system');
});

test('conflicts-clean-cluster', (t) => {
  const r = checkConflicts({ namespaces: ['default', 'kube-system'], daemonSets: [{ namespace: 'kube-system', name: 'kube-proxy' }] }, 'mesh-system');
  t.deepEqual(r.map((x) => [x.name, x.status]), [['existing-install', 'ok'], ['istio', 'ok'], ['cilium', 'ok']]);
});

test('conflicts-existing-install-istio-and-cilium-socket-lb', (t) => {
  const r = checkConflicts(
    {
      namespaces: ['mesh-system', 'istio-system'],
      daemonSets: [
        { namespace: 'mesh-system', name: 'mesh-node' },
        { namespace: 'istio-system', name: 'ztunnel' },
        { namespace: 'kube-system', name: 'cilium' },
      ],
      ciliumConfig: { 'kube-proxy-replacement': 'true' },
    },
    'mesh-system',
  );
  t.deepEqual(r.map((x) => x.status), ['warn', 'warn', 'warn']);
  t.regex(r[0]!.detail, /already installed: mesh-system\/mesh-node/);
  t.regex(r[1]!.detail, /namespace istio-system, ztunnel DaemonSet istio-system\/ztunnel/);
  t.regex(r[2]!.detail, /socket load balancing.*root cgroup/);
  t.regex(r[2]!.fix!, /hostNamespaceOnly/);
  // Cilium without socket LB: still named, with what to look at.
  const plain = checkConflicts({ namespaces: [], daemonSets: [{ namespace: 'kube-system', name: 'cilium' }], ciliumConfig: { 'bpf-lb-sock': 'false' } }, 'mesh-system');
  t.regex(plain[2]!.detail, /primary CNI/);
});

test('node-results-prefix-and-unparseable-output', (t) => {
  const r = nodeResults('n1', 'warning: x\n[{"name":"kernel","status":"ok","detail":"Linux 6.1"}]\n');
  t.deepEqual(r, [{ name: 'node/n1/kernel', status: 'ok', detail: 'Linux 6.1' }]);
  const bad = nodeResults('n1', 'exec format error');
  t.is(bad[0]!.status, 'warn');
  t.regex(bad[0]!.detail, /not meshctl check's JSON: exec format error/);
});

test('image-pull-problem', (t) => {
  t.is(imagePullProblem([{ state: { waiting: { reason: 'ContainerCreating' } } }]), undefined);
  t.is(imagePullProblem([{ state: { waiting: { reason: 'ErrImagePull', message: 'not found' } } }]), 'ErrImagePull: not found');
  t.is(imagePullProblem(undefined), undefined);
});

test('cni-conf-dir', (t) => {
  t.is(checkCniConfDir('/etc/cni/net.d', ['10-flannel.conflist', '99-loopback.conf']).detail, '/etc/cni/net.d: primary CNI config 10-flannel.conflist');
  t.is(checkCniConfDir('/etc/cni/net.d', ['README']).status, 'fail');
  t.regex(checkCniConfDir('/etc/cni/net.d', { error: 'ENOENT' }).detail, /ENOENT/);
});

test('durations', (t) => {
  t.is(parseDuration('60s'), 60_000);
  t.is(parseDuration('2m'), 120_000);
  t.is(parseDuration('500ms'), 500);
  t.is(parseDuration('5'), 5000);
  t.throws(() => parseDuration('soon'));
});

test('render-cluster-summary', (t) => {
  const out = renderChecks([{ name: 'rbac', status: 'fail', detail: 'not allowed: x', fix: 'ask' }], process.stdout, 'cluster');
  t.regex(out, /✖ rbac\s+not allowed: x/);
  t.regex(out, /1 check failed, 0 warnings: fix these before installing the mesh/);
});

test('node-check-entry-prints-the-host-checks-and-the-cni-dir-as-json', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const dir = mkdtempSync(join(tmpdir(), 'mesh-cni-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, '10-primary.conflist'), '{}');
  const entry = fileURLToPath(new URL('../../src/cli/node-check.ts', import.meta.url));
  const r = spawnSync(process.execPath, [entry, '--cni-conf-dir', dir], { encoding: 'utf8' });
  const results = nodeResults('n1', r.stdout);
  t.true(results.some((x) => x.name === 'node/n1/kernel'), r.stderr);
  t.deepEqual(results.find((x) => x.name === 'node/n1/cni-conf-dir'), { name: 'node/n1/cni-conf-dir', status: 'ok', detail: `${dir}: primary CNI config 10-primary.conflist` });
});

// The CNI protocol as a runtime speaks it (environment + stdin in, result or error JSON out) and
// the plugin's decisions, with the Kubernetes API and the agent faked.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { CniError, CODES, type Deps, errorJson, parseInvocation, podAddresses, podInMesh, runPlugin } from '../../src/cni/index.ts';
import { AgentUnreachable } from '../../src/cni/agent-client.ts';
import { kubeconfigText, loadInstallConfig } from '../../src/cni/install.ts';
import { readKubeconfig } from '../../src/cni/kube.ts';
import { inMesh } from '../../src/controller/model/workloads.ts';

const PREV = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'cni0', mac: '00:11:22:33:44:55' }, { name: 'eth0', mac: '00:11:22:33:44:66', sandbox: '/run/netns/p' }],
  ips: [{ address: '10.88.0.7/16', gateway: '10.88.0.1', interface: 1 }, { address: 'fd00::7/64', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};
const conf = (more: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', type: 'mesh-cni', agentSocket: '/nonexistent/agent.sock', kubeconfig: '/nonexistent', excludeNamespaces: ['kube-system'], prevResult: PREV, ...more });
const env = (command: string, args = 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web;K8S_POD_UID=u-1') => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: '/run/netns/p',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: args,
  CNI_PATH: '/opt/cni/bin',
});

interface Fake extends Deps {
  calls: string[];
  requests: Record<string, unknown>[];
}
function fake(opts: { nsLabels?: Record<string, string>; podLabels?: Record<string, string>; hostNetwork?: boolean; agent?: (req: Record<string, unknown>) => unknown } = {}): Fake {
  const f: Fake = {
    calls: [],
    requests: [],
    async namespace(name) {
      f.calls.push(`ns ${name}`);
      return { metadata: { name, labels: opts.nsLabels ?? { 'mesh.io/dataplane-mode': 'ambient' } } };
    },
    async pod(ns, name) {
      f.calls.push(`pod ${ns}/${name}`);
      return { metadata: { name, namespace: ns, uid: 'u-1', labels: opts.podLabels ?? {} }, spec: { serviceAccountName: 'web-sa', hostNetwork: opts.hostNetwork ?? false } };
    },
    async agent(req) {
      f.calls.push(`agent ${req['op'] as string}`);
      f.requests.push(req);
      return opts.agent ? opts.agent(req) : { ztunnel: 'served' };
    },
  };
  return f;
}

test('VERSION answers without a config, with the versions this plugin speaks', async (t) => {
  const out = await runPlugin(parseInvocation({ CNI_COMMAND: 'VERSION' }, ''));
  t.deepEqual(out.result, { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});

test('the environment is checked as the spec says, with the variable named', (t) => {
  t.throws(() => parseInvocation({}, conf()), { message: /CNI_COMMAND is not set/ });
  t.throws(() => parseInvocation({ ...env('ADD'), CNI_NETNS: '' }, conf()), { message: /CNI_NETNS is not set/ });
  t.throws(() => parseInvocation(env('ADD'), '{'), { message: /not JSON/ });
  t.throws(() => parseInvocation(env('ADD'), conf({ cniVersion: '0.2.0' })), { message: /cniVersion 0.2.0 is not supported/ });
  const inv = parseInvocation({ ...env('DEL'), CNI_NETNS: '' }, conf());
  t.is(inv.netns, '', 'DEL may come without a netns');
  t.deepEqual(inv.args, { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'shop', K8S_POD_NAME: 'web', K8S_POD_UID: 'u-1' });
});

test('errors are the spec\'s error object, with our code and a message to act on', (t) => {
  const e = (() => {
    try {
      parseInvocation(env('ADD'), conf({ cniVersion: '9.9.9' }));
    } catch (err) {
      return err;
    }
  })();
  t.like(errorJson(e, '1.0.0'), { cniVersion: '1.0.0', code: CODES.INCOMPATIBLE_VERSION });
  t.deepEqual(errorJson(new CniError(CODES.DRIFT, 'm', 'd'), '1.1.0'), { cniVersion: '1.1.0', code: 102, msg: 'm', details: 'd' });
});

test('ADD in an ambient namespace enrols the pod with its netns, addresses and identity, and passes prevResult through', async (t) => {
  const f = fake();
  const out = await runPlugin(parseInvocation(env('ADD'), conf()), f);
  t.deepEqual(out.result, { ...PREV, cniVersion: '1.0.0' });
  t.deepEqual(f.requests[0], {
    op: 'cni-add',
    pod: { uid: 'u-1', name: 'shop/web', netnsPath: '/run/netns/p', addresses: ['10.88.0.7', 'fd00::7'], workload: { name: 'web', namespace: 'shop', serviceAccount: 'web-sa' } },
    waitZtunnelMs: 5000,
  });
});

test('pods that are not for the mesh pass through: other namespaces, opted out, excluded, not Kubernetes', async (t) => {
  for (const [why, f, args] of [
    ['namespace not ambient', fake({ nsLabels: {} }), undefined],
    ['pod labelled none', fake({ podLabels: { 'mesh.io/dataplane-mode': 'none' } }), undefined],
    ['host network', fake({ hostNetwork: true }), undefined],
    ['excluded namespace', fake(), 'K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns'],
    ['no pod in CNI_ARGS', fake(), ''],
  ] as const) {
    const out = await runPlugin(parseInvocation(env('ADD', args), conf()), f);
    t.deepEqual(out.result, { ...PREV, cniVersion: '1.0.0' }, why);
    t.false(f.calls.some((c) => c.startsWith('agent')), `${why}: the agent is not asked`);
  }
  const excluded = fake();
  await runPlugin(parseInvocation(env('ADD', 'K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns'), conf()), excluded);
  t.deepEqual(excluded.calls, [], 'an excluded namespace costs no API call');
  const other = fake({ nsLabels: {} });
  await runPlugin(parseInvocation(env('ADD'), conf()), other);
  t.deepEqual(other.calls, ['ns shop'], 'another namespace costs one API call');
});

test('ADD fails closed when the agent cannot be reached, and says how to recover', async (t) => {
  const f = fake({
    agent: () => {
      throw new AgentUnreachable('cannot reach the mesh agent at /x: ENOENT');
    },
  });
  const e = await t.throwsAsync(runPlugin(parseInvocation(env('ADD'), conf()), f));
  const j = errorJson(e, '1.0.0');
  t.is(j.code, CODES.TRY_AGAIN_LATER);
  t.regex(j.msg, /pod shop\/web belongs in the mesh but the mesh agent cannot be reached/);
  t.regex(j.details ?? '', /remove the mesh-cni entry/);
});

test('ADD fails when ztunnel does not serve the pod in time', async (t) => {
  const f = fake({ agent: () => ({ ztunnel: 'timeout' }) });
  await t.throwsAsync(runPlugin(parseInvocation(env('ADD'), conf({ waitZtunnelMs: 10 })), f), { message: /did not serve it within 10 ms \(timeout\)/ });
});

test('ADD refuses to run unchained, and refuses unknown settings', async (t) => {
  await t.throwsAsync(runPlugin(parseInvocation(env('ADD'), conf({ prevResult: undefined })), fake()), { message: /chained plugin/ });
  await t.throwsAsync(runPlugin(parseInvocation(env('ADD'), conf({ agentSokcet: '/x' })), fake()), { message: /unknown field agentSokcet/ });
});

test('DEL unenrols by the uid, and never fails: not enrolled, or the agent gone', async (t) => {
  const f = fake({ agent: () => ({ removed: false }) });
  const out = await runPlugin(parseInvocation(env('DEL'), conf({ prevResult: undefined })), f);
  t.is(out.result, undefined);
  t.deepEqual(f.requests, [{ op: 'unenrol', uid: 'u-1' }]);
  const gone = fake({
    agent: () => {
      throw new AgentUnreachable('down');
    },
  });
  await t.notThrowsAsync(runPlugin(parseInvocation(env('DEL'), conf()), gone));
});

test('CHECK reports a pod that should be enrolled and is not, and one enrolled that should not be', async (t) => {
  const missing = fake({ agent: () => [] });
  await t.throwsAsync(runPlugin(parseInvocation(env('CHECK'), conf()), missing), { message: /should be in the mesh .* but the agent has not enrolled it/ });
  const fine = fake({ agent: () => [{ uid: 'u-1', addresses: ['fd00::7', '10.88.0.7'] }] });
  await t.notThrowsAsync(runPlugin(parseInvocation(env('CHECK'), conf()), fine));
  const stray = fake({ nsLabels: {}, agent: () => [{ uid: 'u-1', addresses: ['10.88.0.7'] }] });
  await t.throwsAsync(runPlugin(parseInvocation(env('CHECK'), conf()), stray), { message: /enrolled but should not be/ });
  const moved = fake({ agent: () => [{ uid: 'u-1', addresses: ['10.88.0.9'] }] });
  await t.throwsAsync(runPlugin(parseInvocation(env('CHECK'), conf()), moved), { message: /enrolled with addresses 10.88.0.9/ });
});

test('the pod addresses are the container interface\'s, one per family', (t) => {
  t.deepEqual(podAddresses(PREV), ['10.88.0.7', 'fd00::7']);
  t.deepEqual(podAddresses({ ips: [{ address: '10.0.0.1/24', interface: 0 }, { address: '10.0.0.2/24', interface: 1 }], interfaces: [{ name: 'br' }, { name: 'eth0', sandbox: '/x' }] }), ['10.0.0.2']);
  t.deepEqual(podAddresses({ ips: [{ address: '10.0.0.2/24', version: '4' }, { address: '10.0.0.3/24', version: '4' }] }), ['10.0.0.2'], '0.3.x results, no interfaces');
});

test('the plugin decides as the controller does', (t) => {
  const amb = { 'mesh.io/dataplane-mode': 'ambient' };
  for (const [nsLabels, podLabels, hostNetwork] of [
    [amb, {}, false],
    [amb, { 'mesh.io/dataplane-mode': 'none' }, false],
    [amb, {}, true],
    [{}, {}, false],
    [{ 'mesh.io/dataplane-mode': 'none' }, { 'mesh.io/dataplane-mode': 'ambient' }, false],
  ] as const) {
    const pod = { metadata: { name: 'p', labels: { ...podLabels } }, spec: { hostNetwork, containers: [] } } as k8s.V1Pod;
    t.is(podInMesh(pod, { ...nsLabels }), inMesh(pod, { ...nsLabels }), JSON.stringify([nsLabels, podLabels, hostNetwork]));
  }
});

test('STATUS (CNI 1.1) fails with code 50 while the agent does not answer; GC has nothing to collect', async (t) => {
  const inv = parseInvocation({ CNI_COMMAND: 'STATUS' }, conf({ cniVersion: '1.1.0' }));
  await t.notThrowsAsync(runPlugin(inv, fake({ agent: () => ({ pods: 0 }) })));
  const down = fake({
    agent: () => {
      throw new AgentUnreachable('cannot reach the mesh agent at /x: ENOENT');
    },
  });
  const e = await t.throwsAsync(runPlugin(inv, down));
  t.is(errorJson(e, '1.1.0').code, CODES.NOT_AVAILABLE);
  t.is((await runPlugin(parseInvocation({ CNI_COMMAND: 'GC' }, conf({ cniVersion: '1.1.0' })), fake())).result, undefined);
});

test('the kubeconfig the installer writes is what the plugin reads', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-cni-kc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'token'), 'tok\n');
  writeFileSync(join(dir, 'ca.crt'), 'PEM');
  const cfg = loadInstallConfig({ MESH_CNI_CONF_DIR: dir, MESH_CNI_TOKEN_FILE: join(dir, 'token'), MESH_CNI_CA_FILE: join(dir, 'ca.crt'), MESH_CNI_API_SERVER: 'https://10.0.0.1:6443/' });
  writeFileSync(cfg.kubeconfig, kubeconfigText(cfg));
  t.deepEqual(readKubeconfig(cfg.kubeconfig), { server: 'https://10.0.0.1:6443', ca: Buffer.from('PEM'), token: 'tok', insecure: false });
  t.throws(() => readKubeconfig(join(dir, 'missing')), { message: /cannot read the kubeconfig .*installer writes it/ });
});

test('waitZtunnelMs 0 enrols without waiting for ztunnel', async (t) => {
  const f = fake({ agent: () => ({ ztunnel: 'timeout' }) });
  const out = await runPlugin(parseInvocation(env('ADD'), conf({ waitZtunnelMs: 0 })), f);
  t.deepEqual(out.result, { ...PREV, cniVersion: '1.0.0' });
  t.regex(out.note, /ztunnel: timeout/);
});

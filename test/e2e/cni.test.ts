// The CNI plugin driven as a container runtime drives it (libcni: each plugin of the conflist in
// turn, with the network's name and version and the previous plugin's result on stdin), chained
// after Debian's reference plugins (bridge + host-local, and loopback), against a local cluster's
// API and a node's real agent and ztunnel. The conflist, kubeconfig and plugin are the ones the
// installer writes. This test is node1's container runtime: the local kubelet leaves its pods to it.
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { controlRequest } from '../../src/agent/index.ts';
import { Installer, loadInstallConfig, primaryConfFile } from '../../src/cni/index.ts';
import { startMesh } from '../helpers/mesh.ts';
import { requireRoot, uniquePrefix } from '../helpers/topology.ts';

const run = promisify(execFile);
const REFERENCE = '/usr/lib/cni';

interface Reply {
  code: number;
  out: Record<string, unknown>;
  stderr: string;
  ms: number;
}

/** Runs one plugin binary, as libcni's ExecPlugin does: env in, config on stdin, JSON out. */
function execPlugin(argv: string[], env: Record<string, string>, stdin: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      try {
        resolve({ code: code ?? -1, out: out.trim() ? (JSON.parse(out) as Record<string, unknown>) : {}, stderr: err, ms });
      } catch {
        reject(new Error(`${argv.join(' ')}: stdout is not JSON: ${out} ${err}`));
      }
    });
    child.stdin.end(JSON.stringify(stdin));
  });
}

test('the CNI plugin chained after bridge/host-local enrols ambient pods, passes others through, fails closed, unenrols and reports drift', async (t) => {
  if (!(await requireRoot(t))) return;
  const mesh = await startMesh(t, { nodes: 1, ztunnel: true });
  const p = mesh.prefix;
  const work = mkdtempSync(`/tmp/mesh-${p}-cni-`);
  const hostNs = `${p}-cnihost`;
  const netnses: string[] = [];
  t.teardown(async () => {
    for (const n of [...netnses, hostNs]) await run('ip', ['netns', 'del', n]).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  });
  // The node's network namespace for the reference plugins (the bridge and its routes go there,
  // never into the host's).
  await run('ip', ['netns', 'add', hostNs]);
  const kubelet = mesh.cluster.kubelets.find((k) => k.node.name === 'node1')!;
  const podChanged = kubelet.podChanged.bind(kubelet);
  kubelet.podChanged = (pod, deleted) => (['shop', 'plain'].includes(pod.metadata?.namespace ?? '') ? undefined : podChanged(pod, deleted));

  // The node as the installer leaves it: the primary network's conflist with our entry last.
  const confDir = join(work, 'net.d');
  const binDir = join(work, 'bin');
  mkdirSync(confDir);
  mkdirSync(binDir);
  const primary = {
    cniVersion: '1.0.0',
    name: 'podnet',
    plugins: [{ type: 'bridge', bridge: 'mcni0', isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: '10.250.0.0/24' }]], dataDir: join(work, 'ipam') } }],
  };
  writeFileSync(join(confDir, '10-podnet.conflist'), JSON.stringify(primary));
  const token = await mesh.core.createNamespacedServiceAccountToken({ namespace: 'mesh-system', name: 'mesh-cni', body: { spec: { expirationSeconds: 3600 } } });
  writeFileSync(join(work, 'token'), token.status!.token!);
  writeFileSync(join(work, 'ca.crt'), mesh.cluster.api.caCertPem);
  const agentSocket = join(mesh.stateDir, 'node1', 'agent.sock');
  const installer = new Installer(
    loadInstallConfig({
      MESH_CNI_CONF_DIR: confDir,
      MESH_CNI_BIN_DIR: binDir,
      MESH_CNI_TOKEN_FILE: join(work, 'token'),
      MESH_CNI_CA_FILE: join(work, 'ca.crt'),
      MESH_CNI_API_SERVER: mesh.cluster.api.url,
      MESH_AGENT_SOCKET: agentSocket,
    }),
  );
  installer.ensure();
  const conflist = JSON.parse(readFileSync(join(confDir, primaryConfFile(readdirSync(confDir))!), 'utf8')) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
  t.deepEqual(conflist.plugins.map((x) => x.type), ['bridge', 'mesh-cni']);

  const results = new Map<string, Record<string, unknown>>();
  const timings: string[] = [];
  /** libcni's AddNetworkList / CheckNetworkList / DelNetworkList for one pod. */
  const runtime = async (command: 'ADD' | 'CHECK' | 'DEL', pod: { ns: string; name: string; uid: string; netns: string }) => {
    const env = {
      CNI_COMMAND: command,
      CNI_CONTAINERID: `c-${pod.name}`,
      CNI_NETNS: `/run/netns/${pod.netns}`,
      CNI_IFNAME: 'eth0',
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.ns};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=c-${pod.name};K8S_POD_UID=${pod.uid}`,
      CNI_PATH: `${binDir}:${REFERENCE}`,
    };
    const plugins = command === 'DEL' ? [...conflist.plugins].reverse() : conflist.plugins;
    let prev = command === 'ADD' ? undefined : results.get(pod.uid);
    let last: Reply | undefined;
    for (const plugin of plugins) {
      const conf = { ...plugin, cniVersion: conflist.cniVersion, name: conflist.name, ...(prev ? { prevResult: prev } : {}) };
      // The reference plugins run in the node's netns; ours needs no netns of its own (it talks
      // to the agent's unix socket and to the API server, which listens in the host's).
      const argv = plugin.type === 'mesh-cni' ? [join(binDir, 'mesh-cni')] : ['ip', 'netns', 'exec', hostNs, join(REFERENCE, plugin.type as string)];
      last = await execPlugin(argv, env, conf);
      if (plugin.type === 'mesh-cni') timings.push(`${command} ${pod.ns}/${pod.name}: ${last.ms.toFixed(0)} ms as a process, ${/\((\d+) ms\)/.exec(last.stderr)?.[1] ?? '?'} ms by its own clock`);
      if (last.code !== 0) return last;
      if (command === 'ADD') prev = last.out;
    }
    if (command === 'ADD') results.set(pod.uid, last!.out);
    return last!;
  };
  const sandbox = async (ns: string, name: string) => {
    const created = await mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { nodeName: 'node1', serviceAccountName: 'default', containers: [{ name: 'main', image: 'unused' }] } } as k8s.V1Pod });
    const netns = `${p}-cni-${name}`;
    await run('ip', ['netns', 'add', netns]);
    netnses.push(netns);
    // Loopback is the runtime's own network, set up before the pod's.
    const lo = await execPlugin([join(REFERENCE, 'loopback')], { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `c-${name}`, CNI_NETNS: `/run/netns/${netns}`, CNI_IFNAME: 'lo', CNI_PATH: REFERENCE }, { cniVersion: '1.0.0', name: 'cni-loopback', type: 'loopback' });
    t.is(lo.code, 0, JSON.stringify(lo.out));
    return { ns, name, uid: created.metadata!.uid!, netns };
  };
  const enrolled = async () => ((await controlRequest(agentSocket, { op: 'list' })) as { uid: string; addresses: string[] }[]).map((x) => x.uid);

  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  await mesh.core.createNamespace({ body: { metadata: { name: 'plain' } } });

  // An ambient pod: enrolled, served by ztunnel, and the bridge's result passed on untouched.
  const web = await sandbox('shop', 'web');
  const added = await runtime('ADD', web);
  t.is(added.code, 0, JSON.stringify(added.out));
  const ip = ((added.out.ips as { address: string }[])[0]!.address).split('/')[0]!;
  t.regex(ip, /^10\.250\.0\./);
  t.true((await enrolled()).includes(web.uid), 'the ambient pod is enrolled');
  t.regex(added.stderr, /ztunnel serves it/);
  t.is((await runtime('CHECK', web)).code, 0, 'CHECK: as it should be');

  // A pod of another namespace: through, in milliseconds, and not enrolled.
  const other = await sandbox('plain', 'other');
  const through = await runtime('ADD', other);
  t.is(through.code, 0, JSON.stringify(through.out));
  t.deepEqual(through.out.ips, results.get(other.uid)!.ips);
  t.false((await enrolled()).includes(other.uid));
  t.regex(through.stderr, /passed through: namespace plain is not labelled/);
  // Node's start and one API call; no Kubernetes client library is loaded (src/cni/kube.ts).
  t.true(through.ms < 2000, `pass-through took ${through.ms} ms`);

  // The agent's socket gone: ADD fails with the spec's error, and the pod does not start.
  const late = await sandbox('shop', 'late');
  renameSync(agentSocket, `${agentSocket}.away`);
  let failed: Reply;
  try {
    failed = await runtime('ADD', late);
  } finally {
    renameSync(`${agentSocket}.away`, agentSocket);
  }
  t.not(failed.code, 0);
  t.like(failed.out, { cniVersion: '1.0.0', code: 11 });
  t.regex(failed.out.msg as string, /pod shop\/late belongs in the mesh but the mesh agent cannot be reached/);
  t.regex(failed.out.details as string, /remove the mesh-cni entry/);
  t.false((await enrolled()).includes(late.uid));
  // The runtime tears the failed sandbox down (DEL): that must not fail either.
  t.is((await runtime('DEL', late)).code, 0);

  // DEL unenrols; a second DEL is fine.
  t.is((await runtime('DEL', web)).code, 0);
  t.false((await enrolled()).includes(web.uid), 'DEL unenrolled the pod');
  t.is((await runtime('DEL', web)).code, 0, 'DEL twice');

  // Drift: a pod that should be enrolled and is not.
  const drift = await sandbox('shop', 'drift');
  t.is((await runtime('ADD', drift)).code, 0);
  await controlRequest(agentSocket, { op: 'unenrol', uid: drift.uid });
  const checked = await runtime('CHECK', drift);
  t.not(checked.code, 0);
  t.like(checked.out, { code: 102 });
  t.regex(checked.out.msg as string, /pod shop\/drift should be in the mesh .* but the agent has not enrolled it/);
  for (const pod of [other, drift]) t.is((await runtime('DEL', pod)).code, 0);
  t.log(timings.join('\n'));
});

test('the installed plugin runs on a host that has nothing but /bin/sh: its own Node, libraries and files', async (t) => {
  if (!(await requireRoot(t))) return;
  // A root filesystem with a static busybox as /bin/sh and nothing else: no libc, no Node, no
  // checkout. The installer writes into its /opt/cni/bin as onto a node's; the runtime (chroot here)
  // execs the plugin by its full path, as libcni does.
  const root = mkdtempSync(`/tmp/mesh-${uniquePrefix()}-bare-`);
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const d of ['bin', 'opt/cni/bin', 'etc/cni/net.d', 'tmp']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'bin/sh'));
  writeFileSync(join(root, 'token'), 'tok\n');
  writeFileSync(join(root, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  writeFileSync(join(root, 'etc/cni/net.d/10-podnet.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', plugins: [{ type: 'bridge' }] }));
  const installer = new Installer(
    loadInstallConfig({
      MESH_CNI_CONF_DIR: join(root, 'etc/cni/net.d'),
      MESH_CNI_BIN_DIR: join(root, 'opt/cni/bin'),
      MESH_CNI_TOKEN_FILE: join(root, 'token'),
      MESH_CNI_CA_FILE: join(root, 'ca.crt'),
      MESH_CNI_API_SERVER: 'https://127.0.0.1:1',
    }),
  );
  installer.ensure();
  const plugin = ['chroot', root, '/opt/cni/bin/mesh-cni'];
  const version = await execPlugin(plugin, { CNI_COMMAND: 'VERSION' }, { cniVersion: '1.0.0' });
  t.is(version.code, 0, version.stderr);
  t.like(version.out, { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  // A pod of an excluded namespace passes straight through: the previous result comes back.
  const prevResult = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], ips: [{ address: '10.250.0.9/24', interface: 0 }] };
  const conf = { cniVersion: '1.0.0', name: 'podnet', type: 'mesh-cni', agentSocket: '/nonexistent.sock', kubeconfig: '/nonexistent', excludeNamespaces: ['kube-system'], prevResult };
  const add = await execPlugin(plugin, { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/1/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin', CNI_ARGS: 'K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=dns' }, conf);
  t.is(add.code, 0, add.stderr);
  t.deepEqual(add.out, prevResult);
  t.log(`in a bare root: VERSION ${version.ms.toFixed(0)} ms, pass-through ADD ${add.ms.toFixed(0)} ms (bundle ${Math.round(installer.cfg.bundle.bytes / 1e6)} MB)`);
  t.is(installer.uninstall().length, 4, 'the conflist entry, the launcher, the bundle and the kubeconfig');
  t.deepEqual(readdirSync(join(root, 'opt/cni/bin')), []);
});

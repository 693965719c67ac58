// The control plane end to end on the local cluster: the controller (in this process) watches the
// API, the node agents (real processes, one per node) follow its config stream over mutual TLS
// with certificates from its CA, and namespace labels flipped with the real kubectl enrol and
// unenrol running pods — checked in each node's pinned BPF maps.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { Controller } from '../../src/controller/controller.ts';
import { Datapath, layout, openPinnedMap } from '../../src/datapath/index.ts';
import { CertificateClient, spiffeId } from '../../src/identity/index.ts';
import { cgroupParentFor, LocalCluster } from '../../src/local/runtime/cluster.ts';
import { run } from '../../src/local/run.ts';
import { assertNothingLeaked, requireRoot, uniquePrefix } from '../helpers/topology.ts';

const execFileP = promisify(execFile);
const AGENT = fileURLToPath(new URL('../../src/agent/main.ts', import.meta.url));
const SERVER_NAME = 'mesh-controller.mesh-system.svc';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(fn()).catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Pod UIDs enrolled in a node's datapath, read from its pinned maps. */
function enrolledUids(bpffs: string): string[] {
  const uids = openPinnedMap(`${bpffs}/maps/mesh_pod_uids`);
  const pods = openPinnedMap(`${bpffs}/maps/mesh_pods`);
  try {
    return uids
      .keys()
      .filter((k) => pods.get(k))
      .map((k) => layout.decodeUid(uids.get(k)!))
      .sort();
  } finally {
    uids.close();
    pods.close();
  }
}

test('label flips enrol and unenrol running pods through controller, stream and agents', async (t) => {
  if (!(await requireRoot(t))) return;
  const prefix = uniquePrefix();
  const stateDir = mkdtempSync(`/tmp/mesh-${prefix}-cp-`);
  const bpffs = `${stateDir}/bpffs`;
  mkdirSync(bpffs);
  await run('mount', ['-t', 'bpf', 'bpf', bpffs]);
  const state: { cluster?: LocalCluster; controller?: Controller; agents: ChildProcess[] } = { agents: [] };
  t.teardown(async () => {
    for (const a of state.agents) if (a.exitCode === null && a.signalCode === null) a.kill('SIGTERM');
    await Promise.all(state.agents.map((a) => (a.exitCode === null && a.signalCode === null ? once(a, 'exit') : undefined)));
    await state.controller?.stop();
    for (const n of ['node1', 'node2']) Datapath.uninstall(`${bpffs}/${n}`);
    await run('umount', [bpffs]);
    await state.cluster?.stop();
    rmSync(stateDir, { recursive: true, force: true });
    const left = await assertNothingLeaked(prefix);
    if (left.length) throw new Error(`left on the host: ${left.join('; ')}`);
  });

  const cluster = await LocalCluster.start({ stateDir, nodes: 2, prefix });
  state.cluster = cluster;
  const core = cluster.kc.makeApiClient(k8s.CoreV1Api);
  const env = { ...process.env, KUBECONFIG: cluster.kubeconfigPath };
  const kubectl = (...args: string[]) => execFileP('kubectl', args, { env });

  // The node DaemonSet's pods: they hold the node identity the agents' tokens are bound to.
  await core.createNamespace({ body: { metadata: { name: 'mesh-system' } } });
  await core.createNamespacedServiceAccount({ namespace: 'mesh-system', body: { metadata: { name: 'mesh-node' } } });
  const nodePods: Record<string, k8s.V1Pod> = {};
  for (const node of ['node1', 'node2']) {
    nodePods[node] = await core.createNamespacedPod({
      namespace: 'mesh-system',
      body: {
        metadata: { name: `mesh-node-${node}` },
        spec: { nodeName: node, hostNetwork: true, serviceAccountName: 'mesh-node', containers: [{ name: 'hold', image: 'unused', command: ['sleep', '600'] }] },
      },
    });
  }
  const controller = await Controller.start(cluster.kc, { host: '127.0.0.1', xdsPort: 0, caPort: 0 });
  state.controller = controller;
  const root: string = await waitFor('the trust bundle ConfigMap', async () => (await core.readNamespacedConfigMap({ name: 'mesh-ca-root-cert', namespace: 'mesh-system' })).data?.['root-cert.pem']);
  writeFileSync(`${stateDir}/root-cert.pem`, root);

  const tokenFor = async (node: string) => {
    const pod = nodePods[node]!;
    const tr = await core.createNamespacedServiceAccountToken({
      name: 'mesh-node',
      namespace: 'mesh-system',
      body: { spec: { audiences: [], expirationSeconds: 3600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata!.name!, uid: pod.metadata!.uid! } } },
    });
    return tr.status!.token!;
  };
  const startAgent = async (node: string) => {
    writeFileSync(`${stateDir}/${node}.token`, await tokenFor(node));
    const child = spawn(process.execPath, [AGENT], {
      env: {
        ...process.env,
        MESH_LOG_LEVEL: 'info',
        MESH_BPFFS_DIR: `${bpffs}/${node}`,
        MESH_POD_CGROUP: cgroupParentFor(prefix),
        MESH_AGENT_SOCKET: `${stateDir}/${node}.sock`,
        MESH_NODE_NAME: node,
        MESH_CONTROLLER: `127.0.0.1:${controller.xdsPort}`,
        MESH_CA_ADDRESS: `127.0.0.1:${controller.ca.port}`,
        MESH_CONTROLLER_NAME: SERVER_NAME,
        MESH_CA_ROOT_FILE: `${stateDir}/root-cert.pem`,
        MESH_TOKEN_FILE: `${stateDir}/${node}.token`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout!.on('data', (d) => (log += d));
    child.stderr!.on('data', (d) => (log += d));
    state.agents.push(child);
    await waitFor(`agent on ${node}`, () => (log.includes('subscribed to the config stream') || child.exitCode !== null ? true : undefined), 30_000).catch(() => undefined);
    if (!log.includes('subscribed to the config stream')) throw new Error(`agent on ${node} did not subscribe: ${log}`);
  };
  await startAgent('node1');
  await startAgent('node2');

  // An application in a namespace that is not yet in the mesh.
  await core.createNamespace({ body: { metadata: { name: 'shop' } } });
  const mk = (name: string, node: string, labels: Record<string, string> = {}) =>
    core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name, labels }, spec: { nodeName: node, containers: [{ name: 'main', image: 'unused', command: ['sleep', '600'] }] } } });
  const web = await mk('web', 'node1');
  const cart = await mk('cart', 'node2');
  const optOut = await mk('legacy', 'node1', { 'mesh.io/dataplane-mode': 'none' });
  await waitFor('pods running', async () => {
    const pods = await core.listNamespacedPod({ namespace: 'shop' });
    return pods.items.every((p) => p.status?.phase === 'Running') && pods.items.length === 3 ? true : undefined;
  });
  t.deepEqual(enrolledUids(`${bpffs}/node1`), []);

  const labelled = Date.now();
  await kubectl('label', 'ns', 'shop', 'mesh.io/dataplane-mode=ambient');
  await waitFor('both pods enrolled', () => (enrolledUids(`${bpffs}/node1`).length === 1 && enrolledUids(`${bpffs}/node2`).length === 1 ? true : undefined), 5000);
  const enrolMs = Date.now() - labelled;
  t.log(`label → enrolled on both nodes: ${enrolMs} ms`);
  t.true(enrolMs < 1000, `enrolment took ${enrolMs} ms`);
  t.deepEqual(enrolledUids(`${bpffs}/node1`), [web.metadata!.uid!], 'the opted-out pod stays out');
  t.deepEqual(enrolledUids(`${bpffs}/node2`), [cart.metadata!.uid!]);
  t.false(enrolledUids(`${bpffs}/node1`).includes(optOut.metadata!.uid!));

  // A new pod in the ambient namespace is enrolled as it starts.
  const fresh = await mk('fresh', 'node2');
  await waitFor('new pod enrolled', () => (enrolledUids(`${bpffs}/node2`).includes(fresh.metadata!.uid!) ? true : undefined));

  // A malformed policy gets an error status and does not break the stream for anyone.
  const bad = `${stateDir}/bad-policy.yaml`;
  writeFileSync(
    bad,
    `apiVersion: security.mesh.io/v1
kind: AuthorizationPolicy
metadata: {name: broken, namespace: shop}
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.300/8"]
`,
  );
  const applied = await kubectl('apply', '-f', bad).catch((e: { stderr: string }) => e);
  const custom = cluster.kc.makeApiClient(k8s.CustomObjectsApi);
  if ('stderr' in applied && applied.stderr) {
    t.regex(applied.stderr, /ipBlocks|10\.0\.0\.300/, 'rejected at admission, naming the field');
  } else {
    const status = await waitFor('policy status', async () => {
      const p = (await custom.getNamespacedCustomObject({ group: 'security.mesh.io', version: 'v1', namespace: 'shop', plural: 'authorizationpolicies', name: 'broken' })) as { status?: { conditions?: { status: string; message: string }[] } };
      return p.status?.conditions?.length ? p.status.conditions : undefined;
    });
    t.true(status.some((c) => c.status === 'False' && /10\.0\.0\.300/.test(c.message)), JSON.stringify(status));
  }

  // Opting a pod out later takes it out; the stream still works after the bad policy.
  await kubectl('label', 'pod', '-n', 'shop', 'fresh', 'mesh.io/dataplane-mode=none');
  await waitFor('opted-out pod unenrolled', () => (!enrolledUids(`${bpffs}/node2`).includes(fresh.metadata!.uid!) ? true : undefined));

  // The controller restarts: nothing changes in the datapath, and the agents resume.
  await controller.stop();
  state.controller = await Controller.start(cluster.kc, { host: '127.0.0.1', xdsPort: controller.xdsPort, caPort: controller.ca.port });
  await new Promise((r) => setTimeout(r, 500));
  t.deepEqual(enrolledUids(`${bpffs}/node1`), [web.metadata!.uid!]);
  t.deepEqual(enrolledUids(`${bpffs}/node2`), [cart.metadata!.uid!]);

  // Removing the namespace label unenrols everything.
  await kubectl('label', 'ns', 'shop', 'mesh.io/dataplane-mode-');
  await waitFor('all unenrolled', () => (enrolledUids(`${bpffs}/node1`).length + enrolledUids(`${bpffs}/node2`).length === 0 ? true : undefined), 15_000);

  // The CA: node1's token cannot get the identity of a pod that runs only on node2, nor can a forged token.
  await core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: 'payments' } } });
  await core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name: 'pay' }, spec: { nodeName: 'node2', serviceAccountName: 'payments', containers: [{ name: 'm', image: 'unused', command: ['sleep', '600'] }] } } });
  const ca = (token: string) => new CertificateClient({ address: `127.0.0.1:${state.controller!.ca.port}`, caRoots: root, serverName: SERVER_NAME, token: () => token });
  const cross = await ca(await tokenFor('node1')).fetch(spiffeId('cluster.local', 'shop', 'payments')).catch((e: Error & { grpcCode?: number }) => e);
  t.is((cross as { grpcCode?: number }).grpcCode, 7, `PERMISSION_DENIED: ${(cross as Error).message}`);
  t.regex((cross as Error).message, /node1/);
  const forged = await ca('eyJhbGciOiJIUzI1NiJ9.e30.forged').fetch(spiffeId('cluster.local', 'shop', 'payments')).catch((e: Error & { grpcCode?: number }) => e);
  t.is((forged as { grpcCode?: number }).grpcCode, 16, `UNAUTHENTICATED: ${(forged as Error).message}`);
  const own = await ca(await tokenFor('node2')).fetch(spiffeId('cluster.local', 'shop', 'payments'));
  t.is(own.certChain.length >= 1, true, 'node2 may have it');
});

// The control plane end to end on the local cluster: the controller (in this process) watches the
// API, the node agents (real processes, one per node) follow its config stream over mutual TLS
// with certificates from its CA, and namespace labels flipped with the real kubectl enrol and
// unenrol running pods — checked in each node's pinned BPF maps.
import { writeFileSync } from 'node:fs';
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { CertificateClient, spiffeId } from '../../src/identity/index.ts';
import { SERVER_NAME, startMesh, waitFor } from '../helpers/mesh.ts';
import { requireRoot } from '../helpers/topology.ts';

test('label flips enrol and unenrol running pods through controller, stream and agents', async (t) => {
  if (!(await requireRoot(t))) return;
  const mesh = await startMesh(t);
  const { core, kubectl, tokenFor, stateDir, root } = mesh;
  const cluster = mesh.cluster;
  const enrolledUids = mesh.enrolledUids;

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
  t.deepEqual(enrolledUids('node1'), []);

  const labelled = Date.now();
  await kubectl('label', 'ns', 'shop', 'mesh.io/dataplane-mode=ambient');
  await waitFor('both pods enrolled', () => (enrolledUids('node1').length === 1 && enrolledUids('node2').length === 1 ? true : undefined), 5000);
  const enrolMs = Date.now() - labelled;
  t.log(`label → enrolled on both nodes: ${enrolMs} ms`);
  t.true(enrolMs < 1000, `enrolment took ${enrolMs} ms`);
  t.deepEqual(enrolledUids('node1'), [web.metadata!.uid!], 'the opted-out pod stays out');
  t.deepEqual(enrolledUids('node2'), [cart.metadata!.uid!]);
  t.false(enrolledUids('node1').includes(optOut.metadata!.uid!));

  // A new pod in the ambient namespace is enrolled as it starts.
  const fresh = await mk('fresh', 'node2');
  await waitFor('new pod enrolled', () => (enrolledUids('node2').includes(fresh.metadata!.uid!) ? true : undefined));

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

  // A policy with HTTP fields and no waypoint: enforced fail-closed, and its status says so.
  const l7 = `${stateDir}/l7-policy.yaml`;
  writeFileSync(
    l7,
    'apiVersion: security.mesh.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: get-only, namespace: shop}\nspec:\n  action: ALLOW\n  rules:\n  - to:\n    - operation: {methods: ["GET"]}\n',
  );
  await kubectl('apply', '-f', l7);
  const l7Status = await waitFor('L7 policy status', async () => {
    const p = (await custom.getNamespacedCustomObject({ group: 'security.mesh.io', version: 'v1', namespace: 'shop', plural: 'authorizationpolicies', name: 'get-only' })) as { status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } };
    return p.status?.conditions?.find((c) => c.status === 'False') ? p.status.conditions : undefined;
  });
  t.true(l7Status.some((c) => c.reason === 'L7FieldsWithoutWaypoint' && /methods/.test(c.message)), JSON.stringify(l7Status));
  await kubectl('delete', '-f', l7);

  // Opting a pod out later takes it out; the stream still works after the bad policy.
  await kubectl('label', 'pod', '-n', 'shop', 'fresh', 'mesh.io/dataplane-mode=none');
  await waitFor('opted-out pod unenrolled', () => (!enrolledUids('node2').includes(fresh.metadata!.uid!) ? true : undefined));

  // The controller restarts: nothing changes in the datapath, and the agents resume.
  await mesh.restartController();
  await new Promise((r) => setTimeout(r, 500));
  t.deepEqual(enrolledUids('node1'), [web.metadata!.uid!]);
  t.deepEqual(enrolledUids('node2'), [cart.metadata!.uid!]);

  // Removing the namespace label unenrols everything.
  await kubectl('label', 'ns', 'shop', 'mesh.io/dataplane-mode-');
  await waitFor('all unenrolled', () => (enrolledUids('node1').length + enrolledUids('node2').length === 0 ? true : undefined), 15_000);

  // The CA: node1's token cannot get the identity of a pod that runs only on node2, nor can a forged token.
  await core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: 'payments' } } });
  await core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name: 'pay' }, spec: { nodeName: 'node2', serviceAccountName: 'payments', containers: [{ name: 'm', image: 'unused', command: ['sleep', '600'] }] } } });
  const ca = (token: string) => new CertificateClient({ address: `127.0.0.1:${mesh.controller.ca.port}`, caRoots: root, serverName: SERVER_NAME, token: () => token });
  const cross = await ca(await tokenFor('node1')).fetch(spiffeId('cluster.local', 'shop', 'payments')).catch((e: Error & { grpcCode?: number }) => e);
  t.is((cross as { grpcCode?: number }).grpcCode, 7, `PERMISSION_DENIED: ${(cross as Error).message}`);
  t.regex((cross as Error).message, /node1/);
  const forged = await ca('eyJhbGciOiJIUzI1NiJ9.e30.forged').fetch(spiffeId('cluster.local', 'shop', 'payments')).catch((e: Error & { grpcCode?: number }) => e);
  t.is((forged as { grpcCode?: number }).grpcCode, 16, `UNAUTHENTICATED: ${(forged as Error).message}`);
  const own = await ca(await tokenFor('node2')).fetch(spiffeId('cluster.local', 'shop', 'payments'));
  t.is(own.certChain.length >= 1, true, 'node2 may have it');
});

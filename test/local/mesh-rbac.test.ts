// The mesh's RBAC (daemonset/chart/files/rbac.yaml, what the chart ships) is enough for what the controller
// does, and no more: the controller runs with a token of its own service account against the
// local API server — as src/local/mesh.ts runs it — builds the model, writes a policy status,
// publishes the root, and its CA reviews node tokens and looks up pods.
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import test from 'ava';
import { Controller } from '../../src/controller/controller.ts';
import { CertificateClient, parseSpiffeId } from '../../src/identity/index.ts';
import { installChartCrds } from '../../src/local/chart-crds.ts';
import { applyMeshRbac, CONTROLLER_SA, tokenFileKubeConfig, writeControllerToken } from '../../src/local/mesh-rbac.ts';
import { call, harness, kubectl } from '../helpers/apiserver.ts';

test('the controller runs with the chart RBAC only: model, policy status, root ConfigMaps, CA token reviews', async (t) => {
  const h = await harness(t);
  const admin = new k8s.KubeConfig();
  admin.loadFromFile(h.kubeconfig);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: 'mesh-system' } } });
  await core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  await installChartCrds(admin); // the chart's CRDs, as src/local/mesh.ts installs them first
  await applyMeshRbac(admin);
  await applyMeshRbac(admin); // re-applying replaces, as a chart upgrade does
  const tokenFile = join(h.dir, 'controller', 'token');
  await writeControllerToken(admin, tokenFile);
  const kc = tokenFileKubeConfig(h.server.url, h.server.caCertPem, tokenFile);

  // The controller's credential is its service account's, not the admin's.
  const who = await kubectl(h, ['auth', 'can-i', 'list', 'secrets', '-n', 'shop', `--as=system:serviceaccount:${CONTROLLER_SA.namespace}:${CONTROLLER_SA.name}`]);
  t.is(who.stdout.trim(), 'no');
  const denied = await t.throwsAsync(kc.makeApiClient(k8s.CoreV1Api).listNamespacedSecret({ namespace: 'shop' }));
  t.is((denied as unknown as { code: number }).code, 403);

  await core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: 'cart' } } });
  const cart = await core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name: 'cart-1' }, spec: { nodeName: 'node-a', serviceAccountName: 'cart', containers: [{ name: 'c', image: 'x' }] } } });
  await call(h.server, 'PATCH', '/api/v1/namespaces/shop/pods/cart-1/status', { status: { phase: 'Running', podIP: '10.244.0.7', podIPs: [{ ip: '10.244.0.7' }] } }, { contentType: 'application/merge-patch+json' });
  const policy = await kubectl(h, ['apply', '-f', '-'], {
    input: 'apiVersion: security.mesh.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-cart, namespace: shop}\nspec:\n  action: ALLOW\n  rules:\n  - from: [{source: {principals: ["cluster.local/ns/shop/sa/cart"]}}]\n',
  });
  t.is(policy.code, 0, policy.stderr);

  const controller = await Controller.start(kc, { host: '127.0.0.1', xdsPort: 0, caPort: 0, relayPort: 0, dashboardPort: 0 });
  t.teardown(() => controller.stop());
  const until = async <T>(what: string, f: () => Promise<T | undefined> | T | undefined): Promise<T> => {
    for (let i = 0; i < 100; i++) {
      const v = await f();
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  await controller.settle();
  await until('the pod in the model', () => ([...controller.model!.workloads.values()].some((w) => JSON.stringify(w).includes(cart.metadata!.uid!)) ? true : undefined));

  // It wrote the policy's status through the status subresource.
  const conditions = await until('the policy status', async () => (await call(h.server, 'GET', '/apis/security.mesh.io/v1/namespaces/shop/authorizationpolicies/allow-cart')).body.status?.conditions);
  t.true(conditions.length > 0, JSON.stringify(conditions));

  // The CA made its root in mesh-system and published the bundle to every namespace.
  const bundle = await until('the root ConfigMap in shop', async () => (await core.readNamespacedConfigMap({ name: 'mesh-ca-root-cert', namespace: 'shop' }).catch(() => undefined))?.data?.['root-cert.pem']);
  t.is(bundle, controller.ca.authority.trustBundle.join(''));
  t.truthy((await core.readNamespacedSecret({ name: 'mesh-ca', namespace: 'mesh-system' })).data?.['root-cert.pem']);

  // A node token is reviewed (TokenReview) and the pods looked up, with the controller's rights.
  const node = await core.createNamespacedPod({ namespace: 'mesh-system', body: { metadata: { name: 'mesh-node-a' }, spec: { nodeName: 'node-a', hostNetwork: true, serviceAccountName: 'mesh-node', containers: [{ name: 'c', image: 'x' }] } } });
  const token = (
    await core.createNamespacedServiceAccountToken({
      name: 'mesh-node',
      namespace: 'mesh-system',
      body: { spec: { audiences: ['mesh-ca'], boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'mesh-node-a', uid: node.metadata!.uid } } },
    })
  ).status!.token!;
  const client = new CertificateClient({ address: `127.0.0.1:${controller.ca.port}`, caRoots: controller.ca.authority.trustBundle, serverName: 'mesh-controller.mesh-system.svc', token: () => token });
  t.teardown(() => client.close());
  const cert = await client.fetch(parseSpiffeId('spiffe://cluster.local/ns/shop/sa/cart'));
  t.deepEqual(cert.leaf.uris, ['spiffe://cluster.local/ns/shop/sa/cart']);
});

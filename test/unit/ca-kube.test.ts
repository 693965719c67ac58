// The CA over the real Kubernetes client (kubeCaBackend, @kubernetes/client-node) against the
// local cluster's API server: Secrets, ConfigMaps, the namespace watch, TokenRequest-issued
// pod-bound tokens reviewed with TokenReview, pod lookups.
import { status } from '@grpc/grpc-js';
import * as k8s from '@kubernetes/client-node';
import test from 'ava';
import { kubeCaBackend, ROOT_CONFIGMAP, startCa } from '../../src/controller/ca/index.ts';
import { CaClientError, CertificateClient, parseSpiffeId } from '../../src/identity/index.ts';
import { harness } from '../helpers/apiserver.ts';

test('ca-over-the-local-api-server-issues-refuses-publishes-and-keeps-its-root', async (t) => {
  const h = await harness(t);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(h.kubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  for (const name of ['mesh-system', 'shop']) await core.createNamespace({ body: { metadata: { name } } });
  await core.createNamespacedServiceAccount({ namespace: 'mesh-system', body: { metadata: { name: 'mesh-node' } } });
  await core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: 'cart' } } });
  const pod = (ns: string, name: string, sa: string) =>
    core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { nodeName: 'node-a', serviceAccountName: sa, containers: [{ name: 'c', image: 'x' }] } } });
  const agent = await pod('mesh-system', 'mesh-node-a', 'mesh-node');
  await pod('shop', 'cart-1', 'cart');
  const token = (
    await core.createNamespacedServiceAccountToken({
      name: 'mesh-node',
      namespace: 'mesh-system',
      body: { spec: { audiences: ['mesh-ca'], boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'mesh-node-a', uid: agent.metadata!.uid } } },
    })
  ).status!.token!;

  const ca = await startCa(kubeCaBackend(kc), { trustDomain: 'cluster.local', host: '127.0.0.1', port: 0 });
  const client = new CertificateClient({ address: `127.0.0.1:${ca.port}`, caRoots: ca.authority.trustBundle, token: () => token });
  t.teardown(async () => {
    client.close();
    await ca.close();
  });
  const cert = await client.fetch(parseSpiffeId('spiffe://cluster.local/ns/shop/sa/cart'));
  t.deepEqual(cert.leaf.uris, ['spiffe://cluster.local/ns/shop/sa/cart']);
  const e = await t.throwsAsync(client.fetch(parseSpiffeId('spiffe://cluster.local/ns/shop/sa/pay')), { instanceOf: CaClientError });
  t.is(e!.grpcCode, status.PERMISSION_DENIED);
  const forged = new CertificateClient({ address: `127.0.0.1:${ca.port}`, caRoots: ca.authority.trustBundle, token: () => `${token.slice(0, -4)}AAAA` });
  t.teardown(() => forged.close());
  t.is((await t.throwsAsync(forged.fetch(cert.identity), { instanceOf: CaClientError }))!.grpcCode, status.UNAUTHENTICATED);

  t.deepEqual(Object.keys((await core.readNamespacedSecret({ name: 'mesh-ca', namespace: 'mesh-system' })).data ?? {}).sort(), ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem']);
  await core.createNamespace({ body: { metadata: { name: 'late' } } });
  const bundle = ca.authority.trustBundle.join('');
  let late: string | undefined;
  for (let i = 0; i < 50 && !late; i++) {
    late = (await core.readNamespacedConfigMap({ name: ROOT_CONFIGMAP, namespace: 'late' }).catch(() => undefined))?.data?.['root-cert.pem'];
    if (!late) await new Promise((r) => setTimeout(r, 100));
  }
  t.is(late, bundle, 'a namespace created later gets the bundle');
  t.is((await core.readNamespacedConfigMap({ name: ROOT_CONFIGMAP, namespace: 'shop' })).data?.['root-cert.pem'], bundle);

  const again = await startCa(kubeCaBackend(kc), { trustDomain: 'cluster.local', host: '127.0.0.1', port: 0 });
  t.teardown(() => again.close());
  t.deepEqual(again.authority.trustBundle, ca.authority.trustBundle, 'a restart keeps the root');
});

import { webcrypto, X509Certificate } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import test from 'ava';
import {
  CaError,
  createSelfSignedRoot,
  loadCaMaterial,
  ROOT_CONFIGMAP,
  startCa,
  type RunningCa,
} from '../../src/controller/ca/index.ts';
import { CaClientError, CertificateClient, formatSpiffeId, nodeOfCertificate, parseSpiffeId, stringStruct } from '../../src/identity/index.ts';
import { createCsr, fingerprintOf, generateKeyPair, mergeBundles, parseCertificate, splitPemBundle, verifyChain } from '../../src/tls/index.ts';
import { x509 } from '../../src/tls/issuer.ts';
import { FakeKube, NODE_SA, nodeToken, rawCreateCertificate } from '../helpers/ca.ts';

const TD = 'cluster.local';
const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const PAY = `spiffe://${TD}/ns/shop/sa/pay`;

interface World {
  kube: FakeKube;
  ca: RunningCa;
  client(token: string, validitySeconds?: number): CertificateClient;
}

/** node-a runs shop/cart, node-b runs shop/pay; the CA listens on 127.0.0.1, port 0. */
async function world(t: { teardown(fn: () => unknown): void }, opts: { maxTtlMs?: number } = {}): Promise<World> {
  const kube = new FakeKube();
  kube.addNamespace('mesh-system', 'shop', 'default');
  kube.addPod({ namespace: 'shop', name: 'cart-1', serviceAccountName: 'cart', nodeName: 'node-a' });
  kube.addPod({ namespace: 'shop', name: 'pay-1', serviceAccountName: 'pay', nodeName: 'node-b' });
  kube.addPod({ namespace: 'shop', name: 'done-1', serviceAccountName: 'batch', nodeName: 'node-a', phase: 'Succeeded' });
  const ca = await startCa(kube, { trustDomain: TD, host: '127.0.0.1', port: 0, ...opts });
  const clients: CertificateClient[] = [];
  t.teardown(async () => {
    clients.forEach((c) => c.close());
    await ca.close();
  });
  return {
    kube,
    ca,
    client(token, validitySeconds) {
      const c = new CertificateClient({ address: `127.0.0.1:${ca.port}`, caRoots: ca.authority.trustBundle, token: () => token, validitySeconds, timeoutMs: 5000 });
      clients.push(c);
      return c;
    },
  };
}

test('ca-issues-a-workload-certificate-for-a-pod-on-the-callers-node', async (t) => {
  const w = await world(t);
  const before = Date.now();
  const cert = await w.client(nodeToken(w.kube, 'tok-a', 'node-a'), 600).fetch(parseSpiffeId(CART));
  const leaf = cert.leaf;
  t.deepEqual(leaf.uris, [CART], 'exactly the URI SAN');
  t.deepEqual(leaf.dnsNames, []);
  t.deepEqual(leaf.ipAddresses, []);
  t.false(leaf.isCA);
  t.true(Math.abs(leaf.notAfter.getTime() - before - 600_000) < 5000, `validity honoured: ${leaf.notAfter.toISOString()}`);
  // Verifies against the root with Node's own X.509 code too, not only ours.
  const root = new X509Certificate(w.ca.authority.trustBundle[0]!);
  t.true(new X509Certificate(cert.certChain[0]!).verify(root.publicKey));
  t.notThrows(() => verifyChain(cert.certChain[0]!, cert.certChain.slice(1), cert.roots));
  const x = new x509.X509Certificate(cert.certChain[0]!);
  const ku = x.getExtension(x509.KeyUsagesExtension)!;
  t.is(ku.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
  t.deepEqual([...x.getExtension(x509.ExtendedKeyUsageExtension)!.usages].sort(), [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth].sort());
  t.true(x.getExtension(x509.SubjectAlternativeNameExtension)!.critical, 'SAN critical: the subject is empty');
  t.deepEqual(w.kube.reviews.map((r) => r.token), ['tok-a']);
});

test('ca-defaults-to-24h-and-caps-the-requested-validity', async (t) => {
  const w = await world(t, { maxTtlMs: 48 * 3_600_000 });
  const tok = nodeToken(w.kube, 'tok-a', 'node-a');
  const def = await w.client(tok).fetch(parseSpiffeId(CART));
  t.true(Math.abs(def.leaf.notAfter.getTime() - Date.now() - 24 * 3_600_000) < 5000);
  const capped = await w.client(tok, 10 * 365 * 86_400).fetch(parseSpiffeId(CART));
  t.true(Math.abs(capped.leaf.notAfter.getTime() - Date.now() - 48 * 3_600_000) < 5000);
});

test('ca-refuses-a-cross-node-identity-naming-node-and-identity', async (t) => {
  const w = await world(t);
  const e = await t.throwsAsync(w.client(nodeToken(w.kube, 'tok-a', 'node-a')).fetch(parseSpiffeId(PAY)), { instanceOf: CaClientError });
  t.is(e!.grpcCode, status.PERMISSION_DENIED);
  t.regex(e!.message, /node node-a may not obtain identity spiffe:\/\/cluster\.local\/ns\/shop\/sa\/pay: no running pod in namespace shop with service account pay/);
  // A pod that has finished no longer entitles its node.
  const done = await t.throwsAsync(w.client('tok-a').fetch(parseSpiffeId(`spiffe://${TD}/ns/shop/sa/batch`)), { instanceOf: CaClientError });
  t.is(done!.grpcCode, status.PERMISSION_DENIED);
});

test('ca-refuses-a-forged-or-missing-token-as-unauthenticated', async (t) => {
  const w = await world(t);
  nodeToken(w.kube, 'tok-a', 'node-a');
  const forged = await t.throwsAsync(w.client('tok-a-but-forged').fetch(parseSpiffeId(CART)), { instanceOf: CaClientError });
  t.is(forged!.grpcCode, status.UNAUTHENTICATED);
  t.regex(forged!.message, /bearer token was rejected by the Kubernetes API server for audience mesh-ca: invalid bearer token/);
  const csr = await createCsr(await generateKeyPair(), CART);
  const none = await rawCreateCertificate(w.ca.port, w.ca.authority.trustBundle, { csr, validity_duration: 0 });
  t.is(none.err?.code, status.UNAUTHENTICATED);
  t.regex(none.err?.details ?? '', /no bearer token/);
});

test('ca-refuses-a-workload-asking-for-an-identity-not-its-own', async (t) => {
  const w = await world(t);
  w.kube.tokens.set('tok-app', { username: 'system:serviceaccount:shop:cart', extra: { 'authentication.kubernetes.io/node-name': ['node-a'] }, audiences: ['mesh-ca'] });
  const e = await t.throwsAsync(w.client('tok-app').fetch(parseSpiffeId(`spiffe://${TD}/ns/shop/sa/pay`)), { instanceOf: CaClientError });
  t.is(e!.grpcCode, status.PERMISSION_DENIED);
  t.regex(e!.message, /caller system:serviceaccount:shop:cart is not a trusted node service account \(trusted: system:serviceaccount:mesh-system:mesh-node\).*may ask only for its own identity/);
});

test('ca-issues-a-workload-its-own-identity-only-with-a-token-bound-to-its-live-pod', async (t) => {
  // A waypoint holds its own identity, as Istio's proxies do: no node credential involved.
  const w = await world(t);
  const pod = w.kube.addPod({ namespace: 'shop', name: 'cart-2', serviceAccountName: 'cart', nodeName: 'node-a' });
  const bound = { 'authentication.kubernetes.io/node-name': ['node-a'], 'authentication.kubernetes.io/pod-name': [pod.name], 'authentication.kubernetes.io/pod-uid': [pod.uid] };
  w.kube.tokens.set('tok-bound', { username: 'system:serviceaccount:shop:cart', extra: bound, audiences: ['mesh-ca'] });
  const cert = await w.client('tok-bound').fetch(parseSpiffeId(CART));
  t.is(formatSpiffeId(cert.identity), CART);
  t.notRegex(cert.leaf.subject ?? '', /mesh:node/);
  // The node name alone does not prove a live pod.
  w.kube.tokens.set('tok-node-only', { username: 'system:serviceaccount:shop:cart', extra: { 'authentication.kubernetes.io/node-name': ['node-a'] }, audiences: ['mesh-ca'] });
  const e = await t.throwsAsync(w.client('tok-node-only').fetch(parseSpiffeId(CART)), { instanceOf: CaClientError });
  t.is(e!.grpcCode, status.PERMISSION_DENIED);
  t.regex(e!.message, /not bound to a pod/);
  // A token of a pod that is gone is stale.
  w.kube.tokens.set('tok-stale', { username: 'system:serviceaccount:shop:cart', extra: { ...bound, 'authentication.kubernetes.io/pod-name': ['cart-gone'] }, audiences: ['mesh-ca'] });
  const stale = await t.throwsAsync(w.client('tok-stale').fetch(parseSpiffeId(CART)), { instanceOf: CaClientError });
  t.regex(stale!.message, /no longer exists/);
});

test('ca-finds-the-callers-node-through-its-pod-when-the-token-has-no-node-name', async (t) => {
  const w = await world(t);
  const agent = w.kube.addPod({ namespace: 'mesh-system', name: 'mesh-node-b', serviceAccountName: 'mesh-node', nodeName: 'node-b' });
  const extra = { 'authentication.kubernetes.io/pod-name': [agent.name], 'authentication.kubernetes.io/pod-uid': [agent.uid] };
  w.kube.tokens.set('tok-b', { username: NODE_SA, extra, audiences: ['mesh-ca'] });
  const cert = await w.client('tok-b').fetch(parseSpiffeId(PAY));
  t.deepEqual(cert.leaf.uris, [PAY]);
  await t.throwsAsync(w.client('tok-b').fetch(parseSpiffeId(CART)), { message: /node node-b may not obtain identity .*\/sa\/cart/ });
  // A token of a pod that was replaced (same name, new uid) is stale.
  w.kube.tokens.set('tok-stale', { username: NODE_SA, extra: { ...extra, 'authentication.kubernetes.io/pod-uid': ['old-uid'] }, audiences: ['mesh-ca'] });
  const stale = await t.throwsAsync(w.client('tok-stale').fetch(parseSpiffeId(PAY)), { instanceOf: CaClientError });
  t.is(stale!.grpcCode, status.PERMISSION_DENIED);
  t.regex(stale!.message, /pod mesh-system\/mesh-node-b no longer exists/);
  // A legacy (not pod-bound) token gives no node at all.
  w.kube.tokens.set('tok-legacy', { username: NODE_SA, extra: {}, audiences: ['mesh-ca'] });
  await t.throwsAsync(w.client('tok-legacy').fetch(parseSpiffeId(PAY)), { message: /not bound to a pod.*projected service-account token/ });
});

test('ca-refuses-malformed-requests-as-invalid-argument-naming-the-problem', async (t) => {
  const w = await world(t);
  const tok = nodeToken(w.kube, 'tok-a', 'node-a');
  const keys = await generateKeyPair();
  const call = (csr: string, metadata?: Record<string, string>) =>
    rawCreateCertificate(w.ca.port, w.ca.authority.trustBundle, { csr, validity_duration: 0, metadata: metadata ? stringStruct(metadata) : null }, tok);
  const twoSans = (
    await x509.Pkcs10CertificateRequestGenerator.create({
      keys: { privateKey: keys.privateKey, publicKey: keys.publicKey },
      signingAlgorithm: keys.algorithm,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: CART }, { type: 'dns', value: 'cart.shop.svc' }])],
    })
  ).toString('pem');
  const noSan = (await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=cart', keys: { privateKey: keys.privateKey, publicKey: keys.publicKey }, signingAlgorithm: keys.algorithm })).toString('pem');
  const cases: [string, Promise<Awaited<ReturnType<typeof call>>>, RegExp][] = [
    ['garbage CSR', call('not a csr'), /CSR is not usable: the CSR is not a PEM "CERTIFICATE REQUEST" block/],
    ['truncated CSR', call('-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----'), /cannot be parsed as PKCS#10/],
    ['SAN differs from the identity asked for', call(await createCsr(keys, CART), { ImpersonatedIdentity: PAY }), /URI SAN spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart differs from the requested identity spiffe:\/\/cluster\.local\/ns\/shop\/sa\/pay/],
    ['wrong trust domain', call(await createCsr(keys, 'spiffe://evil.example/ns/shop/sa/cart')), /trust domain "evil\.example", but only "cluster\.local" is accepted/],
    ['not a SPIFFE URI', call(await createCsr(keys, 'https://cart.shop')), /URI SAN is not acceptable: .*scheme must be "spiffe:\/\/"/],
    ['two SANs', call(twoSans), /exactly one SAN.*it has 2 \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart, cart\.shop\.svc\)/],
    ['no SAN', call(noSan), /exactly one SAN.*it has 0 \(none\)/],
  ];
  for (const [what, p, why] of cases) {
    const r = await p;
    t.is(r.err?.code, status.INVALID_ARGUMENT, what);
    t.regex(r.err?.details ?? '', why, what);
  }
  // Negative validity.
  const neg = await rawCreateCertificate(w.ca.port, w.ca.authority.trustBundle, { csr: await createCsr(keys, CART), validity_duration: -5 }, tok);
  t.is(neg.err?.code, status.INVALID_ARGUMENT);
  // And the well-formed twin of those requests works on the raw path, metadata and all.
  const ok = await call(await createCsr(keys, CART), { ImpersonatedIdentity: CART });
  t.is(ok.err, null);
  t.is(ok.res?.cert_chain.length, 2, '[leaf, roots]');
});

test('ca-keeps-its-self-signed-root-in-a-secret-across-restarts', async (t) => {
  const kube = new FakeKube();
  kube.addNamespace('mesh-system');
  const opts = { trustDomain: TD, namespace: 'mesh-system', pluggedSecret: 'cacerts', selfSignedSecret: 'mesh-ca', selfSignedTtlMs: 86_400_000 };
  const [a, b] = await Promise.all([loadCaMaterial(kube, opts), loadCaMaterial(kube, opts)]);
  t.is(a.signingCert, b.signingCert, 'two replicas racing end up with one root');
  const secret = kube.secrets.get('mesh-system/mesh-ca')!;
  t.deepEqual(Object.keys(secret).sort(), ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem']);
  const again = await loadCaMaterial(kube, opts);
  t.is(again.signingCert, a.signingCert);
  t.is(again.source, 'self-signed');
  t.true(parseCertificate(a.signingCert).isCA);
  t.regex(parseCertificate(a.signingCert).subject, /O=cluster\.local/);
});

test('ca-publishes-the-trust-bundle-to-every-namespace-including-new-ones', async (t) => {
  const w = await world(t);
  const expected = w.ca.authority.trustBundle.join('');
  for (const ns of ['mesh-system', 'shop', 'default']) t.is(w.kube.configMaps.get(`${ns}/${ROOT_CONFIGMAP}`)?.data['root-cert.pem'], expected, ns);
  w.kube.addNamespace('late');
  await new Promise((r) => setTimeout(r, 20));
  t.is(w.kube.configMaps.get(`late/${ROOT_CONFIGMAP}`)?.data['root-cert.pem'], expected);
  // A rotation adds a root: every copy is rewritten.
  const next = await createSelfSignedRoot(TD, 86_400_000);
  await w.ca.publisher.update(mergeBundles(w.ca.authority.trustBundle, [next.cert]));
  t.is(splitPemBundle(w.kube.configMaps.get(`shop/${ROOT_CONFIGMAP}`)!.data['root-cert.pem']!).length, 2);
});

test('ca-uses-a-plugged-in-intermediate-and-hands-out-a-bundle-with-both-roots', async (t) => {
  // The user's PKI: an offline root, an intermediate for this cluster, and the previous root
  // still trusted during a rotation — Istio's cacerts layout.
  const oldRoot = await createSelfSignedRoot('corp', 86_400_000 * 10);
  const root = await createSelfSignedRoot('corp', 86_400_000 * 10);
  const interKeys = await generateKeyPair();
  const inter = await x509.X509CertificateGenerator.create({
    serialNumber: '1234',
    subject: 'O=corp, CN=cluster-1 intermediate',
    issuer: new x509.X509Certificate(root.cert).subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000 * 5),
    publicKey: interKeys.publicKey,
    signingKey: root.key.privateKey,
    signingAlgorithm: root.key.algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(interKeys.publicKey),
    ],
  });
  const kube = new FakeKube();
  kube.addNamespace('mesh-system', 'shop');
  kube.addPod({ namespace: 'shop', name: 'cart-1', serviceAccountName: 'cart', nodeName: 'node-a' });
  kube.secrets.set('mesh-system/cacerts', {
    'ca-cert.pem': inter.toString('pem'),
    'ca-key.pem': interKeys.privateKeyPem,
    'root-cert.pem': root.cert + oldRoot.cert,
    'cert-chain.pem': inter.toString('pem') + root.cert,
  });
  const ca = await startCa(kube, { trustDomain: TD, host: '127.0.0.1', port: 0 });
  const client = new CertificateClient({ address: `127.0.0.1:${ca.port}`, caRoots: ca.authority.trustBundle, token: () => nodeToken(kube, 'tok', 'node-a') });
  t.teardown(async () => {
    client.close();
    await ca.close();
  });
  t.is(ca.authority.material.source, 'plugged');
  t.false(kube.secrets.has('mesh-system/mesh-ca'), 'no self-signed root is made');
  const cert = await client.fetch(parseSpiffeId(CART));
  t.is(cert.certChain.length, 2, 'leaf + intermediate');
  t.is(cert.roots.length, 2, 'both roots handed out');
  t.is(fingerprintOf(verifyChain(cert.certChain[0]!, cert.certChain.slice(1), [root.cert])), fingerprintOf(root.cert), 'anchored at the current root');
  t.is(splitPemBundle(kube.configMaps.get(`shop/${ROOT_CONFIGMAP}`)!.data['root-cert.pem']!).length, 2);
});

test('ca-refuses-to-start-with-a-broken-plugged-in-secret', async (t) => {
  const kube = new FakeKube();
  const a = await createSelfSignedRoot(TD, 86_400_000);
  const b = await createSelfSignedRoot(TD, 86_400_000);
  const opts = { trustDomain: TD, namespace: 'mesh-system', pluggedSecret: 'cacerts', selfSignedSecret: 'mesh-ca', selfSignedTtlMs: 1 };
  kube.secrets.set('mesh-system/cacerts', { 'ca-cert.pem': a.cert, 'ca-key.pem': b.key.privateKeyPem });
  await t.throwsAsync(loadCaMaterial(kube, opts), { instanceOf: CaError, message: /mesh-system\/cacerts ca-key\.pem does not belong to ca-cert\.pem/ });
  kube.secrets.set('mesh-system/cacerts', { 'ca-cert.pem': a.cert });
  await t.throwsAsync(loadCaMaterial(kube, opts), { message: /has no "ca-key\.pem"/ });
  kube.secrets.set('mesh-system/cacerts', { 'ca-cert.pem': a.cert, 'ca-key.pem': a.key.privateKeyPem, 'root-cert.pem': b.cert });
  await t.throwsAsync(loadCaMaterial(kube, opts), { message: /ca-cert\.pem does not chain to any certificate in root-cert\.pem/ });
});

test('ca-requires-the-mesh-ca-token-audience', async (t) => {
  const w = await world(t);
  const tok = nodeToken(w.kube, 'tok-api', 'node-a', ['https://kubernetes.default.svc.cluster.local']);
  const e = await t.throwsAsync(w.client(tok).fetch(parseSpiffeId(CART)), { instanceOf: CaClientError });
  t.is(e!.grpcCode, status.UNAUTHENTICATED);
  t.regex(e!.message, /for audience mesh-ca: token audiences .*kubernetes\.default.* are invalid/);
  t.deepEqual(w.kube.reviews.at(-1)?.audiences, ['mesh-ca'], 'the TokenReview asks for the CA\'s audience');
  // An authenticator that ignores audiences confirms none: refused all the same.
  w.kube.ignoreAudiences = true;
  const blind = await t.throwsAsync(w.client(nodeToken(w.kube, 'tok-any', 'node-a')).fetch(parseSpiffeId(CART)), { instanceOf: CaClientError });
  t.regex(blind!.message, /not valid for audience mesh-ca \(the API server confirmed \[\]\)/);
});

test('ca-binds-a-node-identity-to-the-callers-node-and-no-other-system-identity', async (t) => {
  const w = await world(t);
  // The node's own identity: bound to node-a in the subject, whatever the request says.
  const own = await w.client(nodeToken(w.kube, 'tok-a', 'node-a')).fetch(parseSpiffeId(`spiffe://${TD}/ns/mesh-system/sa/mesh-node`));
  const x = new X509Certificate(own.certChain[0]!);
  t.is(x.subject.split('\n').sort().join(','), 'CN=mesh:node:node-a,O=mesh:nodes');
  t.is(nodeOfCertificate({ subject: Object.fromEntries(x.subject.split('\n').map((kv) => kv.split('='))) }), 'node-a');
  const other = await w.client(nodeToken(w.kube, 'tok-b', 'node-b')).fetch(parseSpiffeId(`spiffe://${TD}/ns/mesh-system/sa/mesh-node`));
  t.regex(new X509Certificate(other.certChain[0]!).subject, /CN=mesh:node:node-b/);
  // A workload's certificate carries no node.
  const cart = await w.client('tok-a').fetch(parseSpiffeId(CART));
  t.falsy(new X509Certificate(cart.certChain[0]!).subject);
  // The controller's identity, even with a controller pod on node-a: refused.
  w.kube.addPod({ namespace: 'mesh-system', name: 'mesh-controller-1', serviceAccountName: 'mesh-controller', nodeName: 'node-a' });
  const e = await t.throwsAsync(w.client('tok-a').fetch(parseSpiffeId(`spiffe://${TD}/ns/mesh-system/sa/mesh-controller`)), { instanceOf: CaClientError });
  t.is(e!.grpcCode, status.PERMISSION_DENIED);
  t.regex(e!.message, /in namespace mesh-system a node may obtain only its own node identity \(mesh-system\/mesh-node\)/);
});

type KeyAlg = webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams;

test('ca-signs-only-ec-p256-p384-or-rsa-2048-keys', async (t) => {
  const w = await world(t);
  const tok = nodeToken(w.kube, 'tok-a', 'node-a');
  const csrWith = async (algorithm: KeyAlg) => {
    const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const signingAlgorithm = algorithm.name === 'ECDSA' ? { name: 'ECDSA', hash: 'SHA-256' } : algorithm;
    return (await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm, extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: CART }])] })).toString('pem');
  };
  const rsa = (bits: number): KeyAlg => ({ name: 'RSASSA-PKCS1-v1_5', modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' });
  const cases: [string, KeyAlg, RegExp | null][] = [
    ['RSA 1024', rsa(1024), /an RSA key of 1024 bits; the CA signs only EC P-256 or P-384 keys, or RSA keys of at least 2048 bits/],
    ['EC P-521', { name: 'ECDSA', namedCurve: 'P-521' }, /an EC key on curve secp521r1/],
    ['EC P-384', { name: 'ECDSA', namedCurve: 'P-384' }, null],
    ['RSA 2048', rsa(2048), null],
  ];
  for (const [what, alg, refused] of cases) {
    const r = await rawCreateCertificate(w.ca.port, w.ca.authority.trustBundle, { csr: await csrWith(alg), validity_duration: 0 }, tok);
    if (refused) {
      t.is(r.err?.code, status.INVALID_ARGUMENT, what);
      t.regex(r.err?.details ?? '', refused, what);
    } else t.is(r.err, null, what);
  }
});

import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import * as tls from 'node:tls';
import test from 'ava';
import type { WorkloadCertificate } from '../../src/identity/index.ts';
import {
  createCsr,
  generateKeyPair,
  importPrivateKey,
  joinPem,
  keyPairFingerprint,
  mergeBundles,
  mtlsClientOptions,
  mtlsServerOptions,
  parseCertificate,
  type PeerPolicy,
  splitPemBundle,
  TlsError,
  verifyChain,
  verifyPeer,
} from '../../src/tls/index.ts';
import { parseCsr, x509 } from '../../src/tls/issuer.ts';
import { memoryCa, mint } from '../helpers/ca.ts';

const CART = 'spiffe://cluster.local/ns/shop/sa/cart';
const PAY = 'spiffe://cluster.local/ns/shop/sa/pay';

test('a CSR carries exactly the URI SAN and the key it was made with', async (t) => {
  const keys = await generateKeyPair();
  t.regex(keys.privateKeyPem, /^-----BEGIN PRIVATE KEY-----/);
  const csr = await parseCsr(await createCsr(keys, CART));
  t.deepEqual(csr.uris, [CART]);
  t.is(csr.sanCount, 1);
  t.is(csr.publicKeyFingerprint, await keyPairFingerprint(keys));
});

test('a CSR made without the CA library reads back in it for P-384 and RSA keys too, SAN critical', async (t) => {
  // createCsr writes DER with asn1js; parseCsr reads it with @peculiar/x509: two implementations.
  const keys = [
    await generateKeyPair(),
    await importPrivateKey(generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
    await importPrivateKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
  ];
  for (const k of keys) {
    const pem = await createCsr(k, PAY);
    const csr = await parseCsr(pem);
    t.deepEqual([csr.uris, csr.sanCount, csr.subject], [[PAY], 1, ''], k.algorithm.name);
    t.is(csr.publicKeyFingerprint, await keyPairFingerprint(k));
    const ext = new x509.Pkcs10CertificateRequest(pem).extensions.find((e) => e.type === '2.5.29.17');
    t.true(ext?.critical, 'the SAN is critical: the subject is empty');
  }
});

test('a CSR that is not PEM, not PKCS#10 or badly signed is refused', async (t) => {
  await t.throwsAsync(parseCsr('hello'), { instanceOf: TlsError, message: /not a PEM "CERTIFICATE REQUEST"/ });
  await t.throwsAsync(parseCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'), { message: /cannot be parsed/ });
  // Flip a bit in the last byte of the signature (the CSR's last byte): DER stays valid, the
  // signature no longer matches — someone edited the SAN after signing, say.
  const der = Buffer.from(new x509.Pkcs10CertificateRequest(await createCsr(await generateKeyPair(), CART)).rawData);
  der[der.length - 1] = der[der.length - 1]! ^ 0x01;
  await t.throwsAsync(parseCsr(x509.PemConverter.encode(der, 'CERTIFICATE REQUEST')), { message: /does not verify/ });
});

test('certificate helpers read SANs, validity and serial; bundles split, merge and de-duplicate', async (t) => {
  const ca = await memoryCa();
  const c = await mint(ca, CART, 600_000);
  const info = parseCertificate(c.certChain[0]!);
  t.deepEqual(info.uris, [CART]);
  t.deepEqual(info.dnsNames, []);
  t.false(info.isCA);
  t.regex(info.serial, /^[0-9a-f]+$/);
  t.true(Math.abs(info.notAfter.getTime() - Date.now() - 600_000) < 5000);
  const root = ca.trustBundle[0]!;
  const other = (await memoryCa()).trustBundle[0]!;
  const bundle = `junk before\n${root}\n${other}${root}`;
  t.is(splitPemBundle(bundle).length, 3);
  t.is(mergeBundles(bundle).length, 2);
  t.is(mergeBundles([root], [other, root]).length, 2);
  t.throws(() => splitPemBundle('no pem here'), { message: /no "-----BEGIN CERTIFICATE-----"/ });
  t.is(verifyChain(c.certChain[0]!, [], [other, root]), splitPemBundle(root)[0]!);
  t.throws(() => verifyChain(c.certChain[0]!, [], [other]), { message: /trust bundle current/ });
});

interface Endpoint {
  port: number;
  accepted: string[];
  refused: string[];
  close(): void;
}

/** A TLS 1.3 echo server that admits clients by `policy`. */
async function server(creds: WorkloadCertificate, policy: PeerPolicy, roots?: readonly string[]): Promise<Endpoint> {
  const accepted: string[] = [];
  const refused: string[] = [];
  const srv = tls.createServer(mtlsServerOptions({ key: creds.key, certChain: creds.certChain, roots: roots ?? creds.roots }), (s) => {
    try {
      const id = verifyPeer(s, policy);
      accepted.push(`spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`);
      s.pipe(s);
    } catch (e) {
      refused.push((e as Error).message);
      s.destroy();
    }
  });
  srv.on('tlsClientError', (e) => refused.push(e.message));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return { port: (srv.address() as AddressInfo).port, accepted, refused, close: () => srv.close() };
}

/** Connects, sends a line and resolves with the echo and the negotiated protocol. */
async function dial(port: number, creds: WorkloadCertificate, expect: PeerPolicy, roots?: readonly string[]): Promise<{ echo: string; protocol: string | null }> {
  const s = tls.connect({ host: '127.0.0.1', port, ...mtlsClientOptions({ key: creds.key, certChain: creds.certChain, roots: roots ?? creds.roots }, expect) });
  try {
    await once(s, 'secureConnect');
    const protocol = s.getProtocol();
    s.write('ping');
    const [data] = (await Promise.race([once(s, 'data'), once(s, 'close').then(() => [Buffer.from('')])])) as [Buffer];
    return { echo: data.toString(), protocol };
  } finally {
    s.destroy();
  }
}

test('mtls-accepts-the-expected-identity-over-tls13', async (t) => {
  const ca = await memoryCa();
  const srv = await server(await mint(ca, PAY), { trustDomains: ['cluster.local'] });
  t.teardown(() => srv.close());
  const r = await dial(srv.port, await mint(ca, CART), { identities: [PAY] });
  t.is(r.protocol, 'TLSv1.3');
  t.is(r.echo, 'ping');
  t.deepEqual(srv.accepted, [CART]);
});

test('mtls-client-rejects-a-server-with-another-identity', async (t) => {
  const ca = await memoryCa();
  const srv = await server(await mint(ca, PAY), { trustDomains: ['cluster.local'] });
  t.teardown(() => srv.close());
  const e = await t.throwsAsync(dial(srv.port, await mint(ca, CART), { identities: ['spiffe://cluster.local/ns/shop/sa/reviews'] }));
  t.is((e as TlsError).code, 'MESH_ERR_PEER_IDENTITY');
  t.regex(e!.message, /server identity spiffe:\/\/cluster\.local\/ns\/shop\/sa\/pay is not one of the expected identities \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/reviews\)/);
});

test('mtls-server-rejects-a-client-from-another-trust-domain', async (t) => {
  // One root signs both trust domains, so only the identity check can tell them apart.
  const ca = await memoryCa();
  const srv = await server(await mint(ca, PAY), { trustDomains: ['cluster.local'] });
  t.teardown(() => srv.close());
  const r = await dial(srv.port, await mint(ca, 'spiffe://evil.example/ns/shop/sa/cart'), { identities: [PAY] });
  t.is(r.echo, '', 'the server closed without echoing');
  t.deepEqual(srv.accepted, []);
  t.regex(srv.refused.join('\n'), /client identity spiffe:\/\/evil\.example\/ns\/shop\/sa\/cart is in trust domain "evil\.example", expected "cluster\.local"/);
});

test('mtls-rejects-a-peer-whose-root-is-not-in-the-bundle', async (t) => {
  const ca = await memoryCa();
  const stranger = await memoryCa();
  const srv = await server(await mint(ca, PAY), { trustDomains: ['cluster.local'] });
  t.teardown(() => srv.close());
  // The client's chain comes from an unknown root: the server's handshake fails.
  const r = await dial(srv.port, await mint(stranger, CART), { identities: [PAY] }, ca.trustBundle).catch((e: Error) => ({ echo: '', protocol: e.message }));
  t.is(r.echo, '');
  t.deepEqual(srv.accepted, []);
  // And a client trusting only the stranger's root refuses our server.
  await t.throwsAsync(dial(srv.port, await mint(stranger, CART), { identities: [PAY] }), { message: /self-signed|unable to (verify|get)/i });
});

test('rotation: with two roots in the bundle, peers signed by either root are accepted both ways', async (t) => {
  const oldCa = await memoryCa();
  const newCa = await memoryCa();
  const bundle = mergeBundles(oldCa.trustBundle, newCa.trustBundle);
  const srv = await server(await mint(oldCa, PAY, 3_600_000, bundle), { trustDomains: ['cluster.local'] });
  t.teardown(() => srv.close());
  const r = await dial(srv.port, await mint(newCa, CART, 3_600_000, bundle), { identities: [PAY] });
  t.is(r.echo, 'ping');
  const srv2 = await server(await mint(newCa, PAY, 3_600_000, bundle), { trustDomains: ['cluster.local'] });
  t.teardown(() => srv2.close());
  t.is((await dial(srv2.port, await mint(oldCa, CART, 3_600_000, bundle), { identities: [PAY] })).echo, 'ping');
  t.deepEqual([...srv.accepted, ...srv2.accepted], [CART, CART]);
  t.is(joinPem(bundle).match(/BEGIN CERTIFICATE/g)?.length, 2);
});

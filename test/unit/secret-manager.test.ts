import { once } from 'node:events';
import test from 'ava';
import { startCa } from '../../src/controller/ca/index.ts';
import {
  CaClientError,
  CertificateClient,
  parseSpiffeId,
  SecretManager,
  type CertificateProvider,
  type SpiffeId,
  type WorkloadCertificate,
} from '../../src/identity/index.ts';
import { FakeKube, memoryCa, mint, nodeToken } from '../helpers/ca.ts';

const CART = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/cart');
const URI = 'spiffe://cluster.local/ns/shop/sa/cart';

/** Rejects if `p` takes longer than `ms`, so a broken timer fails the test instead of hanging it. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

/** A provider that answers from a script: a certificate maker or an error per call. */
function scripted(steps: (() => Promise<WorkloadCertificate>)[]): CertificateProvider & { calls: number[] } {
  const calls: number[] = [];
  return {
    calls,
    async fetch(_id: SpiffeId) {
      calls.push(performance.now());
      const step = steps[Math.min(calls.length - 1, steps.length - 1)]!;
      return step();
    },
  };
}
const fail = () => Promise.reject(new CaClientError('MESH_ERR_CA_REQUEST', 'CA unreachable', 14));

test('secret-manager-refreshes-at-half-life-through-the-real-ca', async (t) => {
  const kube = new FakeKube();
  kube.addNamespace('mesh-system', 'shop');
  kube.addPod({ namespace: 'shop', name: 'cart-1', serviceAccountName: 'cart', nodeName: 'node-a' });
  const ca = await startCa(kube, { trustDomain: 'cluster.local', host: '127.0.0.1', port: 0 });
  const client = new CertificateClient({ address: `127.0.0.1:${ca.port}`, caRoots: ca.authority.trustBundle, token: () => nodeToken(kube, 'tok', 'node-a'), validitySeconds: 2 });
  const mgr = new SecretManager({ provider: client });
  t.teardown(async () => {
    mgr.close();
    client.close();
    await ca.close();
  });
  const bundles: (readonly string[])[] = [];
  mgr.on('trustBundle', (r) => bundles.push(r));
  const first = await mgr.fetchCertificate(CART);
  const [again] = await Promise.all([mgr.fetchCertificate(CART), mgr.fetchCertificate(CART)]);
  t.is(again, first, 'a valid certificate is served from the cache');
  const t0 = first.receivedAt.getTime();
  const [, second] = (await within(once(mgr, 'certificate'), 3000, 'refresh')) as [SpiffeId, WorkloadCertificate];
  const after = second.receivedAt.getTime() - t0;
  // notAfter is rounded up to a whole second, so half of the remaining life is 1–1.5 s.
  t.true(after >= 900 && after < 1800, `refreshed ${after} ms after issue of a 2 s certificate`);
  t.not(second.leaf.serial, first.leaf.serial);
  t.is(mgr.cached(CART), second);
  t.is(bundles.length, 1, 'the unchanged trust bundle is announced once');
  t.like(mgr.status()[0], { identity: URI, state: 'ready', serial: second.leaf.serial, failures: 0 });
});

test('secret-manager-retries-with-exponential-backoff-up-to-the-cap', async (t) => {
  const ca = await memoryCa();
  const provider = scripted([fail, fail, fail, fail, () => mint(ca, URI)]);
  const mgr = new SecretManager({ provider, initialBackoffMs: 40, maxBackoffMs: 100 });
  t.teardown(() => mgr.close());
  const errors: string[] = [];
  mgr.on('failure', (_id, e) => errors.push(e.message));
  await t.throwsAsync(mgr.fetchCertificate(CART), { message: /CA unreachable/ });
  // While backing off, callers get the last failure at once instead of a new request each.
  await t.throwsAsync(mgr.fetchCertificate(CART), { message: /CA unreachable/ });
  t.is(provider.calls.length, 1);
  const [, cert] = (await within(once(mgr, 'certificate'), 2000, 'recovery')) as [SpiffeId, WorkloadCertificate];
  t.deepEqual(cert.leaf.uris, [URI]);
  const gaps = provider.calls.slice(1).map((c, i) => c - provider.calls[i]!);
  const expected = [40, 80, 100, 100];
  t.is(gaps.length, 4);
  gaps.forEach((g, i) => t.true(g >= expected[i]! * 0.85 && g < expected[i]! * 1.1 + 60, `retry ${i + 1} after ${g.toFixed(0)} ms, expected ~${expected[i]}`));
  t.is(errors.length, 4);
  t.is(await mgr.fetchCertificate(CART), cert);
});

test('secret-manager-keeps-the-old-certificate-until-it-expires-when-refresh-fails', async (t) => {
  const ca = await memoryCa();
  const provider = scripted([() => mint(ca, URI, 1200), fail]);
  const mgr = new SecretManager({ provider, initialBackoffMs: 100, maxBackoffMs: 150 });
  t.teardown(() => mgr.close());
  const cert = await mgr.fetchCertificate(CART);
  await within(once(mgr, 'failure'), 1500, 'the refresh at half-life fails');
  t.is(mgr.cached(CART), cert, 'still served after the failed refresh');
  t.is(await mgr.fetchCertificate(CART), cert);
  t.like(mgr.status()[0], { state: 'ready', serial: cert.leaf.serial });
  t.true(mgr.status()[0]!.failures >= 1);
  await within(once(mgr, 'expired'), 1500, 'expiry');
  t.true(Date.now() >= cert.leaf.notAfter.getTime());
  t.is(mgr.cached(CART), undefined);
  await t.throwsAsync(mgr.fetchCertificate(CART), { message: /CA unreachable/ });
});

test('secret-manager-announces-a-changed-trust-bundle', async (t) => {
  const ca = await memoryCa();
  const next = await memoryCa();
  const both = [...ca.trustBundle, ...next.trustBundle];
  const provider = scripted([() => mint(ca, URI, 1000), () => mint(ca, URI, 60_000, both)]);
  const mgr = new SecretManager({ provider });
  t.teardown(() => mgr.close());
  const seen: number[] = [];
  mgr.on('trustBundle', (roots) => seen.push(roots.length));
  await mgr.fetchCertificate(CART);
  await within(once(mgr, 'certificate'), 2000, 'refresh');
  t.deepEqual(seen, [1, 2]);
  t.is(mgr.trustBundle.length, 2);
});

test('secret-manager-forget-stops-refreshing', async (t) => {
  const ca = await memoryCa();
  const provider = scripted([() => mint(ca, URI, 400)]);
  const mgr = new SecretManager({ provider });
  t.teardown(() => mgr.close());
  await mgr.fetchCertificate(CART);
  mgr.forget(CART);
  await new Promise((r) => setTimeout(r, 500));
  t.is(provider.calls.length, 1);
  t.deepEqual(mgr.status(), []);
});

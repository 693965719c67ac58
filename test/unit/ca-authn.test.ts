// The CA's caches: token authentication (TokenReviewAuthenticator: one review for requests that
// arrive together, none again within the TTL or past the token's own expiry, refusals never
// kept) and the node check's pod cache (NodeAuthorizer.useCache).
import test from 'ava';
import { NodeAuthorizer, type PodInfo, TokenReviewAuthenticator } from '../../src/controller/ca/index.ts';
import { parseSpiffeId } from '../../src/identity/index.ts';
import { FakeKube, NODE_SA } from '../helpers/ca.ts';

const jwt = (exp: number) => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ exp })).toString('base64url')}.sig`;

function fixture(cacheTtlMs?: number) {
  const kube = new FakeKube();
  const authn = new TokenReviewAuthenticator(kube, { audiences: ['mesh-ca'], ...(cacheTtlMs !== undefined ? { cacheTtlMs } : {}) });
  return { kube, authn };
}

test('ca-authn-shares-one-review-between-concurrent-requests-and-keeps-an-accepted-token', async (t) => {
  const { kube, authn } = fixture();
  const tok = jwt(Math.floor(Date.now() / 1000) + 3600);
  kube.tokens.set(tok, { username: NODE_SA, extra: {}, audiences: ['mesh-ca'] });
  const [a, b] = await Promise.all([authn.authenticate(tok), authn.authenticate(tok)]);
  t.is(a.username, NODE_SA);
  t.is(b.username, NODE_SA);
  t.is(kube.reviews.length, 1, 'one review for two requests that arrived together');
  await authn.authenticate(tok);
  t.is(kube.reviews.length, 1, 'accepted within the TTL: not reviewed again');
});

test('ca-authn-never-keeps-a-refusal', async (t) => {
  const { kube, authn } = fixture();
  const tok = jwt(Math.floor(Date.now() / 1000) + 3600);
  await t.throwsAsync(authn.authenticate(tok));
  kube.tokens.set(tok, { username: NODE_SA, extra: {}, audiences: ['mesh-ca'] });
  t.is((await authn.authenticate(tok)).username, NODE_SA, 'a refused token is reviewed again');
  t.is(kube.reviews.length, 2);
});

test('ca-authn-reviews-again-after-the-ttl-or-the-tokens-expiry', async (t) => {
  const ttl = fixture(30);
  const tok = jwt(Math.floor(Date.now() / 1000) + 3600);
  ttl.kube.tokens.set(tok, { username: NODE_SA, extra: {}, audiences: ['mesh-ca'] });
  await ttl.authn.authenticate(tok);
  await new Promise((r) => setTimeout(r, 60));
  ttl.kube.tokens.delete(tok);
  await t.throwsAsync(ttl.authn.authenticate(tok), undefined, 'revoked, and past the TTL: refused');

  const exp = fixture();
  const expired = jwt(Math.floor(Date.now() / 1000) - 1);
  exp.kube.tokens.set(expired, { username: NODE_SA, extra: {}, audiences: ['mesh-ca'] });
  await exp.authn.authenticate(expired);
  await exp.authn.authenticate(expired);
  t.is(exp.kube.reviews.length, 2, 'a token past its exp claim is never taken from the cache');

  const off = fixture(0);
  off.kube.tokens.set(tok, { username: NODE_SA, extra: {}, audiences: ['mesh-ca'] });
  await off.authn.authenticate(tok);
  await off.authn.authenticate(tok);
  t.is(off.kube.reviews.length, 2, 'cacheTtlMs 0: every request reviewed');
});

test('ca-node-check-answers-from-the-pod-cache-and-asks-the-api-server-when-it-has-no-such-pod', async (t) => {
  const kube = new FakeKube();
  let listed = 0;
  const api = { getPod: kube.getPod.bind(kube), podsOnNode: (n: string) => (listed++, kube.podsOnNode(n)) };
  const authz = new NodeAuthorizer(api, [NODE_SA]);
  const cart = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/cart');
  const cached: PodInfo[] = [];
  authz.useCache((node) => cached.filter((p) => p.nodeName === node));
  // Not in the cache yet (created a moment ago), but the API server has it: allowed, after a list.
  kube.addPod({ namespace: 'shop', name: 'cart-1', serviceAccountName: 'cart', nodeName: 'node-a' });
  await authz.checkIdentityOnNode(cart, 'node-a');
  t.is(listed, 1);
  // In the cache: allowed without asking.
  cached.push(...kube.pods);
  await authz.checkIdentityOnNode(cart, 'node-a');
  t.is(listed, 1);
  // Another node: the cache has no such pod there, nor has the API server: refused.
  await t.throwsAsync(authz.checkIdentityOnNode(cart, 'node-b'), { message: /no running pod/ });
  t.is(listed, 2);
  // A finished pod in the cache does not count.
  cached.splice(0, cached.length, { ...kube.pods[0]!, phase: 'Succeeded' });
  kube.pods.length = 0;
  await t.throwsAsync(authz.checkIdentityOnNode(cart, 'node-a'), { message: /no running pod/ });
});

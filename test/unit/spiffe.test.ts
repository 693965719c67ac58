import test from 'ava';
import { checkTrustDomain, formatSpiffeId, IdentityError, isSpiffeId, parseSpiffeId, spiffeId } from '../../src/identity/index.ts';

test('a mesh identity parses into trust domain, namespace and service account and formats back', (t) => {
  const id = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/cart');
  t.deepEqual({ ...id }, { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'cart' });
  t.is(formatSpiffeId(id), 'spiffe://cluster.local/ns/shop/sa/cart');
  t.is(formatSpiffeId(spiffeId('td_1.example', 'a-b', 'sa.with.dots')), 'spiffe://td_1.example/ns/a-b/sa/sa.with.dots');
});

test('malformed identities are refused with the reason in the message', (t) => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['https://cluster.local/ns/a/sa/b', /scheme/],
    ['SPIFFE://cluster.local/ns/a/sa/b', /scheme/],
    ['spiffe://Cluster.local/ns/a/sa/b', /outside \[a-z0-9._-\]/],
    ['spiffe://cluster.local:8443/ns/a/sa/b', /port/],
    ['spiffe://cluster.local', /path is missing/],
    ['spiffe:///ns/a/sa/b', /trust domain is missing/],
    ['spiffe://cluster.local/ns/a/sa/b?x=1', /query or fragment/],
    ['spiffe://cluster.local/ns//sa/b', /empty segment/],
    ['spiffe://cluster.local/ns/a/sa/b/', /empty segment/],
    ['spiffe://cluster.local/ns/../sa/b', /"\." or "\.\."/],
    ['spiffe://cluster.local/ns/a/sa/b/extra', /exactly \/ns\//],
    ['spiffe://cluster.local/namespace/a/sa/b', /exactly \/ns\//],
    ['spiffe://cluster.local/ns/Shop/sa/b', /namespace "Shop"/],
    ['spiffe://cluster.local/ns/a/sa/-b', /service account "-b"/],
    [`spiffe://cluster.local/ns/a/sa/${'b'.repeat(2100)}`, /2048/],
  ];
  for (const [uri, why] of cases) {
    const e = t.throws(() => parseSpiffeId(uri), { instanceOf: IdentityError }, uri);
    t.is(e?.code, 'MESH_ERR_SPIFFE_ID', uri);
    t.regex(e?.message ?? '', why, uri);
    t.false(isSpiffeId(uri));
  }
});

test('trust-domain check accepts listed domains and names both sides when it refuses', (t) => {
  const id = parseSpiffeId('spiffe://other.local/ns/a/sa/b');
  t.notThrows(() => checkTrustDomain(id, ['cluster.local', 'other.local']));
  const e = t.throws(() => checkTrustDomain(id, 'cluster.local'), { instanceOf: IdentityError });
  t.is(e?.code, 'MESH_ERR_TRUST_DOMAIN');
  t.regex(e?.message ?? '', /"other\.local".*"cluster\.local"/);
  t.throws(() => spiffeId('', 'a', 'b'), { message: /trust domain is empty/ });
});

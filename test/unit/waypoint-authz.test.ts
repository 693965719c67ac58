import test from 'ava';
import { L7Authorizer, normalizePath, unsupportedL7Keys } from '../../src/waypoint/authz.ts';
import type { RequestInfo } from '../../src/waypoint/request.ts';
import type { L7Authorization, L7Condition, L7Operation, L7Rule, L7Source } from '../../src/xds/routes.ts';

const SVC = 'Service/shop/cart.shop.svc.cluster.local';
const GW = 'Gateway/shop/waypoint';

function req(extra: Partial<Omit<RequestInfo, 'source' | 'destination'>> & { source?: Partial<RequestInfo['source']>; destination?: Partial<RequestInfo['destination']> } = {}): RequestInfo {
  return {
    version: '1.1',
    protocol: 'http',
    method: 'GET',
    path: '/items?page=2',
    authority: 'cart.shop.svc.cluster.local:8080',
    ...extra,
    headers: { 'x-user': 'alice', ...extra.headers },
    source: { principal: 'cluster.local/ns/front/sa/web', namespace: 'front', ip: '10.244.2.9', ...extra.source },
    destination: { ip: '10.96.0.20', port: 8080, service: 'shop/cart.shop.svc.cluster.local', ...extra.destination },
  };
}

const from = (s: Partial<L7Source>): L7Source => ({ principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], ipBlocks: [], notIpBlocks: [], ...s });
const to = (o: Partial<L7Operation>): L7Operation => ({ hosts: [], notHosts: [], ports: [], notPorts: [], methods: [], notMethods: [], paths: [], notPaths: [], ...o });
const when = (key: string, values: string[], notValues: string[] = []): L7Condition => ({ key, values, notValues });
const rule = (r: Partial<L7Rule>): L7Rule => ({ from: [], to: [], when: [], ...r });

function policy(name: string, action: 'ALLOW' | 'DENY', rules: L7Rule[], extra: Partial<L7Authorization> = {}): L7Authorization {
  return { name, namespace: 'shop', targets: [SVC], action, rules, dryRun: false, ...extra };
}

/** Whether a single ALLOW policy with this rule lets the request through. */
function allows(r: L7Rule, request: RequestInfo = req()): boolean {
  return new L7Authorizer([policy('p', 'ALLOW', [r])]).decide(request, [SVC]).allowed;
}

test('no policy for the target: allowed, decided by nobody', (t) => {
  const a = new L7Authorizer([policy('other', 'ALLOW', [rule({})], { targets: ['Service/shop/other'] })]);
  t.deepEqual(a.decide(req(), [SVC]), { allowed: true, policy: '' });
  t.deepEqual(new L7Authorizer().decide(req(), [SVC]), { allowed: true, policy: '' });
});

test('allow-get-only: POST denied, GET allowed, naming the policy', (t) => {
  const a = new L7Authorizer([policy('get-only', 'ALLOW', [rule({ to: [to({ methods: ['GET'] })] })])]);
  t.deepEqual(a.decide(req(), [SVC]), { allowed: true, policy: 'shop/get-only' });
  t.deepEqual(a.decide(req({ method: 'POST' }), [SVC]), { allowed: false, policy: '' });
});

test('an ALLOW with no rules allows nothing; a DENY with no rules denies nothing', (t) => {
  t.false(new L7Authorizer([policy('a', 'ALLOW', [])]).decide(req(), [SVC]).allowed);
  t.deepEqual(new L7Authorizer([policy('d', 'DENY', [])]).decide(req(), [SVC]), { allowed: true, policy: '' });
  // An empty rule matches everything.
  t.true(allows(rule({})));
});

test('DENY is evaluated before ALLOW', (t) => {
  const a = new L7Authorizer([policy('allow-all', 'ALLOW', [rule({})]), policy('deny-admin', 'DENY', [rule({ to: [to({ paths: ['/admin/*'] })] })])]);
  t.deepEqual(a.decide(req({ path: '/admin/users' }), [SVC]), { allowed: false, policy: 'shop/deny-admin' });
  t.deepEqual(a.decide(req({ path: '/items' }), [SVC]), { allowed: true, policy: 'shop/allow-all' });
});

test('policies of every given target apply; a Gateway policy covers the whole waypoint', (t) => {
  const a = new L7Authorizer([policy('gw-deny-delete', 'DENY', [rule({ to: [to({ methods: ['DELETE'] })] })], { targets: [GW] }), policy('svc-allow', 'ALLOW', [rule({})])]);
  t.false(a.decide(req({ method: 'DELETE' }), [GW, SVC]).allowed);
  t.true(a.decide(req({ method: 'DELETE' }), [SVC]).allowed);
  t.true(a.decide(req(), [GW, SVC]).allowed);
});

test('an ALLOW on one target does not let requests of another through, and other targets stay open', (t) => {
  const a = new L7Authorizer([policy('only-get', 'ALLOW', [rule({ to: [to({ methods: ['GET'] })] })])]);
  t.true(a.decide(req({ method: 'POST' }), ['Service/shop/other']).allowed);
});

test('update replaces the set', (t) => {
  const a = new L7Authorizer([policy('deny-all', 'DENY', [rule({})])]);
  t.false(a.decide(req(), [SVC]).allowed);
  a.update([]);
  t.true(a.decide(req(), [SVC]).allowed);
});

test('from.principals and notPrincipals: exact, prefix, suffix, presence; no identity never matches', (t) => {
  t.true(allows(rule({ from: [from({ principals: ['cluster.local/ns/front/sa/web'] })] })));
  t.false(allows(rule({ from: [from({ principals: ['cluster.local/ns/front/sa/api'] })] })));
  t.true(allows(rule({ from: [from({ principals: ['cluster.local/ns/front/*'] })] })));
  t.true(allows(rule({ from: [from({ principals: ['*/sa/web'] })] })));
  t.true(allows(rule({ from: [from({ principals: ['*'] })] })));
  t.false(allows(rule({ from: [from({ principals: ['*'] })] }), req({ source: { principal: '' } })));
  t.false(allows(rule({ from: [from({ notPrincipals: ['*/sa/web'] })] })));
  t.true(allows(rule({ from: [from({ notPrincipals: ['*/sa/api'] })] })));
  t.true(allows(rule({ from: [from({ notPrincipals: ['*'] })] }), req({ source: { principal: '' } })));
});

test('from.namespaces and notNamespaces', (t) => {
  t.true(allows(rule({ from: [from({ namespaces: ['front'] })] })));
  t.false(allows(rule({ from: [from({ namespaces: ['shop'] })] })));
  t.true(allows(rule({ from: [from({ namespaces: ['fr*'] })] })));
  t.false(allows(rule({ from: [from({ notNamespaces: ['front'] })] })));
  t.true(allows(rule({ from: [from({ notNamespaces: ['shop', 'kube-*'] })] })));
});

test('from.ipBlocks and notIpBlocks: CIDRs and addresses, IPv4-mapped peers', (t) => {
  t.true(allows(rule({ from: [from({ ipBlocks: ['10.244.0.0/16'] })] })));
  t.true(allows(rule({ from: [from({ ipBlocks: ['10.244.2.9'] })] })));
  t.false(allows(rule({ from: [from({ ipBlocks: ['10.245.0.0/16'] })] })));
  t.true(allows(rule({ from: [from({ ipBlocks: ['10.0.0.0/8'] })] }), req({ source: { ip: '::ffff:10.1.2.3' } })));
  t.true(allows(rule({ from: [from({ ipBlocks: ['fd00::/8'] })] }), req({ source: { ip: 'fd00::5' } })));
  t.false(allows(rule({ from: [from({ notIpBlocks: ['10.244.2.0/24'] })] })));
  t.true(allows(rule({ from: [from({ notIpBlocks: ['192.168.0.0/16'] })] })));
});

test('a source matches only when every non-empty list holds; sources are OR-ed', (t) => {
  t.false(allows(rule({ from: [from({ namespaces: ['front'], principals: ['*/sa/api'] })] })));
  t.true(allows(rule({ from: [from({ namespaces: ['nope'] }), from({ principals: ['*/sa/web'] })] })));
});

test('to.hosts and notHosts: case-insensitive, without the port unless the pattern has one', (t) => {
  t.true(allows(rule({ to: [to({ hosts: ['CART.shop.svc.cluster.local'] })] })));
  t.true(allows(rule({ to: [to({ hosts: ['*.svc.cluster.local'] })] })));
  t.true(allows(rule({ to: [to({ hosts: ['cart.*'] })] })));
  t.true(allows(rule({ to: [to({ hosts: ['cart.shop.svc.cluster.local:8080'] })] })));
  t.false(allows(rule({ to: [to({ hosts: ['cart.shop.svc.cluster.local:9090'] })] })));
  t.false(allows(rule({ to: [to({ hosts: ['cart'] })] })));
  t.true(allows(rule({ to: [to({ hosts: ['cart'] })] }), req({ authority: 'Cart:80' })));
  t.false(allows(rule({ to: [to({ notHosts: ['*.cluster.local'] })] })));
  t.true(allows(rule({ to: [to({ notHosts: ['evil.example'] })] })));
  t.true(allows(rule({ to: [to({ hosts: ['[fd00::1]'] })] }), req({ authority: '[FD00::1]:8080' })));
});

test('to.ports and notPorts judge the destination port', (t) => {
  t.true(allows(rule({ to: [to({ ports: [8080] })] })));
  t.false(allows(rule({ to: [to({ ports: [9090] })] })));
  t.false(allows(rule({ to: [to({ notPorts: [8080] })] })));
  t.true(allows(rule({ to: [to({ notPorts: [9090] })] })));
});

test('to.methods and notMethods', (t) => {
  t.true(allows(rule({ to: [to({ methods: ['POST', 'GET'] })] })));
  t.false(allows(rule({ to: [to({ methods: ['POST'] })] })));
  t.false(allows(rule({ to: [to({ notMethods: ['GET'] })] })));
  t.true(allows(rule({ to: [to({ notMethods: ['DELETE'] })] })));
});

test('to.paths: exact, "/x/*" prefix, "*suffix", "*"; the query string is not part of the path', (t) => {
  t.true(allows(rule({ to: [to({ paths: ['/items'] })] })));
  t.false(allows(rule({ to: [to({ paths: ['/items/'] })] })));
  t.true(allows(rule({ to: [to({ paths: ['/api/*'] })] }), req({ path: '/api/v1/x' })));
  t.false(allows(rule({ to: [to({ paths: ['/api/*'] })] }), req({ path: '/apiv1' })));
  t.true(allows(rule({ to: [to({ paths: ['*.html'] })] }), req({ path: '/a/index.html?x=.json' })));
  t.false(allows(rule({ to: [to({ paths: ['*.json'] })] }), req({ path: '/a/index.html?x=.json' })));
  t.true(allows(rule({ to: [to({ paths: ['*'] })] })));
  t.false(allows(rule({ to: [to({ notPaths: ['/items'] })] })));
  t.true(allows(rule({ to: [to({ notPaths: ['/admin/*'] })] })));
});

test('deny-admin cannot be dodged with dot segments, doubled slashes, encoded letters or the absolute form', (t) => {
  const a = new L7Authorizer([policy('deny-admin', 'DENY', [rule({ to: [to({ paths: ['/admin', '/admin/*'] })] })])]);
  for (const path of ['/admin', '//admin', '/public/..//admin', '/public/../admin', '/./admin/x', '/%61dmin', '/%2e%2e/admin', 'http://cart/admin?x', '/admin#frag']) {
    t.false(a.decide(req({ path }), [SVC]).allowed, path);
  }
  t.true(a.decide(req({ path: '/administrator' }), [SVC]).allowed);
});

test('normalizePath follows RFC 3986 §5.2.4, merges slashes and keeps %2F encoded', (t) => {
  t.is(normalizePath('/a/b/../c/./d?q=1'), '/a/c/d');
  t.is(normalizePath('/a/b/..'), '/a/');
  t.is(normalizePath('/../..'), '/');
  t.is(normalizePath('/a%2fb'), '/a%2Fb');
  t.is(normalizePath('/a//b///c'), '/a/b/c');
  t.is(normalizePath('/%7Euser'), '/~user');
  t.is(normalizePath('http://h:80'), '/');
});

test('operations are OR-ed, their fields AND-ed', (t) => {
  t.false(allows(rule({ to: [to({ methods: ['GET'], paths: ['/admin'] })] })));
  t.true(allows(rule({ to: [to({ methods: ['POST'] }), to({ paths: ['/items'] })] })));
});

test('a rule needs some from, some to and every when', (t) => {
  t.false(allows(rule({ from: [from({ namespaces: ['front'] })], to: [to({ methods: ['POST'] })] })));
  t.true(allows(rule({ from: [from({ namespaces: ['front'] })], to: [to({ methods: ['GET'] })], when: [when('request.headers[x-user]', ['alice'])] })));
  t.false(allows(rule({ from: [from({ namespaces: ['front'] })], to: [to({ methods: ['GET'] })], when: [when('request.headers[x-user]', ['alice']), when('source.namespace', ['shop'])] })));
});

test('when request.headers[...]: values and notValues; names are case-insensitive; repeated values joined', (t) => {
  t.true(allows(rule({ when: [when('request.headers[X-User]', ['ali*'])] })));
  t.false(allows(rule({ when: [when('request.headers[x-user]', ['bob'])] })));
  t.false(allows(rule({ when: [when('request.headers[x-missing]', ['*'])] })));
  t.true(allows(rule({ when: [when('request.headers[x-user]', ['*'])] })));
  t.false(allows(rule({ when: [when('request.headers[x-user]', [], ['alice'])] })));
  t.true(allows(rule({ when: [when('request.headers[x-missing]', [], ['alice'])] })));
  t.true(allows(rule({ when: [when('request.headers[x-tag]', ['a,b'])] }), req({ headers: { 'x-tag': ['a', 'b'] } })));
});

test('when source.principal, source.namespace, source.ip, destination.ip, destination.port', (t) => {
  t.true(allows(rule({ when: [when('source.principal', ['cluster.local/ns/front/sa/web'])] })));
  t.false(allows(rule({ when: [when('source.principal', [], ['cluster.local/ns/front/*'])] })));
  t.true(allows(rule({ when: [when('source.namespace', ['front'])] })));
  t.false(allows(rule({ when: [when('source.namespace', [], ['front'])] })));
  t.true(allows(rule({ when: [when('source.ip', ['10.244.0.0/16'])] })));
  t.false(allows(rule({ when: [when('source.ip', [], ['10.244.2.9'])] })));
  t.true(allows(rule({ when: [when('destination.ip', ['10.96.0.0/12'])] })));
  t.true(allows(rule({ when: [when('destination.port', ['8080'])] })));
  t.false(allows(rule({ when: [when('destination.port', [], ['8080'])] })));
});

test('what cannot be evaluated fails closed: no ALLOW match, a DENY match', (t) => {
  const jwt = rule({ when: [when('request.auth.claims[iss]', ['https://issuer'])] });
  t.false(allows(jwt));
  const deny = new L7Authorizer([policy('deny-jwt', 'DENY', [rule({ to: [to({ methods: ['GET'] })], when: [when('request.auth.principal', ['x'])] })])]);
  t.deepEqual(deny.decide(req({ method: 'POST' }), [SVC]), { allowed: false, policy: 'shop/deny-jwt' });
  t.false(allows(rule({ to: [to({ paths: ['/items/{*}'] })] }), req({ path: '/items/{*}' })));
  t.false(allows(rule({ from: [from({ ipBlocks: ['10.0.0.0/33', '10.244.0.0/16'] })] })));
  // The other rules of the policy still count.
  t.true(new L7Authorizer([policy('p', 'ALLOW', [jwt, rule({ to: [to({ methods: ['GET'] })] })])]).decide(req(), [SVC]).allowed);
});

test('unsupportedL7Keys lists what the waypoint cannot evaluate, once each', (t) => {
  const p = policy('p', 'ALLOW', [
    rule({ when: [when('request.auth.claims[iss]', ['x']), when('request.headers[a]', ['b']), when('source.ip', ['not-an-ip']), when('remote.ip', ['1.2.3.4'])] }),
    rule({ from: [from({ notIpBlocks: ['10.0.0.0/33'] })], to: [to({ paths: ['/a/{**}'] })], when: [when('request.auth.claims[iss]', ['y'])] }),
  ]);
  t.deepEqual(unsupportedL7Keys(p), ['request.auth.claims[iss]', 'source.ip: not-an-ip', 'remote.ip', 'notIpBlocks: 10.0.0.0/33', 'paths: /a/{**}']);
  t.deepEqual(unsupportedL7Keys(policy('ok', 'ALLOW', [rule({ when: [when('source.principal', ['*'])] })])), []);
});

test('dry-run policies never change the decision', (t) => {
  const a = new L7Authorizer([policy('deny-all', 'DENY', [rule({})], { dryRun: true }), policy('allow-none', 'ALLOW', [], { dryRun: true })]);
  t.deepEqual(a.decide(req(), [SVC]), { allowed: true, policy: '' });
  const b = new L7Authorizer([policy('get', 'ALLOW', [rule({ to: [to({ methods: ['GET'] })] })]), policy('allow-post', 'ALLOW', [rule({})], { dryRun: true })]);
  t.false(b.decide(req({ method: 'POST' }), [SVC]).allowed);
});

test('the deciding policy does not depend on the order policies arrive in', (t) => {
  const p1 = policy('b-deny', 'DENY', [rule({})]);
  const p2 = policy('a-deny', 'DENY', [rule({})]);
  t.is(new L7Authorizer([p1, p2]).decide(req(), [SVC]).policy, 'shop/a-deny');
  t.is(new L7Authorizer([p2, p1]).decide(req(), [SVC]).policy, 'shop/a-deny');
});

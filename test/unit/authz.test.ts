import test from 'ava';
import ipaddr from 'ipaddr.js';
import { compilePolicies, evaluate, parseIp, compileCidr, cidrContains, validateAuthorization, type ConnectionInfo, type Decision } from '../../src/authz/index.ts';
import { spiffeId, type SpiffeId } from '../../src/identity/index.ts';
import { type Action, type Authorization, type Cidr, emptyMatch, type Match, type Scope, type StringMatch, type Workload } from '../../src/xds/index.ts';

// ---- builders -----------------------------------------------------------------------------------

const ROOT = 'istio-system';
const cart = spiffeId('cluster.local', 'shop', 'cart');
const web = spiffeId('cluster.local', 'front', 'web');
const foreign = spiffeId('other.local', 'shop', 'cart');

function match(m: Partial<Match>): Match {
  return { ...emptyMatch(), ...m };
}

/** "a/b/c" → exact, "a*" → prefix, "*a" → suffix, "*" → presence (istiod's stringToMatch). */
function s(v: string): StringMatch {
  if (v === '*') return { presence: {} };
  if (v.startsWith('*')) return { suffix: v.slice(1) };
  if (v.endsWith('*')) return { prefix: v.slice(0, -1) };
  return { exact: v };
}

function cidr(v: string): Cidr {
  const [ip, len] = v.includes('/') ? ipaddr.parseCIDR(v) : [ipaddr.parse(v), undefined];
  const address = Uint8Array.from(ip.toByteArray());
  return { address, length: len ?? address.length * 8 };
}

interface PolicyOpts {
  ns?: string;
  scope?: Scope;
  action?: Action;
  dryRun?: boolean;
  origin?: Authorization['origin'];
}

/** One rule of one clause of one match — the common shape. */
function policy(name: string, m: Partial<Match> | null, o: PolicyOpts = {}): Authorization {
  return rules(name, m === null ? [] : [[[m]]], o);
}

/** rules[r][c][m] */
function rules(name: string, r: Partial<Match>[][][], o: PolicyOpts = {}): Authorization {
  return {
    name,
    namespace: o.ns ?? 'shop',
    scope: o.scope ?? 'NAMESPACE',
    action: o.action ?? 'ALLOW',
    rules: r.map((clauses) => ({ clauses: clauses.map((ms) => ({ matches: ms.map(match) })) })),
    dryRun: o.dryRun ?? false,
    origin: o.origin ?? 'AUTHORIZATION_POLICY',
  };
}

function workload(listed: string[] = [], ns = 'shop'): Workload {
  return {
    uid: `Kubernetes//v1/Pod/${ns}/api-1`,
    name: 'api-1',
    namespace: ns,
    addresses: [Uint8Array.of(10, 244, 1, 7)],
    hostname: '',
    network: '',
    trustDomain: 'cluster.local',
    serviceAccount: 'api',
    node: 'node-a',
    tunnelProtocol: 'HBONE',
    waypoint: null,
    canonicalName: 'api',
    canonicalRevision: 'v1',
    workloadType: 'DEPLOYMENT',
    workloadName: 'api',
    status: 'HEALTHY',
    services: {},
    authorizationPolicies: listed,
    clusterId: 'Kubernetes',
    podUid: 'uid-1',
  };
}

function conn(o: { id?: SpiffeId | null; src?: string; dst?: string; port?: number; wl?: Workload } = {}): ConnectionInfo {
  return {
    srcIp: o.src ?? '10.244.2.9',
    srcIdentity: o.id === null ? undefined : (o.id ?? cart),
    dstWorkload: o.wl ?? workload(),
    dstIp: o.dst ?? '10.244.1.7',
    dstPort: o.port ?? 8080,
  };
}

function judge(pols: Authorization[], c: ConnectionInfo): Decision {
  return evaluate(c, compilePolicies({ byKey: new Map(pols.map((p) => [`${p.namespace}/${p.name}`, p])) }));
}

// ---- one ALLOW policy per field: (name, match, connection, allowed) -----------------------------

type Row = [string, Partial<Match>, Parameters<typeof conn>[0], boolean];

const fieldRows: Row[] = [
  ['principals exact matches the peer', { principals: [s('cluster.local/ns/shop/sa/cart')] }, {}, true],
  ['principals exact does not match another SA', { principals: [s('cluster.local/ns/shop/sa/admin')] }, {}, false],
  ['principals prefix', { principals: [s('cluster.local/ns/shop/*')] }, {}, true],
  ['principals prefix of another namespace', { principals: [s('cluster.local/ns/front/*')] }, {}, false],
  ['principals suffix', { principals: [s('*/sa/cart')] }, {}, true],
  ['principals suffix, other SA', { principals: [s('*/sa/web')] }, {}, false],
  ['principals "*" matches any authenticated peer', { principals: [s('*')] }, {}, true],
  ['principals "*" does not match plaintext', { principals: [s('*')] }, { id: null }, false],
  ['principals exact of another trust domain never matches', { principals: [s('other.local/ns/shop/sa/cart')] }, {}, false],
  ['principals of the foreign trust domain match only its peer', { principals: [s('other.local/ns/shop/sa/cart')] }, { id: foreign }, true],
  ['principals: any value of the list', { principals: [s('cluster.local/ns/x/sa/y'), s('*/sa/cart')] }, {}, true],
  ['not_principals excludes the peer', { notPrincipals: [s('cluster.local/ns/shop/sa/cart')] }, {}, false],
  ['not_principals lets others in', { notPrincipals: [s('cluster.local/ns/shop/sa/cart')] }, { id: web }, true],
  ['not_principals matches plaintext (no principal to exclude)', { notPrincipals: [s('*')] }, { id: null }, true],
  ['namespaces exact', { namespaces: [s('shop')] }, {}, true],
  ['namespaces exact, other namespace', { namespaces: [s('shop')] }, { id: web }, false],
  ['namespaces prefix', { namespaces: [s('fr*')] }, { id: web }, true],
  ['namespaces "*" does not match plaintext', { namespaces: [s('*')] }, { id: null }, false],
  ['not_namespaces excludes', { notNamespaces: [s('shop')] }, {}, false],
  ['not_namespaces lets plaintext in (namespace "")', { notNamespaces: [s('shop')] }, { id: null }, true],
  ['service_accounts', { serviceAccounts: [{ namespace: 'shop', serviceAccount: 'cart' }] }, {}, true],
  ['service_accounts in another namespace', { serviceAccounts: [{ namespace: 'front', serviceAccount: 'cart' }] }, {}, false],
  ['service_accounts ignore the trust domain (as ztunnel)', { serviceAccounts: [{ namespace: 'shop', serviceAccount: 'cart' }] }, { id: foreign }, true],
  ['service_accounts never match plaintext', { serviceAccounts: [{ namespace: 'shop', serviceAccount: 'cart' }] }, { id: null }, false],
  ['not_service_accounts excludes', { notServiceAccounts: [{ namespace: 'shop', serviceAccount: 'cart' }] }, {}, false],
  ['not_service_accounts matches plaintext', { notServiceAccounts: [{ namespace: 'shop', serviceAccount: 'cart' }] }, { id: null }, true],
  ['source_ips IPv4 CIDR', { sourceIps: [cidr('10.244.0.0/16')] }, {}, true],
  ['source_ips IPv4 CIDR, outside', { sourceIps: [cidr('10.245.0.0/16')] }, {}, false],
  ['source_ips single address (/32)', { sourceIps: [cidr('10.244.2.9')] }, {}, true],
  ['source_ips /0 matches every IPv4', { sourceIps: [cidr('0.0.0.0/0')] }, {}, true],
  ['source_ips IPv4 against an IPv4-mapped peer', { sourceIps: [cidr('10.244.0.0/16')] }, { src: '::ffff:10.244.2.9' }, true],
  ['source_ips IPv6 CIDR', { sourceIps: [cidr('fd00:10:244::/48')] }, { src: 'fd00:10:244:2::9', dst: 'fd00:10:244:1::7' }, true],
  ['source_ips IPv6 CIDR, outside', { sourceIps: [cidr('fd00:10:245::/48')] }, { src: 'fd00:10:244:2::9', dst: 'fd00:10:244:1::7' }, false],
  ['source_ips IPv6 never matches IPv4', { sourceIps: [cidr('::/0')] }, {}, false],
  ['source_ips mapped CIDR matches IPv4', { sourceIps: [cidr('::ffff:10.244.0.0/112')] }, {}, true],
  ['source_ips IPv6 /127 boundary', { sourceIps: [cidr('fd00::8/127')] }, { src: 'fd00::9', dst: 'fd00::1' }, true],
  ['source_ips IPv6 /127 boundary, outside', { sourceIps: [cidr('fd00::8/127')] }, { src: 'fd00::a', dst: 'fd00::1' }, false],
  ['not_source_ips excludes', { notSourceIps: [cidr('10.244.2.0/24')] }, {}, false],
  ['not_source_ips lets others in', { notSourceIps: [cidr('10.244.3.0/24')] }, {}, true],
  ['destination_ips', { destinationIps: [cidr('10.244.1.7/32')] }, {}, true],
  ['destination_ips, other address', { destinationIps: [cidr('10.244.1.8/32')] }, {}, false],
  ['not_destination_ips', { notDestinationIps: [cidr('10.244.1.0/24')] }, {}, false],
  ['destination_ports', { destinationPorts: [80, 8080] }, {}, true],
  ['destination_ports, other port', { destinationPorts: [80, 8080] }, { port: 9090 }, false],
  ['not_destination_ports', { notDestinationPorts: [8080] }, {}, false],
  ['not_destination_ports, other port', { notDestinationPorts: [8080] }, { port: 9090 }, true],
  ['fields of one match are AND-ed: both hold', { principals: [s('*/sa/cart')], destinationPorts: [8080] }, {}, true],
  ['fields of one match are AND-ed: one fails', { principals: [s('*/sa/cart')], destinationPorts: [9090] }, {}, false],
  ['positive and not_ of one field are AND-ed', { namespaces: [s('sh*')], notNamespaces: [s('shop')] }, {}, false],
];

for (const [name, m, c, allowed] of fieldRows) {
  test(`allow-policy field: ${name}`, (t) => {
    const d = judge([policy('p', m)], conn(c));
    t.is(d.allowed, allowed, d.reason);
    t.is(d.kind, allowed ? 'allow-matched' : 'no-allow-matched');
    if (allowed) t.is(d.policy, 'shop/p');
  });
  // The same match in a DENY policy inverts the outcome: every field works in both actions.
  test(`deny-policy field: ${name}`, (t) => {
    const d = judge([policy('p', m, { action: 'DENY' })], conn(c));
    t.is(d.allowed, !allowed, d.reason);
    t.is(d.kind, allowed ? 'deny-matched' : 'no-allow-policies');
  });
}

// ---- structure: rules OR, clauses AND, matches OR ------------------------------------------------

test('rules are OR-ed: the second rule matching is enough', (t) => {
  const p = rules('p', [[[{ destinationPorts: [1] }]], [[{ destinationPorts: [8080] }]]]);
  t.true(judge([p], conn()).allowed);
});

test('clauses are AND-ed: a "to" and a "from" clause must both match', (t) => {
  const p = rules('p', [[[{ destinationPorts: [8080] }], [{ namespaces: [s('front')] }]]]);
  t.false(judge([p], conn()).allowed);
  t.true(judge([p], conn({ id: web })).allowed);
});

test('matches of a clause are OR-ed: either source entry is enough', (t) => {
  const p = rules('p', [[[{ namespaces: [s('front')] }, { principals: [s('*/sa/cart')] }]]]);
  t.true(judge([p], conn()).allowed);
  t.true(judge([p], conn({ id: web })).allowed);
  t.false(judge([p], conn({ id: null })).allowed);
});

test('an ALLOW policy without rules allows nothing (allow-nothing) and denies once it applies', (t) => {
  const d = judge([policy('allow-nothing', null)], conn());
  t.false(d.allowed);
  t.is(d.kind, 'no-allow-matched');
  t.regex(d.reason, /no ALLOW policy matched \(1 apply to shop\/api-1: shop\/allow-nothing\)/);
});

test('a rule without clauses matches everything (rules: [{}] allows all)', (t) => {
  t.true(judge([rules('allow-all', [[]])], conn({ id: null })).allowed);
  t.false(judge([rules('deny-all', [[]], { action: 'DENY' })], conn()).allowed);
});

test('a DENY policy without rules denies nothing', (t) => {
  t.true(judge([policy('deny-nothing', null, { action: 'DENY' })], conn()).allowed);
});

test('an empty match fails closed: it matches in a DENY and not in an ALLOW (fields ztunnel cannot see)', (t) => {
  // What the controller emits for `DENY to: [{operation: {methods: [POST]}}]` at L4.
  const d = judge([policy('deny-post', {}, { action: 'DENY' })], conn());
  t.false(d.allowed);
  t.is(d.policy, 'shop/deny-post');
  t.false(judge([policy('allow-get', {})], conn()).allowed);
});

// ---- decisions across policies ------------------------------------------------------------------

test('DENY wins over a matching ALLOW', (t) => {
  const d = judge([policy('allow-cart', { principals: [s('*/sa/cart')] }), policy('deny-cart', { namespaces: [s('shop')] }, { action: 'DENY' })], conn());
  t.false(d.allowed);
  t.is(d.kind, 'deny-matched');
  t.is(d.policy, 'shop/deny-cart');
  t.is(d.reason, 'denied by DENY policy shop/deny-cart');
});

test('with several ALLOW policies one match is enough; none matching denies', (t) => {
  const pols = [policy('a', { namespaces: [s('front')] }), policy('b', { principals: [s('*/sa/cart')] })];
  const ok = judge(pols, conn());
  t.true(ok.allowed);
  t.is(ok.policy, 'shop/b');
  const no = judge(pols, conn({ id: spiffeId('cluster.local', 'shop', 'admin') }));
  t.false(no.allowed);
  t.is(no.kind, 'no-allow-matched');
  t.regex(no.reason, /2 apply to shop\/api-1: shop\/a, shop\/b/);
});

test('a non-matching DENY with no ALLOW policies allows', (t) => {
  const d = judge([policy('deny-web', { namespaces: [s('front')] }, { action: 'DENY' })], conn());
  t.true(d.allowed);
  t.is(d.kind, 'no-allow-policies');
});

// ---- scopes ---------------------------------------------------------------------------------------

test('scope: a NAMESPACE policy applies only to workloads of its namespace', (t) => {
  const other = policy('deny-all', {}, { ns: 'front', action: 'DENY' });
  t.true(judge([other], conn()).allowed);
  t.false(judge([other], conn({ wl: workload([], 'front') })).allowed);
});

test('scope: a GLOBAL policy applies to every workload', (t) => {
  const g = policy('deny-web', { namespaces: [s('front')] }, { ns: ROOT, scope: 'GLOBAL', action: 'DENY' });
  t.false(judge([g], conn({ id: web })).allowed);
  t.false(judge([g], conn({ id: web, wl: workload([], 'other') })).allowed);
  t.true(judge([g], conn()).allowed);
});

test('scope: a WORKLOAD_SELECTOR policy applies only where the workload lists it', (t) => {
  const sel = policy('only-web', { namespaces: [s('front')] }, { scope: 'WORKLOAD_SELECTOR' });
  t.true(judge([sel], conn()).allowed, 'not listed: no ALLOW policy applies');
  const d = judge([sel], conn({ wl: workload(['shop/only-web']) }));
  t.false(d.allowed);
  t.is(d.kind, 'no-allow-matched');
  t.true(judge([sel], conn({ id: web, wl: workload(['shop/only-web']) })).allowed);
});

test('scope: a workload that lists a policy the set lacks is denied (fail closed) and the policy named', (t) => {
  const d = judge([], conn({ wl: workload(['shop/not-yet-sent']) }));
  t.false(d.allowed, 'the missing policy may be a DENY or STRICT that has not arrived yet');
  t.is(d.kind, 'missing-policy');
  t.regex(d.reason, /shop\/not-yet-sent.*not received/);
  t.deepEqual(d.missing, ['shop/not-yet-sent']);
  // A DENY that did arrive still speaks for itself.
  const deny = policy('deny-all', null, { action: 'DENY', scope: 'WORKLOAD_SELECTOR' });
  const d2 = judge([{ ...deny, rules: [{ clauses: [] }] }], conn({ wl: workload(['shop/deny-all', 'shop/not-yet-sent']) }));
  t.false(d2.allowed);
  t.is(d2.kind, 'deny-matched');
});

// ---- PeerAuthentication, as the controller compiles it ----------------------------------------------

const strict = policy('converted_static_strict', { notPrincipals: [s('*')] }, { ns: ROOT, scope: 'WORKLOAD_SELECTOR', action: 'DENY', origin: 'PEER_AUTHENTICATION' });
const strictKey = `${ROOT}/converted_static_strict`;

test('STRICT refuses plaintext and names the PeerAuthentication', (t) => {
  const d = judge([strict], conn({ id: null, wl: workload([strictKey]) }));
  t.false(d.allowed);
  t.is(d.kind, 'strict-mtls');
  t.is(d.policy, strictKey);
  t.regex(d.reason, /requires mutual TLS/);
});

test('STRICT lets an authenticated peer through, still subject to ALLOW policies', (t) => {
  t.true(judge([strict], conn({ wl: workload([strictKey]) })).allowed);
  const allowWeb = policy('allow-web', { namespaces: [s('front')] });
  t.false(judge([strict, allowWeb], conn({ wl: workload([strictKey]) })).allowed);
  t.true(judge([strict, allowWeb], conn({ id: web, wl: workload([strictKey]) })).allowed);
});

test('PERMISSIVE (nothing compiled) lets plaintext in, still subject to ALLOW policies', (t) => {
  t.true(judge([], conn({ id: null })).allowed);
  const d = judge([policy('allow-shop', { namespaces: [s('shop')] })], conn({ id: null }));
  t.false(d.allowed);
  t.is(d.kind, 'no-allow-matched');
  t.true(judge([policy('allow-net', { sourceIps: [cidr('10.244.0.0/16')] })], conn({ id: null })).allowed);
});

test('port-level PERMISSIVE under STRICT exempts only that port', (t) => {
  const pa = policy('converted_peer_authentication_api', { notPrincipals: [s('*')], notDestinationPorts: [9090] }, { scope: 'WORKLOAD_SELECTOR', action: 'DENY', origin: 'PEER_AUTHENTICATION' });
  const wl = workload(['shop/converted_peer_authentication_api']);
  t.false(judge([pa], conn({ id: null, wl })).allowed);
  t.true(judge([pa], conn({ id: null, wl, port: 9090 })).allowed);
});

test('port-level STRICT under PERMISSIVE covers only that port', (t) => {
  const pa = policy('converted_peer_authentication_api', { notPrincipals: [s('*')], destinationPorts: [8080] }, { scope: 'WORKLOAD_SELECTOR', action: 'DENY', origin: 'PEER_AUTHENTICATION' });
  const wl = workload(['shop/converted_peer_authentication_api']);
  t.false(judge([pa], conn({ id: null, wl })).allowed);
  t.true(judge([pa], conn({ id: null, wl, port: 9090 })).allowed);
});

// ---- dry run, invalid policies, raw sources --------------------------------------------------------

test('a dry-run DENY does not deny but reports what it would do', (t) => {
  const d = judge([policy('deny-cart', { principals: [s('*/sa/cart')] }, { action: 'DENY', dryRun: true })], conn());
  t.true(d.allowed);
  t.deepEqual(d.dryRun, { allowed: false, policy: 'shop/deny-cart', reason: 'dry-run DENY policy shop/deny-cart would deny' });
});

test('a dry-run ALLOW does not turn on default-deny but reports it', (t) => {
  const d = judge([policy('allow-web', { namespaces: [s('front')] }, { dryRun: true })], conn());
  t.true(d.allowed);
  t.is(d.kind, 'no-allow-policies');
  t.false(d.dryRun?.allowed);
  t.is(judge([policy('allow-cart', { principals: [s('*/sa/cart')] }, { dryRun: true })], conn()).dryRun, undefined, 'same outcome: nothing to report');
});

test('a policy that cannot be compiled is rejected by the validator and enforced fail-closed', (t) => {
  const bad = policy('bad-deny', { sourceIps: [{ address: Uint8Array.of(10, 0, 0), length: 8 }] }, { action: 'DENY' });
  t.regex(validateAuthorization(bad) ?? '', /policy shop\/bad-deny rules\[0\]\.clauses\[0\]\.matches\[0\]\.source_ips\[0\]: a CIDR address has 3 bytes/);
  const set = compilePolicies({ byKey: new Map([['shop/bad-deny', bad]]) });
  t.true(set.errors.has('shop/bad-deny'));
  const d = evaluate(conn(), set);
  t.false(d.allowed);
  t.is(d.kind, 'invalid');
  const badAllow = policy('bad-allow', { destinationPorts: [70000] });
  t.regex(validateAuthorization(badAllow) ?? '', /70000 is not a port number/);
  const d2 = judge([badAllow], conn());
  t.false(d2.allowed);
  t.regex(d2.reason, /could not be compiled and allow nothing/);
  t.is(validateAuthorization(policy('ok', { destinationPorts: [80] })), undefined);
});

test('an unparsable address is denied when address policies apply', (t) => {
  const d = judge([policy('p', { sourceIps: [cidr('10.0.0.0/8')] }, { action: 'DENY' })], conn({ src: 'not-an-ip' }));
  t.false(d.allowed);
  t.is(d.kind, 'invalid');
});

test('the raw {byKey} form is compiled once and recompiled when the map changes', (t) => {
  const byKey = new Map<string, Authorization>([['shop/deny-cart', policy('deny-cart', { principals: [s('*/sa/cart')] }, { action: 'DENY' })]]);
  t.false(evaluate(conn(), { byKey }).allowed);
  t.false(evaluate(conn(), { byKey }).allowed);
  byKey.set('shop/deny-cart', policy('deny-cart', { principals: [s('*/sa/web')] }, { action: 'DENY' }));
  t.true(evaluate(conn(), { byKey }).allowed);
  byKey.delete('shop/deny-cart');
  t.true(evaluate(conn(), { byKey }).allowed);
});

test('decoded string matches (matchType set, other members defaulted) are read by their case', (t) => {
  const decoded: StringMatch = { exact: '', prefix: 'cluster.local/ns/shop/', suffix: '', presence: null, matchType: 'prefix' };
  t.true(judge([policy('p', { principals: [decoded] })], conn()).allowed);
  const presence: StringMatch = { exact: '', prefix: '', suffix: '', presence: {}, matchType: 'presence' };
  t.false(judge([policy('p', { principals: [presence] })], conn({ id: null })).allowed);
});

test('IP helpers: parse, fold IPv4-mapped, contain', (t) => {
  t.deepEqual(parseIp('10.0.0.1'), { v6: false, words: [0x0a000001] });
  t.deepEqual(parseIp('::ffff:10.0.0.1'), parseIp('10.0.0.1'));
  t.is(parseIp('10.0.0.256'), undefined);
  t.is(parseIp('nope'), undefined);
  const c = compileCidr(Uint8Array.of(192, 168, 1, 77), 24);
  t.is(c.text, '192.168.1.0/24');
  t.true(cidrContains(c, parseIp('192.168.1.200')!));
  t.false(cidrContains(c, parseIp('192.168.2.1')!));
  t.is(compileCidr(Uint8Array.from(ipaddr.parse('::ffff:10.0.0.0').toByteArray()), 104).text, '10.0.0.0/8');
  t.throws(() => compileCidr(Uint8Array.of(10, 0, 0, 0), 33), { code: 'MESH_ERR_AUTHZ_INVALID_POLICY' });
});

// ---- micro-benchmark ----------------------------------------------------------------------------

test('micro-benchmark: evaluations per second with 100 policies that apply', (t) => {
  // 100 policies all applying to the destination (30 GLOBAL, 60 NAMESPACE, 10 listed), with
  // principals, namespaces, CIDRs and ports; the connection matches only the last ALLOW, so
  // every policy is evaluated: the worst case for one connection.
  const pols: Authorization[] = [strict];
  const listed: string[] = [strictKey];
  for (let i = 0; i < 99; i++) {
    const scope: Scope = i < 30 ? 'GLOBAL' : i < 89 ? 'NAMESPACE' : 'WORKLOAD_SELECTOR';
    const ns = scope === 'GLOBAL' ? ROOT : 'shop';
    const action: Action = i % 3 === 0 ? 'DENY' : 'ALLOW';
    const last = i === 98;
    const p = rules(
      `p${i}`,
      [
        [[{ destinationPorts: [80 + i, 443] }], [{ principals: [s(`cluster.local/ns/team-${i}/sa/x`), s(`cluster.local/ns/t${i}*`)], namespaces: [s(`team-${i}`)] }, { sourceIps: [cidr(`172.${i}.0.0/16`)] }]],
        [[{ notNamespaces: [s('shop'), s(`ns-${i}`)], notSourceIps: [cidr('10.0.0.0/8')] }]],
        ...(last ? [[[{ principals: [s('cluster.local/ns/shop/sa/cart')], destinationPorts: [8080] }]]] : []),
      ],
      { ns, scope, action },
    );
    pols.push(p);
    if (scope === 'WORKLOAD_SELECTOR') listed.push(`shop/p${i}`);
  }
  const set = compilePolicies({ byKey: new Map(pols.map((p) => [`${p.namespace}/${p.name}`, p])) });
  const c = conn({ wl: workload(listed) });
  const first = evaluate(c, set);
  t.true(first.allowed, first.reason);
  t.is(first.policy, 'shop/p98');
  const n = 200_000;
  for (let i = 0; i < 20_000; i++) evaluate(c, set);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) evaluate(c, set);
  const ns = Number(process.hrtime.bigint() - t0);
  const perSec = Math.round(n / (ns / 1e9));
  t.log(`${perSec.toLocaleString('en')} evaluations/s with ${pols.length} applicable policies (${(ns / n / 1000).toFixed(2)} µs each, worst case: every policy checked)`);
  t.true(perSec > 20_000, `${perSec}/s`);
});

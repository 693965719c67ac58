// The mesh model as a table of (snapshot → expected resources / status) cases.
import test from 'ava';
import { buildModel, mergeConditions, type ClusterSnapshot, type MeshModel } from '../../src/controller/model/index.ts';
import { type Authorization, emptyMatch, type Match } from '../../src/xds/index.ts';
import { AMBIENT, ap, bigSnapshot, ns, OPTS, pa, pod, type PodOpts, snapshot, svc, waypointGateway, waypointSlice } from '../helpers/model-fixtures.ts';

const uid = (namespace: string, name: string): string => `Kubernetes//v1/Pod/${namespace}/${name}`;
const match = (m: Partial<Match>): Match => ({ ...emptyMatch(), ...m });
const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const cond = (m: MeshModel, key: string, type: string) => m.policyStatus.get(key)?.conditions.find((c) => c.type === type);

// ------------------------------------------------------------------------------------------------
// Workloads

test('membership: namespace opt-in, pod opt-out, hostNetwork, missing IP, terminal and deleting pods', (t) => {
  const m = buildModel(
    snapshot({
      namespaces: [ns('shop', AMBIENT), ns('plain')],
      pods: [
        pod('shop', 'in'),
        pod('shop', 'opted-out', { labels: { 'mesh.io/dataplane-mode': 'none' } }),
        pod('shop', 'host', { hostNetwork: true, ip: '192.168.1.10' }),
        pod('shop', 'pending', { ip: null, phase: 'Pending' }),
        pod('shop', 'done', { phase: 'Succeeded' }),
        pod('shop', 'failed', { phase: 'Failed' }),
        pod('shop', 'leaving', { deleting: true }),
        pod('plain', 'outside'),
      ],
    }),
    OPTS,
  );
  const cases: [string, 'HBONE' | 'NONE' | 'absent'][] = [
    ['shop/in', 'HBONE'],
    ['shop/opted-out', 'NONE'],
    ['shop/host', 'absent'],
    ['shop/pending', 'absent'],
    ['shop/done', 'absent'],
    ['shop/failed', 'absent'],
    ['shop/leaving', 'absent'],
    ['plain/outside', 'NONE'],
  ];
  for (const [key, want] of cases) {
    const [n, p] = key.split('/') as [string, string];
    t.is(m.workloads.get(uid(n, p))?.tunnelProtocol ?? 'absent', want, key);
  }
  // A workload outside the mesh says why, for its plaintext flows.
  t.is(m.workloads.get(uid('shop', 'in'))?.notCapturedReason, '');
  t.is(m.workloads.get(uid('shop', 'opted-out'))?.notCapturedReason, 'opted out by its label mesh.io/dataplane-mode=none');
  t.is(m.workloads.get(uid('plain', 'outside'))?.notCapturedReason, 'namespace plain has no mesh.io/dataplane-mode=ambient label');
});

test('a workload carries identity, addresses, owner, health, pod UID and its services with named target ports resolved', (t) => {
  const m = buildModel(
    snapshot({
      namespaces: [ns('shop', AMBIENT)],
      pods: [
        pod('shop', 'cart-7d9f8b6c5-abcde', {
          labels: { app: 'cart', version: 'v2', 'pod-template-hash': '7d9f8b6c5' },
          ips: ['10.244.0.7', 'fd00::7'],
          owner: { kind: 'ReplicaSet', name: 'cart-7d9f8b6c5' },
          ports: [{ name: 'http', containerPort: 8080 }],
        }),
      ],
      services: [
        svc('shop', 'cart', { selector: { app: 'cart' }, clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'admin', port: 9000 }] }),
        svc('shop', 'other', { selector: { app: 'other' }, ports: [{ port: 80 }] }),
      ],
    }),
    OPTS,
  );
  t.deepEqual(m.workloads.get(uid('shop', 'cart-7d9f8b6c5-abcde')), {
    uid: uid('shop', 'cart-7d9f8b6c5-abcde'),
    name: 'cart-7d9f8b6c5-abcde',
    namespace: 'shop',
    addresses: [bytes(10, 244, 0, 7), bytes(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7)],
    hostname: '',
    network: '',
    trustDomain: 'cluster.local',
    serviceAccount: 'default',
    node: 'node-a',
    tunnelProtocol: 'HBONE',
    waypoint: null,
    canonicalName: 'cart',
    canonicalRevision: 'v2',
    workloadType: 'DEPLOYMENT',
    workloadName: 'cart',
    status: 'HEALTHY',
    services: {
      'shop/cart.shop.svc.cluster.local': {
        ports: [
          { servicePort: 80, targetPort: 8080, appProtocol: 'http' },
          { servicePort: 9000, targetPort: 9000, appProtocol: '' },
        ],
      },
    },
    authorizationPolicies: [],
    clusterId: 'Kubernetes',
    podUid: 'uid-shop-cart-7d9f8b6c5-abcde',
    labels: { app: 'cart', version: 'v2', 'pod-template-hash': '7d9f8b6c5' },
    notCapturedReason: '',
  });
});

test('named target ports resolve per pod; a pod without the named port is no endpoint for it', (t) => {
  const m = buildModel(
    snapshot({
      namespaces: [ns('shop', AMBIENT)],
      pods: [
        pod('shop', 'a', { labels: { app: 'web' }, ports: [{ name: 'web', containerPort: 8080 }] }),
        pod('shop', 'b', { labels: { app: 'web' }, ports: [{ name: 'web', containerPort: 9090 }] }),
        pod('shop', 'c', { labels: { app: 'web' } }),
      ],
      services: [svc('shop', 'web', { selector: { app: 'web' }, clusterIP: '10.96.0.11', ports: [{ name: 'http-web', port: 80, targetPort: 'web' }] })],
    }),
    OPTS,
  );
  const key = 'shop/web.shop.svc.cluster.local';
  t.deepEqual(m.services.get(key)?.ports, [{ servicePort: 80, targetPort: 0, appProtocol: 'http' }]);
  t.deepEqual(m.workloads.get(uid('shop', 'a'))?.services[key]?.ports, [{ servicePort: 80, targetPort: 8080, appProtocol: 'http' }]);
  t.deepEqual(m.workloads.get(uid('shop', 'b'))?.services[key]?.ports, [{ servicePort: 80, targetPort: 9090, appProtocol: 'http' }]);
  t.deepEqual(m.workloads.get(uid('shop', 'c'))?.services, {});
});

test('workload name and type follow the owning controller, as Istio derives them', (t) => {
  const cases: [string, PodOpts, string, string][] = [
    ['cart-5f6b7c8d9-x1y2z', { owner: { kind: 'ReplicaSet', name: 'cart-5f6b7c8d9' }, labels: { 'pod-template-hash': '5f6b7c8d9' } }, 'cart', 'DEPLOYMENT'],
    ['rs-only-abcde', { owner: { kind: 'ReplicaSet', name: 'rs-only' } }, 'rs-only', 'POD'],
    ['migrate-q7w8e', { owner: { kind: 'Job', name: 'migrate' } }, 'migrate', 'JOB'],
    ['report-28976540-q7w8e', { owner: { kind: 'Job', name: 'report-28976540' } }, 'report', 'CRONJOB'],
    ['db-0', { owner: { kind: 'StatefulSet', name: 'db' } }, 'db', 'POD'],
    ['bare', {}, 'bare', 'POD'],
  ];
  const m = buildModel(snapshot({ namespaces: [ns('shop', AMBIENT)], pods: cases.map(([name, o]) => pod('shop', name, o)) }), OPTS);
  for (const [name, , wname, wtype] of cases) {
    const w = m.workloads.get(uid('shop', name));
    t.deepEqual([w?.workloadName, w?.workloadType, w?.canonicalName], [wname, wtype, wname], name);
  }
});

test('services: VIPs, headless, ExternalName, protocols from appProtocol or port names, UDP left out, SANs, waypoint', (t) => {
  const m = buildModel(
    snapshot({
      namespaces: [ns('shop', { ...AMBIENT, 'mesh.io/use-waypoint': 'wp' })],
      gateways: [waypointGateway('shop', 'wp')],
      services: [
        svc(
          'shop',
          'api',
          {
            clusterIP: '10.96.0.20',
            clusterIPs: ['10.96.0.20', 'fd00:96::20'],
            ports: [
              { name: 'grpc-api', port: 9000, targetPort: 9000 },
              { name: 'metrics', port: 9100, appProtocol: 'kubernetes.io/h2c' },
              { name: 'dns', port: 53, protocol: 'UDP' },
              { name: 'tcp-raw', port: 7000, targetPort: 7001 },
            ],
          },
          {},
          { 'mesh.io/subject-alt-names': 'spiffe://cluster.local/ns/shop/sa/legacy, spiffe://cluster.local/ns/shop/sa/api' },
        ),
        svc('shop', 'db', { clusterIP: 'None', ports: [{ name: 'pg', port: 5432 }] }, { 'mesh.io/use-waypoint': 'none' }),
        svc('shop', 'ext', { type: 'ExternalName', externalName: 'example.com' }),
      ],
    }),
    OPTS,
  );
  t.deepEqual(m.services.get('shop/api.shop.svc.cluster.local'), {
    name: 'api',
    namespace: 'shop',
    hostname: 'api.shop.svc.cluster.local',
    addresses: [
      { network: '', address: bytes(10, 96, 0, 20) },
      { network: '', address: bytes(0xfd, 0, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20) },
    ],
    ports: [
      { servicePort: 7000, targetPort: 7001, appProtocol: 'tcp' },
      { servicePort: 9000, targetPort: 9000, appProtocol: 'grpc' },
      { servicePort: 9100, targetPort: 9100, appProtocol: 'http2' },
    ],
    subjectAltNames: ['spiffe://cluster.local/ns/shop/sa/api', 'spiffe://cluster.local/ns/shop/sa/legacy'],
    waypoint: { hostname: 'shop/wp.shop.svc.cluster.local', hboneMtlsPort: 15008 },
  });
  const db = m.services.get('shop/db.shop.svc.cluster.local');
  t.deepEqual([db?.addresses, db?.waypoint], [[], null], 'headless: a Service without VIPs; use-waypoint=none opts out');
  t.false(m.services.has('shop/ext.shop.svc.cluster.local'));
});

test('a selector-less service takes its pods from EndpointSlices', (t) => {
  const m = buildModel(
    snapshot({
      namespaces: [ns('shop', AMBIENT)],
      pods: [pod('shop', 'legacy')],
      services: [svc('shop', 'manual', { clusterIP: '10.96.0.30', ports: [{ name: 'http', port: 80 }] })],
      endpointSlices: [
        {
          metadata: { name: 'manual-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'manual' } },
          addressType: 'IPv4',
          endpoints: [{ addresses: ['10.244.9.9'], targetRef: { kind: 'Pod', name: 'legacy', namespace: 'shop' } }],
          ports: [{ name: 'http', port: 8081, protocol: 'TCP' }],
        },
      ],
    }),
    OPTS,
  );
  t.deepEqual(m.workloads.get(uid('shop', 'legacy'))?.services, { 'shop/manual.shop.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8081, appProtocol: 'http' }] } });
});

test('waypoint-for: a service waypoint (the default) takes Services, a workload waypoint pods, all both, none neither; a missing one still fails closed', (t) => {
  const forType = (f: string | null) => {
    const m = buildModel(
      snapshot({
        namespaces: [ns('shop', { ...AMBIENT, 'mesh.io/use-waypoint': 'wp' })],
        gateways: [waypointGateway('shop', 'wp', 'mesh-waypoint', 'True', f)],
        endpointSlices: [waypointSlice('shop', 'wp')],
        services: [
          svc('shop', 'web', { selector: { app: 'web' }, clusterIP: '10.96.0.10', ports: [{ port: 80 }] }),
          svc('shop', 'wp', { selector: { 'gateway.networking.k8s.io/gateway-name': 'wp' }, clusterIP: '10.96.0.11', ports: [{ port: 15008 }] }),
        ],
        pods: [pod('shop', 'a', { labels: { app: 'web' } })],
      }),
      OPTS,
    );
    t.is(m.services.get('shop/wp.shop.svc.cluster.local')?.waypoint ?? null, null, "the waypoint's own Service never goes through it");
    return { pod: m.workloads.get(uid('shop', 'a'))?.waypoint?.hostname ?? null, svc: m.services.get('shop/web.shop.svc.cluster.local')?.waypoint?.hostname ?? null };
  };
  const wp = 'shop/wp.shop.svc.cluster.local';
  t.deepEqual(forType(null), { pod: null, svc: wp });
  t.deepEqual(forType('service'), { pod: null, svc: wp });
  t.deepEqual(forType('workload'), { pod: wp, svc: null });
  t.deepEqual(forType('all'), { pod: wp, svc: wp });
  t.deepEqual(forType('none'), { pod: null, svc: null });
});

test('waypoints: pod label beats namespace label, a missing waypoint is set anyway (fails closed) and reported', (t) => {
  const m = buildModel(
    snapshot({
      namespaces: [ns('shop', { ...AMBIENT, 'mesh.io/use-waypoint': 'wp' }), ns('blog', { ...AMBIENT, 'mesh.io/use-waypoint': 'ghost' })],
      gateways: [waypointGateway('shop', 'wp'), waypointGateway('shop', 'not-a-waypoint', 'istio')],
      endpointSlices: [waypointSlice('shop', 'wp')],
      pods: [
        pod('shop', 'a'),
        pod('shop', 'b', { labels: { 'mesh.io/use-waypoint': 'none' } }),
        pod('shop', 'c', { labels: { 'mesh.io/use-waypoint': 'not-a-waypoint' } }),
        pod('shop', 'wp-5d4c-xyz', { labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' } }),
        pod('blog', 'd'),
      ],
    }),
    OPTS,
  );
  const wp = (n: string, p: string) => m.workloads.get(uid(n, p))?.waypoint?.hostname ?? null;
  t.is(wp('shop', 'a'), 'shop/wp.shop.svc.cluster.local');
  t.is(wp('shop', 'b'), null);
  t.is(wp('shop', 'c'), 'shop/not-a-waypoint.shop.svc.cluster.local');
  t.is(wp('shop', 'wp-5d4c-xyz'), null, 'a waypoint never routes through itself');
  t.is(wp('blog', 'd'), 'blog/ghost.blog.svc.cluster.local');
  t.false(m.services.has('blog/ghost.blog.svc.cluster.local'), 'nothing resolves the missing waypoint: ztunnel refuses');
  t.deepEqual(m.waypoints.get('blog/ghost'), {
    gateway: 'blog/ghost',
    hostname: 'blog/ghost.blog.svc.cluster.local',
    found: false,
    ready: false,
    problem: 'Gateway blog/ghost does not exist',
    users: ['Namespace/blog', 'Pod/blog/d'],
    policies: [],
  });
  t.regex(m.waypoints.get('shop/not-a-waypoint')?.problem ?? '', /gatewayClassName "istio", not "mesh-waypoint"/);
  t.like(m.waypoints.get('shop/wp'), { found: true, ready: true, problem: '' });
});

// ------------------------------------------------------------------------------------------------
// AuthorizationPolicy

const SHOP = [ns('shop', AMBIENT), ns('mesh-system')];
const SHOP_PODS = [pod('shop', 'cart', { labels: { app: 'cart' } }), pod('shop', 'web', { labels: { app: 'web' } })];

interface PolicyCase {
  name: string;
  spec: unknown;
  namespace?: string;
  want: Omit<Authorization, 'name' | 'namespace' | 'origin' | 'dryRun'>;
}

const policyCases: PolicyCase[] = [
  {
    name: 'allow-l4-everything-translates',
    spec: {
      action: 'ALLOW',
      rules: [
        {
          from: [
            { source: { principals: ['cluster.local/ns/shop/sa/web', 'cluster.local/ns/ops/*'], notNamespaces: ['kube-system'] } },
            { source: { ipBlocks: ['10.0.0.0/8', '192.168.1.1'], serviceAccounts: ['ops/robot', 'local'] } },
          ],
          to: [{ operation: { ports: ['8080', '9090'], notPorts: ['9091'] } }],
          when: [{ key: 'destination.ip', notValues: ['10.96.0.1'] }],
        },
      ],
    },
    want: {
      scope: 'NAMESPACE',
      action: 'ALLOW',
      rules: [
        {
          clauses: [
            { matches: [match({ destinationPorts: [8080, 9090], notDestinationPorts: [9091] })] },
            {
              matches: [
                match({ principals: [{ exact: 'cluster.local/ns/shop/sa/web' }, { prefix: 'cluster.local/ns/ops/' }], notNamespaces: [{ exact: 'kube-system' }] }),
                match({
                  sourceIps: [
                    { address: bytes(10, 0, 0, 0), length: 8 },
                    { address: bytes(192, 168, 1, 1), length: 32 },
                  ],
                  serviceAccounts: [
                    { namespace: 'ops', serviceAccount: 'robot' },
                    { namespace: 'shop', serviceAccount: 'local' },
                  ],
                }),
              ],
            },
            { matches: [match({ notDestinationIps: [{ address: bytes(10, 96, 0, 1), length: 32 }] })] },
          ],
        },
      ],
    },
  },
  {
    name: 'deny-any-principal',
    spec: { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['*'], namespaces: ['*-dev'] } }] }] },
    want: { scope: 'NAMESPACE', action: 'DENY', rules: [{ clauses: [{ matches: [match({ notPrincipals: [{ presence: {} }], namespaces: [{ suffix: '-dev' }] })] }] }] },
  },
  // Istio: `spec: {}` is allow-nothing (an ALLOW policy that matches nothing), `rules: [{}]` allow-all.
  { name: 'allow-nothing', spec: {}, want: { scope: 'NAMESPACE', action: 'ALLOW', rules: [] } },
  { name: 'allow-all', spec: { rules: [{}] }, want: { scope: 'NAMESPACE', action: 'ALLOW', rules: [{ clauses: [] }] } },
  { name: 'deny-nothing', spec: { action: 'DENY' }, want: { scope: 'NAMESPACE', action: 'DENY', rules: [] } },
  { name: 'mesh-wide', namespace: 'mesh-system', spec: { action: 'DENY', rules: [{ when: [{ key: 'source.ip', values: ['203.0.113.0/24'] }] }] }, want: { scope: 'GLOBAL', action: 'DENY', rules: [{ clauses: [{ matches: [match({ sourceIps: [{ address: bytes(203, 0, 113, 0), length: 24 }] })] }] }] } },
  { name: 'selected', spec: { selector: { matchLabels: { app: 'cart' } }, rules: [{ to: [{ operation: { ports: ['80'] } }] }] }, want: { scope: 'WORKLOAD_SELECTOR', action: 'ALLOW', rules: [{ clauses: [{ matches: [match({ destinationPorts: [80] })] }] }] } },
  // Fail closed without a waypoint: the ALLOW rule with HTTP fields goes (allows less)…
  {
    name: 'allow-l7-no-waypoint',
    spec: { rules: [{ from: [{ source: { namespaces: ['shop'] } }] }, { to: [{ operation: { methods: ['GET'], paths: ['/public/*'] } }] }] },
    want: { scope: 'NAMESPACE', action: 'ALLOW', rules: [{ clauses: [{ matches: [match({ namespaces: [{ exact: 'shop' }] })] }] }] },
  },
  // …the DENY rule stays without them (denies more).
  {
    name: 'deny-l7-no-waypoint',
    spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['test'] } }], to: [{ operation: { ports: ['8080'], methods: ['POST'] } }], when: [{ key: 'request.headers[x-debug]', values: ['1'] }] }] },
    want: {
      scope: 'NAMESPACE',
      action: 'DENY',
      rules: [{ clauses: [{ matches: [match({ destinationPorts: [8080] })] }, { matches: [match({ namespaces: [{ exact: 'test' }] })] }, { matches: [match({})] }] }],
    },
  },
  { name: 'custom-no-waypoint', spec: { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }, want: { scope: 'NAMESPACE', action: 'DENY', rules: [{ clauses: [{ matches: [match({})] }] }] } },
];

for (const c of policyCases) {
  test(`authorization-policy ${c.name}`, (t) => {
    const namespace = c.namespace ?? 'shop';
    const m = buildModel(snapshot({ namespaces: SHOP, pods: SHOP_PODS, authorizationPolicies: [ap(namespace, c.name, c.spec)] }), OPTS);
    t.deepEqual(m.authorizations.get(`${namespace}/${c.name}`), { name: c.name, namespace, origin: 'AUTHORIZATION_POLICY', dryRun: false, ...c.want });
    t.is(cond(m, `AuthorizationPolicy/${namespace}/${c.name}`, 'Accepted')?.status, 'True');
  });
}

test('scopes: only WORKLOAD_SELECTOR policies are listed, by the workloads they select (root-namespace selectors reach every namespace)', (t) => {
  const m = buildModel(
    snapshot({
      namespaces: [...SHOP, ns('blog', AMBIENT)],
      pods: [...SHOP_PODS, pod('blog', 'cart', { labels: { app: 'cart' } })],
      authorizationPolicies: [
        ap('shop', 'ns-wide', { rules: [{}] }),
        ap('shop', 'cart-only', { selector: { matchLabels: { app: 'cart' } }, rules: [{}] }),
        ap('mesh-system', 'global', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['198.51.100.0/24'] } }] }] }),
        ap('mesh-system', 'every-cart', { selector: { matchLabels: { app: 'cart' } }, action: 'DENY', rules: [{ to: [{ operation: { ports: ['22'] } }] }] }),
      ],
    }),
    OPTS,
  );
  t.deepEqual(
    [...m.authorizations.values()].map((a) => [`${a.namespace}/${a.name}`, a.scope]),
    [
      ['mesh-system/every-cart', 'WORKLOAD_SELECTOR'],
      ['mesh-system/global', 'GLOBAL'],
      ['shop/cart-only', 'WORKLOAD_SELECTOR'],
      ['shop/ns-wide', 'NAMESPACE'],
    ],
  );
  t.deepEqual(m.workloads.get(uid('shop', 'cart'))?.authorizationPolicies, ['mesh-system/every-cart', 'shop/cart-only']);
  t.deepEqual(m.workloads.get(uid('shop', 'web'))?.authorizationPolicies, []);
  t.deepEqual(m.workloads.get(uid('blog', 'cart'))?.authorizationPolicies, ['mesh-system/every-cart']);
});

test('HTTP fields without a waypoint: enforced fail-closed and the status says how, loudly', (t) => {
  const allow = policyCases.find((c) => c.name === 'allow-l7-no-waypoint')!;
  const deny = policyCases.find((c) => c.name === 'deny-l7-no-waypoint')!;
  const m = buildModel(
    snapshot({
      namespaces: SHOP,
      pods: SHOP_PODS,
      authorizationPolicies: [ap('shop', 'allow-l7', allow.spec), ap('shop', 'deny-l7', deny.spec), ap('shop', 'only-l7', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] })],
    }),
    OPTS,
  );
  const a = cond(m, 'AuthorizationPolicy/shop/allow-l7', 'Enforced');
  t.like(a, { status: 'False', reason: 'L7FieldsWithoutWaypoint', observedGeneration: 3 });
  t.regex(a?.message ?? '', /HTTP fields \(methods, paths\).*ALLOW policy is enforced fail-closed at L4 without rule 2: it allows less than written/);
  const d = cond(m, 'AuthorizationPolicy/shop/deny-l7', 'Enforced');
  t.like(d, { status: 'False', reason: 'L7FieldsWithoutWaypoint' });
  t.regex(d?.message ?? '', /HTTP fields \(methods, when request.headers\[x-debug\]\).*DENY policy .* denies more than written/);
  t.regex(cond(m, 'AuthorizationPolicy/shop/only-l7', 'Enforced')?.message ?? '', /No rule is left, so it allows nothing/);
  t.deepEqual(m.authorizations.get('shop/only-l7')?.rules, []);
  t.is(cond(m, 'AuthorizationPolicy/shop/allow-l7', 'Accepted')?.status, 'True');
});

test('HTTP fields with a waypoint: left to the waypoint, nothing for ztunnel; mixed selections split', (t) => {
  const m = buildModel(
    snapshot({
      namespaces: [ns('shop', { ...AMBIENT, 'mesh.io/use-waypoint': 'wp' }), ns('blog', { ...AMBIENT, 'mesh.io/use-waypoint': 'ghost' }), ns('mesh-system')],
      gateways: [waypointGateway('shop', 'wp')],
      endpointSlices: [waypointSlice('shop', 'wp')],
      pods: [...SHOP_PODS, pod('shop', 'batch', { labels: { app: 'cart', 'mesh.io/use-waypoint': 'none' } }), pod('blog', 'post')],
      authorizationPolicies: [
        ap('shop', 'web-get', { selector: { matchLabels: { app: 'web' } }, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }),
        ap('shop', 'cart-get', { selector: { matchLabels: { app: 'cart' } }, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }),
        ap('blog', 'post-get', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }),
        ap('shop', 'by-ref', { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'wp' }], rules: [{ to: [{ operation: { paths: ['/x'] } }] }] }),
      ],
    }),
    OPTS,
  );
  t.false(m.authorizations.has('shop/web-get'));
  t.like(cond(m, 'AuthorizationPolicy/shop/web-get', 'Enforced'), { status: 'True', reason: 'EnforcedByWaypoint' });
  t.regex(cond(m, 'AuthorizationPolicy/shop/web-get', 'Enforced')?.message ?? '', /enforced by waypoint shop\/wp, not by ztunnel/);
  // cart is behind the waypoint, batch opted out of it: only batch gets the fail-closed form.
  t.is(m.authorizations.get('shop/cart-get')?.scope, 'WORKLOAD_SELECTOR');
  t.deepEqual(m.workloads.get(uid('shop', 'cart'))?.authorizationPolicies, []);
  t.deepEqual(m.workloads.get(uid('shop', 'batch'))?.authorizationPolicies, ['shop/cart-get']);
  t.regex(cond(m, 'AuthorizationPolicy/shop/cart-get', 'Enforced')?.message ?? '', /^Workloads using waypoint shop\/wp have it enforced there\. For the others: .*fail-closed/);
  t.like(cond(m, 'AuthorizationPolicy/blog/post-get', 'Enforced'), { status: 'False', reason: 'WaypointNotFound' });
  t.regex(cond(m, 'AuthorizationPolicy/blog/post-get', 'Enforced')?.message ?? '', /Gateway blog\/ghost does not exist\): until it can, ztunnel refuses all traffic to the workloads that use it, and enforces this policy fail-closed/);
  t.truthy(m.authorizations.get('blog/post-get'), 'the missing waypoint does not switch the policy off');
  t.like(cond(m, 'AuthorizationPolicy/shop/by-ref', 'Enforced'), { status: 'True', reason: 'EnforcedByWaypoint' });
  t.deepEqual(m.waypoints.get('shop/wp')?.policies, ['AuthorizationPolicy/shop/by-ref', 'AuthorizationPolicy/shop/cart-get', 'AuthorizationPolicy/shop/web-get']);
});

test('waypoint-label-keeps-policy: a workload whose waypoint is missing, unprogrammed or without endpoints keeps the fail-closed L4 policy', (t) => {
  const orders = (labels: Record<string, string>) => pod('shop', 'orders', { labels: { app: 'orders', ...labels } });
  const allowGet = ap('shop', 'orders-get', { selector: { matchLabels: { app: 'orders' } }, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] });
  const cases: [string, Partial<ClusterSnapshot>, RegExp][] = [
    ['missing Gateway', {}, /Gateway shop\/wp does not exist/],
    ['not programmed', { gateways: [waypointGateway('shop', 'wp', 'mesh-waypoint', 'none')], endpointSlices: [waypointSlice('shop', 'wp')] }, /Gateway shop\/wp is not Programmed \(no Programmed condition/],
    ['Programmed=False', { gateways: [waypointGateway('shop', 'wp', 'mesh-waypoint', 'False')], endpointSlices: [waypointSlice('shop', 'wp')] }, /Programmed=False/],
    ['no ready endpoint', { gateways: [waypointGateway('shop', 'wp')], endpointSlices: [waypointSlice('shop', 'wp', false)] }, /waypoint Service shop\/wp has no ready endpoint/],
  ];
  for (const [name, parts, why] of cases) {
    const m = buildModel(snapshot({ namespaces: SHOP, pods: [orders({ 'mesh.io/use-waypoint': 'wp' })], authorizationPolicies: [allowGet], ...parts }), OPTS);
    const a = m.authorizations.get('shop/orders-get');
    t.like(a, { action: 'ALLOW', rules: [] }, `${name}: the allow-nothing L4 form stays in force`);
    t.deepEqual(m.workloads.get(uid('shop', 'orders'))?.authorizationPolicies, ['shop/orders-get'], name);
    t.is(m.workloads.get(uid('shop', 'orders'))?.waypoint?.hostname, 'shop/wp.shop.svc.cluster.local', `${name}: still set, so ztunnel refuses`);
    const c = cond(m, 'AuthorizationPolicy/shop/orders-get', 'Enforced');
    t.like(c, { status: 'False', reason: 'WaypointNotFound' }, name);
    t.regex(c?.message ?? '', why, name);
    t.regex(c?.message ?? '', /ztunnel refuses all traffic to the workloads that use it/, name);
    t.false(m.waypoints.get('shop/wp')?.ready, name);
  }
  // Once the waypoint is ready it takes the policy over.
  const m = buildModel(
    snapshot({ namespaces: SHOP, pods: [orders({ 'mesh.io/use-waypoint': 'wp' })], authorizationPolicies: [allowGet], gateways: [waypointGateway('shop', 'wp')], endpointSlices: [waypointSlice('shop', 'wp')] }),
    OPTS,
  );
  t.false(m.authorizations.has('shop/orders-get'));
  t.like(cond(m, 'AuthorizationPolicy/shop/orders-get', 'Enforced'), { status: 'True', reason: 'EnforcedByWaypoint' });
});

test('invalid policies are rejected with the reason and do not affect the others', (t) => {
  const cases: [string, unknown, string, RegExp][] = [
    ['spiffe-scheme', { rules: [{ from: [{ source: { principals: ['spiffe://cluster.local/ns/a/sa/b'] } }] }] }, 'InvalidPrincipal', /without "spiffe:\/\/"/],
    ['not-a-principal', { rules: [{ from: [{ source: { principals: ['cart'] } }] }] }, 'InvalidPrincipal', /not a principal/],
    ['bad-cidr', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }] }] }, 'InvalidCIDR', /10\.0\.0\.0\/33/],
    ['bad-action', { action: 'REJECT', rules: [{}] }, 'UnknownAction', /"REJECT" is not one of/],
    ['bad-port', { rules: [{ to: [{ operation: { ports: ['http'] } }] }] }, 'InvalidPort', /"http" is not a port/],
    ['typo', { rules: [{ from: [{ source: { principal: ['x'] } }] }] }, 'InvalidSpec', /unknown field spec\.rules\[0\]\.from\[0\]\.source\.principal/],
    ['empty-source', { action: 'DENY', rules: [{ from: [{ source: {} }] }] }, 'InvalidSpec', /must be a non-empty object/],
    ['bad-when', { rules: [{ when: [{ key: 'source.color', values: ['red'] }] }] }, 'InvalidSpec', /not a supported condition key/],
  ];
  const m = buildModel(
    snapshot({ namespaces: SHOP, pods: SHOP_PODS, authorizationPolicies: [...cases.map(([name, spec]) => ap('shop', name, spec)), ap('shop', 'good', { rules: [{}] })] }),
    OPTS,
  );
  for (const [name, , reason, msg] of cases) {
    const a = cond(m, `AuthorizationPolicy/shop/${name}`, 'Accepted');
    t.like(a, { status: 'False', reason }, name);
    t.regex(a?.message ?? '', msg, name);
    t.like(cond(m, `AuthorizationPolicy/shop/${name}`, 'Enforced'), { status: 'False', reason: 'Invalid' }, name);
    t.false(m.authorizations.has(`shop/${name}`), name);
  }
  t.true(m.authorizations.has('shop/good'));
  t.like(cond(m, 'AuthorizationPolicy/shop/good', 'Enforced'), { status: 'True', reason: 'Enforced' });
});

test('a principal from another trust domain is accepted with a warning', (t) => {
  const m = buildModel(snapshot({ namespaces: SHOP, authorizationPolicies: [ap('shop', 'td', { rules: [{ from: [{ source: { principals: ['example.org/ns/a/sa/b'] } }] }] })] }), OPTS);
  t.regex(cond(m, 'AuthorizationPolicy/shop/td', 'Accepted')?.message ?? '', /trust domain "example.org" but the mesh's is "cluster.local"/);
});

test('AUDIT needs a waypoint and blocks nothing without one; the dry-run annotation reaches ztunnel', (t) => {
  const dry = ap('shop', 'dry', { action: 'DENY', rules: [{}] });
  dry.metadata!.annotations = { 'mesh.io/dry-run': 'true' };
  const m = buildModel(snapshot({ namespaces: SHOP, pods: SHOP_PODS, authorizationPolicies: [ap('shop', 'audit', { action: 'AUDIT', rules: [{}] }), dry] }), OPTS);
  t.false(m.authorizations.has('shop/audit'));
  t.like(cond(m, 'AuthorizationPolicy/shop/audit', 'Enforced'), { status: 'False', reason: 'AuditWithoutWaypoint' });
  t.true(m.authorizations.get('shop/dry')?.dryRun);
});

// ------------------------------------------------------------------------------------------------
// PeerAuthentication

const STRICT_DENY = (name: string, namespace: string, m: Partial<Match>): Authorization => ({
  name,
  namespace,
  scope: 'WORKLOAD_SELECTOR',
  action: 'DENY',
  rules: [{ clauses: [{ matches: [match({ notPrincipals: [{ presence: {} }], ...m })] }] }],
  dryRun: false,
  origin: 'PEER_AUTHENTICATION',
});

test('peer authentication: workload over namespace over mesh, port-level exceptions, oldest wins', (t) => {
  const m = buildModel(
    snapshot({
      namespaces: [ns('mesh-system'), ns('shop', AMBIENT), ns('legacy', AMBIENT), ns('plain')],
      pods: [
        pod('shop', 'cart', { labels: { app: 'cart' } }),
        pod('shop', 'web', { labels: { app: 'web' } }),
        pod('legacy', 'old', { labels: { app: 'old' } }),
        pod('legacy', 'new', { labels: { app: 'new' } }),
        pod('legacy', 'mixed', { labels: { app: 'mixed' } }),
        pod('plain', 'outside'),
      ],
      peerAuthentications: [
        pa('mesh-system', 'default', { mtls: { mode: 'STRICT' } }),
        pa('shop', 'web-metrics', { selector: { matchLabels: { app: 'web' } }, mtls: { mode: 'UNSET' }, portLevelMtls: { '9090': { mode: 'PERMISSIVE' } } }),
        pa('legacy', 'default', { mtls: { mode: 'PERMISSIVE' } }, '2026-01-01T00:00:00Z'),
        pa('legacy', 'later', { mtls: { mode: 'STRICT' } }, '2026-02-01T00:00:00Z'),
        pa('legacy', 'new-strict', { selector: { matchLabels: { app: 'new' } }, mtls: { mode: 'STRICT' } }),
        pa('legacy', 'mixed-port', { selector: { matchLabels: { app: 'mixed' } }, portLevelMtls: { '8443': { mode: 'STRICT' }, '8080': { mode: 'DISABLE' } } }),
      ],
    }),
    OPTS,
  );
  const policies = (n: string, p: string) => m.workloads.get(uid(n, p))?.authorizationPolicies;
  t.deepEqual(policies('shop', 'cart'), ['mesh-system/converted_static_strict'], 'mesh-wide STRICT');
  t.deepEqual(policies('shop', 'web'), ['shop/converted_peer_authentication_web-metrics'], 'STRICT except port 9090');
  t.deepEqual(policies('legacy', 'old'), [], 'the namespace PERMISSIVE overrides the mesh STRICT');
  t.deepEqual(policies('legacy', 'new'), ['mesh-system/converted_static_strict'], 'a workload STRICT overrides the namespace PERMISSIVE');
  t.deepEqual(policies('legacy', 'mixed'), ['legacy/converted_peer_authentication_mixed-port'], 'STRICT on one port of a PERMISSIVE workload');
  t.deepEqual(policies('plain', 'outside'), [], 'not in the mesh: nothing to enforce');
  t.deepEqual(m.authorizations.get('mesh-system/converted_static_strict'), STRICT_DENY('converted_static_strict', 'mesh-system', {}));
  t.deepEqual(m.authorizations.get('shop/converted_peer_authentication_web-metrics'), STRICT_DENY('converted_peer_authentication_web-metrics', 'shop', { notDestinationPorts: [9090] }));
  t.deepEqual(m.authorizations.get('legacy/converted_peer_authentication_mixed-port'), STRICT_DENY('converted_peer_authentication_mixed-port', 'legacy', { destinationPorts: [8443] }));
  t.like(cond(m, 'PeerAuthentication/legacy/later', 'Enforced'), { status: 'False', reason: 'Conflicted' });
  t.regex(cond(m, 'PeerAuthentication/legacy/later', 'Enforced')?.message ?? '', /legacy\/default is older/);
  t.like(cond(m, 'PeerAuthentication/mesh-system/default', 'Enforced'), { status: 'True', reason: 'Enforced' });
  t.regex(cond(m, 'PeerAuthentication/legacy/mixed-port', 'Enforced')?.message ?? '', /ports 8080=DISABLE, 8443=STRICT/);
});

test('peer authentication: invalid mode or namespace-wide port-level mTLS is rejected', (t) => {
  const m = buildModel(
    snapshot({
      namespaces: [ns('shop', AMBIENT)],
      pods: [pod('shop', 'cart')],
      peerAuthentications: [pa('shop', 'typo', { mtls: { mode: 'STRICTLY' } }), pa('shop', 'ports', { portLevelMtls: { '80': { mode: 'STRICT' } } })],
    }),
    OPTS,
  );
  t.regex(cond(m, 'PeerAuthentication/shop/typo', 'Accepted')?.message ?? '', /"STRICTLY" is not one of/);
  t.regex(cond(m, 'PeerAuthentication/shop/ports', 'Accepted')?.message ?? '', /portLevelMtls needs a spec.selector/);
  t.deepEqual(m.workloads.get(uid('shop', 'cart'))?.authorizationPolicies, []);
  t.is(m.authorizations.size, 0);
});

// ------------------------------------------------------------------------------------------------
// Status, determinism, scale

test('mergeConditions keeps the transition time of an unchanged condition', (t) => {
  const m = buildModel(snapshot({ namespaces: SHOP, authorizationPolicies: [ap('shop', 'p', { rules: [{}] })] }), OPTS);
  const next = m.policyStatus.get('AuthorizationPolicy/shop/p')!;
  const first = mergeConditions(undefined, next, new Date('2026-03-01T00:00:00Z'));
  const prev = [...first.conditions, { type: 'Other', status: 'True' as const, reason: 'X', message: '', observedGeneration: 1, lastTransitionTime: 'then' }];
  prev[1] = { ...prev[1]!, status: 'False' };
  const second = mergeConditions(prev, next, new Date('2026-03-02T00:00:00Z'));
  t.deepEqual(
    second.conditions.map((c) => [c.type, c.lastTransitionTime]),
    [
      ['Accepted', '2026-03-01T00:00:00.000Z'],
      ['Enforced', '2026-03-02T00:00:00.000Z'],
      ['Other', 'then'],
    ],
  );
});

function shuffled<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const serialize = (m: MeshModel): string => JSON.stringify(Object.fromEntries(Object.entries(m).map(([k, v]) => [k, [...(v as Map<string, unknown>)]])), (_k, v: unknown) => (v instanceof Uint8Array ? Array.from(v) : v));

test('determinism: shuffled input gives byte-identical output', (t) => {
  const snap = bigSnapshot(600, 60, 40);
  const a = serialize(buildModel(snap, OPTS));
  const shuffledSnap = Object.fromEntries(Object.entries(snap).map(([k, v], i) => [k, shuffled(v as unknown[], i + 7)])) as unknown as ClusterSnapshot;
  t.is(serialize(buildModel(shuffledSnap, OPTS)), a);
  t.true(a.length > 10_000);
});

test('scale: 10,000 pods, 1,000 services, 100 policies', (t) => {
  const snap = bigSnapshot(10_000, 1_000, 100);
  buildModel(snap, OPTS); // warm-up
  const runs: number[] = [];
  let m: MeshModel | undefined;
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    m = buildModel(snap, OPTS);
    runs.push(performance.now() - start);
  }
  runs.sort((a, b) => a - b);
  t.log(`buildModel 10k pods / 1k services / 100 policies: median ${runs[2]!.toFixed(0)} ms, min ${runs[0]!.toFixed(0)} ms`);
  t.is(m!.workloads.size, 10_000);
  t.is(m!.services.size, 1_000);
  t.true(runs[2]! < 5_000);
});

// AuthorizationPolicies handed to waypoints become L7Authorizations (src/controller/model/l7authz.ts):
// the targets a waypoint applies them to, the HTTP fields as written, what a waypoint cannot
// enforce failing closed, and a status that says which waypoint enforces the policy and how.
import type * as k8s from '@kubernetes/client-node';
import test from 'ava';
import { buildModel, type ClusterSnapshot, type KubeObject, type MeshModel } from '../../src/controller/model/index.ts';

const OPTS = { trustDomain: 'cluster.local', clusterId: 'Kubernetes', rootNamespace: 'mesh-system' };
const WEB = 'Service/shop/web.shop.svc.cluster.local';

function snapshot(parts: Partial<ClusterSnapshot>): ClusterSnapshot {
  return { namespaces: [], pods: [], services: [], endpointSlices: [], nodes: [], gateways: [], httpRoutes: [], authorizationPolicies: [], peerAuthentications: [], ...parts };
}

function pod(namespace: string, name: string, ip: string, labels: Record<string, string>): k8s.V1Pod {
  return {
    metadata: { name, namespace, uid: `uid-${name}`, labels },
    spec: { nodeName: 'node-a', containers: [{ name: 'app' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

const gateway: KubeObject = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  // A waypoint for workloads too: a selector policy is handed to the waypoints of the workloads it selects.
  metadata: { name: 'wp', namespace: 'shop', labels: { 'mesh.io/waypoint-for': 'all' } },
  spec: { gatewayClassName: 'mesh-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  status: { conditions: [{ type: 'Programmed', status: 'True' }] },
};
const wpSlice: k8s.V1EndpointSlice = {
  metadata: { name: 'wp-abc', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'wp' } },
  addressType: 'IPv4',
  endpoints: [{ addresses: ['10.101.0.99'], conditions: { ready: true } }],
};

const ap = (name: string, spec: unknown): KubeObject => ({
  apiVersion: 'security.mesh.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: 'shop', generation: 4, creationTimestamp: new Date('2026-01-01T00:00:00Z') },
  spec,
});

function model(policies: KubeObject[], waypoint = true): MeshModel {
  return buildModel(
    snapshot({
      namespaces: [{ metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient', ...(waypoint ? { 'mesh.io/use-waypoint': 'wp' } : {}) } } }, { metadata: { name: 'mesh-system' } }],
      pods: [pod('shop', 'web-1', '10.244.0.5', { app: 'web' }), pod('shop', 'cart-1', '10.244.0.6', { app: 'cart' })],
      services: [{ metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] } }],
      gateways: [gateway],
      endpointSlices: [wpSlice],
      authorizationPolicies: policies,
    }),
    OPTS,
  );
}

const enforced = (m: MeshModel, name: string) => m.policyStatus.get(`AuthorizationPolicy/shop/${name}`)?.conditions.find((c) => c.type === 'Enforced');
const op = (o: Record<string, unknown>) => ({ hosts: [], notHosts: [], ports: [], notPorts: [], methods: [], notMethods: [], paths: [], notPaths: [], ...o });
const src = (s: Record<string, unknown>) => ({ principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], ipBlocks: [], notIpBlocks: [], ...s });

test('a selector policy with HTTP fields becomes an L7Authorization for the Services of the selected workloads', (t) => {
  const m = model([
    ap('web-get', {
      selector: { matchLabels: { app: 'web' } },
      rules: [
        {
          from: [{ source: { serviceAccounts: ['client', 'other/sa'], notNamespaces: ['kube-system'] } }],
          to: [{ operation: { methods: ['GET'], paths: ['/api/*'], ports: ['8080'] } }],
          when: [{ key: 'request.headers[X-User]', values: ['alice'] }],
        },
      ],
    }),
  ]);
  t.false(m.authorizations.has('shop/web-get'), 'nothing for ztunnel');
  t.deepEqual(m.l7Authorizations.get('shop/web-get'), {
    name: 'web-get',
    namespace: 'shop',
    targets: [WEB],
    action: 'ALLOW',
    rules: [
      {
        from: [src({ principals: ['cluster.local/ns/shop/sa/client', 'cluster.local/ns/other/sa/sa'], notNamespaces: ['kube-system'] })],
        to: [op({ methods: ['GET'], paths: ['/api/*'], ports: [8080] })],
        when: [{ key: 'request.headers[x-user]', values: ['alice'], notValues: [] }],
      },
    ],
    dryRun: false,
  });
  t.like(enforced(m, 'web-get'), { status: 'True', reason: 'EnforcedByWaypoint', observedGeneration: 4 });
  t.regex(enforced(m, 'web-get')!.message, /enforced by waypoint shop\/wp, not by ztunnel/);
});

test('targetRefs name the Gateway or the Service the waypoint applies the policy to', (t) => {
  const m = model([
    ap('by-gateway', { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'wp' }], action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }),
    ap('by-service', { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }),
  ]);
  t.deepEqual(m.l7Authorizations.get('shop/by-gateway')?.targets, ['Gateway/shop/wp']);
  t.is(m.l7Authorizations.get('shop/by-gateway')?.action, 'DENY');
  t.deepEqual(m.l7Authorizations.get('shop/by-service')?.targets, [WEB]);
  t.like(enforced(m, 'by-service'), { status: 'True', reason: 'EnforcedByWaypoint' });
});

test('what a waypoint cannot enforce fails closed and the status says so: an ALLOW rule goes, a DENY rule denies more', (t) => {
  const m = model([
    ap('allow-jwt', {
      selector: { matchLabels: { app: 'web' } },
      rules: [{ to: [{ operation: { methods: ['GET'] } }] }, { when: [{ key: 'request.auth.claims[iss]', values: ['me'] }] }],
    }),
    ap('deny-jwt', {
      selector: { matchLabels: { app: 'web' } },
      action: 'DENY',
      rules: [{ from: [{ source: { requestPrincipals: ['me/*'] } }], to: [{ operation: { paths: ['/admin'] } }] }],
    }),
    ap('allow-only-jwt', { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }),
  ]);
  t.deepEqual(m.l7Authorizations.get('shop/allow-jwt')?.rules, [{ from: [], to: [op({ methods: ['GET'] })], when: [] }]);
  const a = enforced(m, 'allow-jwt')!;
  t.like(a, { status: 'False', reason: 'UnsupportedInWaypoint' });
  t.regex(a.message, /enforced by waypoint shop\/wp.* Not as written: waypoint shop\/wp cannot enforce when request\.auth\.claims\[iss\], so this ALLOW policy is enforced there without rule 2: it allows less than written/);

  t.deepEqual(m.l7Authorizations.get('shop/deny-jwt')?.rules, [{ from: [src({})], to: [op({ paths: ['/admin'] })], when: [] }], 'the source matches any request principal');
  t.regex(enforced(m, 'deny-jwt')!.message, /cannot enforce requestPrincipals, so rule 1 of this DENY policy is enforced there without those fields: it denies more than written/);

  t.deepEqual(m.l7Authorizations.get('shop/allow-only-jwt')?.rules, []);
  t.regex(enforced(m, 'allow-only-jwt')!.message, /no rule is left, so it allows nothing/);
});

test('without a waypoint nothing goes to waypoints and the L4 fail-closed form stays', (t) => {
  const m = model([ap('web-get', { selector: { matchLabels: { app: 'web' } }, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] })], false);
  t.is(m.l7Authorizations.size, 0);
  t.like(m.authorizations.get('shop/web-get'), { action: 'ALLOW', rules: [] });
  t.like(enforced(m, 'web-get'), { status: 'False', reason: 'L7FieldsWithoutWaypoint' });
});

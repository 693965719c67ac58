// ztunnel's state and inbound decision in the windows between config updates: before every type
// has arrived, and while a workload lists a policy that has not.
import test from 'ava';
import { spiffeId } from '../../src/identity/index.ts';
import { type Authorization, AUTHORIZATION, emptyMatch, SERVICE, WORKLOAD, type Workload } from '../../src/xds/index.ts';
import { policyFromState } from '../../src/ztunnel/policy.ts';
import { ipText, MeshState } from '../../src/state/index.ts';

function workload(o: Partial<Workload> = {}): Workload {
  return {
    uid: 'Kubernetes//v1/Pod/shop/orders-1',
    name: 'orders-1',
    namespace: 'shop',
    addresses: [Uint8Array.of(10, 101, 0, 2)],
    hostname: '',
    network: '',
    trustDomain: 'cluster.local',
    serviceAccount: 'orders',
    node: 'node1',
    tunnelProtocol: 'HBONE',
    waypoint: null,
    canonicalName: 'orders',
    canonicalRevision: 'latest',
    workloadType: 'POD',
    workloadName: 'orders',
    status: 'HEALTHY',
    services: {},
    authorizationPolicies: [],
    clusterId: 'Kubernetes',
    podUid: 'uid-orders',
    ...o,
  };
}

/** PeerAuthentication STRICT as the controller compiles it: DENY when no principal. */
const strict: Authorization = {
  name: 'converted_strict',
  namespace: 'shop',
  scope: 'NAMESPACE',
  action: 'DENY',
  rules: [{ clauses: [{ matches: [{ ...emptyMatch(), notPrincipals: [{ presence: {} }] }] }] }],
  dryRun: false,
  origin: 'PEER_AUTHENTICATION',
};

const plaintext = (dst: Workload) => ({ srcIp: '10.100.0.9', srcIdentity: undefined, dst, dstIp: '10.101.0.2', dstPort: 8080 });
const mtls = (dst: Workload) => ({ ...plaintext(dst), srcIdentity: spiffeId('cluster.local', 'shop', 'frontend') });

test('inbound-refused-until-every-type-synced: workloads without the policies deny, then STRICT applies', (t) => {
  const state = new MeshState();
  const w = workload();
  t.false(state.synced);
  // A restarted ztunnel: Workloads arrive first.
  state.replace(WORKLOAD, [[w.uid, w]], true);
  state.replace(SERVICE, [], true);
  t.false(state.synced, 'Authorizations have not arrived');
  t.regex(policyFromState(mtls(w), state) ?? '', /not yet received its full config/);
  t.regex(policyFromState(plaintext(w), state) ?? '', /not yet received its full config/, 'plaintext is not let through while STRICT may still be on its way');
  // A partial response of a type is not its full state.
  state.replace(AUTHORIZATION, [['shop/converted_strict', strict]], false);
  t.false(state.synced);
  state.replace(AUTHORIZATION, [['shop/converted_strict', strict]], true);
  t.true(state.synced);
  t.regex(policyFromState(plaintext(w), state) ?? '', /requires mutual TLS/);
  t.is(policyFromState(mtls(w), state), undefined, 'mTLS is allowed once everything is here');
});

test('a workload listing a policy that has not arrived is denied, naming it', (t) => {
  const state = new MeshState();
  const w = workload({ authorizationPolicies: ['shop/allow-get'] });
  state.replace(WORKLOAD, [[w.uid, w]], true);
  state.replace(SERVICE, [], true);
  state.replace(AUTHORIZATION, [], true);
  t.regex(policyFromState(mtls(w), state) ?? '', /shop\/allow-get.*not received/);
});

test('waypoint status: missing Service, no healthy endpoint, or ready with the identities behind it', (t) => {
  const state = new MeshState();
  const addr = { hostname: 'shop/wp.shop.svc.cluster.local', hboneMtlsPort: 15008 };
  t.regex(state.waypoint(addr, 'cluster.local').problem ?? '', /waypoint shop\/wp\.shop\.svc\.cluster\.local is missing/);
  const svc = { name: 'wp', namespace: 'shop', hostname: 'wp.shop.svc.cluster.local', addresses: [], ports: [], subjectAltNames: [], waypoint: null };
  state.replace(SERVICE, [['shop/wp.shop.svc.cluster.local', svc]], true);
  const wpPod = workload({ uid: 'Kubernetes//v1/Pod/shop/wp-1', name: 'wp-1', serviceAccount: 'wp', podUid: 'uid-wp', status: 'UNHEALTHY', services: { 'shop/wp.shop.svc.cluster.local': { ports: [] } } });
  state.replace(WORKLOAD, [[wpPod.uid, wpPod]], true);
  t.regex(state.waypoint(addr, 'cluster.local').problem ?? '', /has no ready endpoint/);
  state.replace(WORKLOAD, [[wpPod.uid, { ...wpPod, status: 'HEALTHY' }]], true);
  t.deepEqual(state.waypoint(addr, 'cluster.local'), { hostname: 'shop/wp.shop.svc.cluster.local', problem: undefined, identities: ['spiffe://cluster.local/ns/shop/sa/wp'], addresses: wpPod.addresses.map(ipText) });
});

test('waypointsOf: a pod reached by its IP still goes through the waypoint of a Service it backs on that port; an impostor endpoint does not count', (t) => {
  const state = new MeshState();
  const wpAddr = { hostname: 'shop/wp.shop.svc.cluster.local', hboneMtlsPort: 15008 };
  const orders = { name: 'orders', namespace: 'shop', hostname: 'orders.shop.svc.cluster.local', addresses: [], ports: [], subjectAltNames: [], waypoint: wpAddr };
  const wp = { name: 'wp', namespace: 'shop', hostname: 'wp.shop.svc.cluster.local', addresses: [], ports: [], subjectAltNames: [], waypoint: null };
  state.replace(SERVICE, [['shop/orders.shop.svc.cluster.local', orders], ['shop/wp.shop.svc.cluster.local', wp]], true);
  const pod = workload({ services: { 'shop/orders.shop.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080, appProtocol: '' }] } } });
  t.deepEqual(state.waypointsOf(pod, 8080), [{ via: 'service shop/orders.shop.svc.cluster.local', address: wpAddr }]);
  t.deepEqual(state.waypointsOf(pod, 9090), [], 'another port of the pod is not the Service\'s');
  // A pod matching the waypoint Service's selector with another service account is not the waypoint.
  const impostor = workload({ uid: 'Kubernetes//v1/Pod/shop/evil', name: 'evil', serviceAccount: 'evil', podUid: 'uid-evil', services: { 'shop/wp.shop.svc.cluster.local': { ports: [] } } });
  state.replace(WORKLOAD, [[impostor.uid, impostor]], true);
  t.regex(state.waypoint(wpAddr, 'cluster.local').problem ?? '', /no ready endpoint running as service account shop\/wp/);
});

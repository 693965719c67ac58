// The incremental model against the reference: random sequences of object changes (pods,
// services, slices, namespaces, gateways, policies, routes) applied to IncrementalModel in random
// batches, and after every commit the model must equal buildModel() of the same objects, and the
// names commit() reported must be enough to bring a copy of the previous model (what the config
// store holds) to the new one. A failure names the seed and the step; rerun one seed with
// MODEL_SEED=<n>.
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { buildModel, IncrementalModel, MODEL_KINDS, type ClusterSnapshot, type KubeObject, type MeshModel, type ModelKind } from '../../src/controller/model/index.ts';
import { ap, bigSnapshot, ns, OPTS, pa, pod, snapshot, svc, waypointGateway, waypointSlice } from '../helpers/model-fixtures.ts';

/** mulberry32: a small seeded PRNG, so that a failing sequence can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const maybe = (r: Rand, p = 0.5): boolean => r() < p;
const NAMESPACES = ['ns0', 'ns1', 'ns2', 'mesh-system'];
let version = 0;

function randomLabels(r: Rand): Record<string, string> {
  const l: Record<string, string> = {};
  if (maybe(r, 0.8)) l.app = pick(r, ['a', 'b', 'c']);
  if (maybe(r, 0.4)) l.ver = pick(r, ['1', '2']);
  if (maybe(r, 0.15)) l['mesh.io/dataplane-mode'] = pick(r, ['none', 'ambient']);
  if (maybe(r, 0.2)) l['mesh.io/use-waypoint'] = pick(r, ['wp', 'wp2', 'none']);
  if (maybe(r, 0.05)) l['gateway.networking.k8s.io/gateway-name'] = 'wp';
  return l;
}

function randomObject(r: Rand, kind: ModelKind, namespace: string, name: string): KubeObject {
  switch (kind) {
    case 'namespaces': {
      const labels: Record<string, string> = {};
      if (maybe(r, 0.7)) labels['mesh.io/dataplane-mode'] = pick(r, ['ambient', 'ambient', 'none']);
      if (maybe(r, 0.3)) labels['mesh.io/use-waypoint'] = pick(r, ['wp', 'wp2', 'none']);
      return ns(name, labels);
    }
    case 'pods': {
      const p = pod(namespace, name, {
        labels: randomLabels(r),
        ip: maybe(r, 0.9) ? `10.1.${NAMESPACES.indexOf(namespace)}.${name.slice(1)}` : null,
        phase: maybe(r, 0.9) ? 'Running' : pick(r, ['Pending', 'Succeeded']),
        hostNetwork: maybe(r, 0.05),
        ready: maybe(r, 0.8),
        sa: pick(r, ['default', 'web']),
        ports: maybe(r, 0.7) ? [{ name: 'http', containerPort: pick(r, [8080, 9090]) }] : [],
        ...(maybe(r, 0.3) ? { owner: { kind: 'ReplicaSet', name: 'app-5f6b7c8d9' } } : {}),
      });
      return p;
    }
    case 'services': {
      const type = maybe(r, 0.1) ? 'ExternalName' : 'ClusterIP';
      const selector: Record<string, string> | undefined = maybe(r, 0.75) ? (maybe(r) ? { app: pick(r, ['a', 'b', 'c']) } : { app: pick(r, ['a', 'b']), ver: pick(r, ['1', '2']) }) : undefined;
      const labels: Record<string, string> = maybe(r, 0.25) ? { 'mesh.io/use-waypoint': pick(r, ['wp', 'wp2', 'none']) } : {};
      return svc(
        namespace,
        name,
        {
          type,
          ...(selector ? { selector } : {}),
          clusterIP: `10.96.${NAMESPACES.indexOf(namespace)}.${name.length + name.charCodeAt(name.length - 1)}`,
          ports: [{ name: 'http', port: 80, targetPort: maybe(r) ? 'http' : 8080 }, ...(maybe(r) ? [{ name: 'grpc', port: 9000 }] : [])],
        },
        labels,
      );
    }
    case 'endpointSlices': {
      // A slice of a service (by name), naming some pods; or a waypoint's Service slice.
      const service = name.replace(/-[a-z]+$/, '');
      if (service === 'wp' || service === 'wp2') return { ...waypointSlice(namespace, service, maybe(r, 0.7)), metadata: { name, namespace, labels: { 'kubernetes.io/service-name': service } } };
      const endpoints: k8s.V1Endpoint[] = Array.from({ length: Math.floor(r() * 4) }, () => ({
        addresses: ['10.1.0.1'],
        conditions: { ready: maybe(r, 0.8) },
        targetRef: { kind: 'Pod', name: pick(r, ['p0', 'p1', 'p2', 'p3', 'p4']), namespace },
      }));
      return {
        metadata: { name, namespace, labels: { 'kubernetes.io/service-name': service } },
        addressType: 'IPv4',
        endpoints,
        ports: [{ name: 'http', port: pick(r, [8080, 8081]), protocol: 'TCP' }],
      } as KubeObject;
    }
    case 'gateways':
      return waypointGateway(namespace, name, maybe(r, 0.85) ? 'mesh-waypoint' : 'other', pick(r, ['True', 'True', 'False', 'none'] as const), pick(r, ['all', 'service', 'workload', 'none', null]));
    case 'authorizationPolicies': {
      const specs: unknown[] = [
        { selector: { matchLabels: { app: pick(r, ['a', 'b']) } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/ns0/sa/web'] } }] }] },
        { action: 'DENY', rules: [{ to: [{ operation: { ports: ['8080'] } }] }] },
        { selector: { matchLabels: { app: pick(r, ['a', 'c']) } }, action: pick(r, ['ALLOW', 'DENY']), rules: [{ to: [{ operation: { methods: ['GET'] } }] }] },
        { action: 'ALLOW', rules: [{ to: [{ operation: { paths: ['/x'] } }] }] },
        { selector: { matchLabels: { ver: '1' } }, action: pick(r, ['CUSTOM', 'AUDIT']), provider: { name: 'ext' }, rules: [{}] },
        { targetRefs: [{ kind: pick(r, ['Gateway', 'Service']), name: pick(r, ['wp', 's0', 's1']) }], action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] },
        { action: 'BOGUS' },
        {},
      ];
      return ap(namespace, name, pick(r, specs));
    }
    case 'peerAuthentications': {
      const specs: unknown[] = [
        { mtls: { mode: pick(r, ['STRICT', 'PERMISSIVE', 'UNSET']) } },
        { selector: { matchLabels: { app: pick(r, ['a', 'b']) } }, mtls: { mode: pick(r, ['STRICT', 'PERMISSIVE']) }, portLevelMtls: { 8080: { mode: pick(r, ['PERMISSIVE', 'STRICT']) } } },
        { selector: { matchLabels: { app: 'a' } }, mtls: { mode: 'STRICT' } },
        { selector: { matchLabels: { ver: '1' } }, mtls: { mode: pick(r, ['PERMISSIVE', 'STRICT']) } },
        { mtls: { mode: 'WRONG' } },
      ];
      return pa(namespace, name, pick(r, specs), `2026-01-0${1 + Math.floor(r() * 5)}T00:00:00Z`);
    }
    case 'httpRoutes':
    case 'grpcRoutes':
      return {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: kind === 'httpRoutes' ? 'HTTPRoute' : 'GRPCRoute',
        metadata: { name, namespace, generation: 1, creationTimestamp: new Date('2026-01-01T00:00:00Z') },
        spec: { parentRefs: [{ group: '', kind: 'Service', name: pick(r, ['s0', 's1', 's9']) }], rules: [{ backendRefs: [{ name: pick(r, ['s0', 's2']), port: 80 }] }] },
      };
    case 'referenceGrants':
      return { apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'ReferenceGrant', metadata: { name, namespace }, spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: pick(r, NAMESPACES) }], to: [{ group: '', kind: 'Service' }] } };
    case 'trafficPolicies':
      return {
        apiVersion: 'networking.mesh.io/v1alpha1',
        kind: 'TrafficPolicy',
        metadata: { name, namespace, generation: 1, creationTimestamp: new Date(`2026-01-0${1 + Math.floor(r() * 5)}T00:00:00Z`) },
        spec: { targetRefs: [{ kind: 'Service', name: pick(r, ['s0', 's1']) }], timeout: pick(r, ['1s', 'bad']) },
      };
  }
}

const NAMES: Record<ModelKind, string[]> = {
  namespaces: NAMESPACES,
  pods: ['p0', 'p1', 'p2', 'p3', 'p4'],
  services: ['s0', 's1', 's2', 'wp'],
  endpointSlices: ['s0-x', 's1-x', 's1-y', 's2-x', 'wp-x', 'wp2-x'],
  gateways: ['wp', 'wp2'],
  authorizationPolicies: ['ap0', 'ap1', 'ap2'],
  peerAuthentications: ['default', 'pa1', 'pa2'],
  httpRoutes: ['r0'],
  grpcRoutes: ['g0'],
  referenceGrants: ['rg'],
  trafficPolicies: ['tp0', 'tp1'],
};
// Pods and services change most, as in a cluster.
const WEIGHTS: [ModelKind, number][] = [
  ['pods', 30],
  ['services', 8],
  ['endpointSlices', 8],
  ['authorizationPolicies', 8],
  // These three recompute everything, which would hide a missed dependency: rarer.
  ['namespaces', 1],
  ['gateways', 1],
  ['peerAuthentications', 2],
  ['httpRoutes', 1],
  ['grpcRoutes', 1],
  ['referenceGrants', 1],
  ['trafficPolicies', 1],
];
const TOTAL = WEIGHTS.reduce((a, [, w]) => a + w, 0);
function randomKind(r: Rand): ModelKind {
  let x = r() * TOTAL;
  for (const [k, w] of WEIGHTS) if ((x -= w) < 0) return k;
  return 'pods';
}

const sorted = <V>(m: Map<string, V>): [string, V][] => [...m].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

function snapshotOf(held: Map<ModelKind, Map<string, KubeObject>>): ClusterSnapshot {
  const list = <T>(k: ModelKind): T[] => [...held.get(k)!.values()] as T[];
  return {
    namespaces: list('namespaces'),
    pods: list('pods'),
    services: list('services'),
    endpointSlices: list('endpointSlices'),
    nodes: [],
    gateways: list('gateways'),
    httpRoutes: list('httpRoutes'),
    grpcRoutes: list('grpcRoutes'),
    referenceGrants: list('referenceGrants'),
    trafficPolicies: list('trafficPolicies'),
    authorizationPolicies: list('authorizationPolicies'),
    peerAuthentications: list('peerAuthentications'),
  };
}

const PUBLISHED = ['workloads', 'services', 'authorizations', 'routes', 'l7Authorizations'] as const;
const ALL = [...PUBLISHED, 'policyStatus', 'waypoints', 'routeStatus', 'trafficPolicyStatus'] as const;

function runSeed(seed: number, steps: number): string | null {
  const r = rng(seed);
  const model = new IncrementalModel(OPTS);
  const held = new Map<ModelKind, Map<string, KubeObject>>(MODEL_KINDS.map((k) => [k, new Map()]));
  // What a config store would hold: updated only by the names commit() reports.
  const mirror = Object.fromEntries(PUBLISHED.map((k) => [k, new Map<string, unknown>()])) as Record<(typeof PUBLISHED)[number], Map<string, unknown>>;
  const log: string[] = [];
  for (let step = 0; step < steps; step++) {
    const batch = 1 + Math.floor(r() * 4);
    for (let b = 0; b < batch; b++) {
      const kind = randomKind(r);
      // PeerAuthentications gather in few namespaces, so that several select the same workloads.
      const namespace = kind === 'namespaces' ? '' : pick(r, kind === 'peerAuthentications' ? ['ns0', 'ns0', 'mesh-system'] : NAMESPACES);
      const name = pick(r, NAMES[kind]);
      const key = kind === 'namespaces' ? name : `${namespace}/${name}`;
      const objs = held.get(kind)!;
      if (objs.has(key) && maybe(r, 0.25)) {
        model.delete(kind, objs.get(key)!);
        objs.delete(key);
        log.push(`delete ${kind} ${key}`);
      } else {
        const obj = randomObject(r, kind, namespace, name);
        obj.metadata = { ...obj.metadata, resourceVersion: String(++version) };
        model.set(kind, obj);
        objs.set(key, obj);
        log.push(`set ${kind} ${key} ${JSON.stringify(obj.metadata?.labels ?? {})} ${JSON.stringify(obj.spec ?? '')}`);
      }
    }
    const changes = model.commit();
    const want: MeshModel = buildModel(snapshotOf(held), OPTS);
    const got = model.model;
    for (const k of PUBLISHED) {
      for (const name of changes[k]) {
        const v = got[k].get(name);
        if (v === undefined) mirror[k].delete(name);
        else mirror[k].set(name, v);
      }
    }
    for (const k of ALL) {
      const a = JSON.stringify(sorted(got[k] as Map<string, unknown>), replacer);
      const b = JSON.stringify(sorted(want[k] as Map<string, unknown>), replacer);
      if (a !== b) return `seed ${seed}, step ${step}: model.${k} differs from buildModel's\n  incremental: ${a.slice(0, 1500)}\n  reference:   ${b.slice(0, 1500)}\n  events:\n    ${log.slice(-12).join('\n    ')}`;
    }
    for (const k of PUBLISHED) {
      const a = JSON.stringify(sorted(mirror[k]), replacer);
      const b = JSON.stringify(sorted(want[k] as Map<string, unknown>), replacer);
      if (a !== b) return `seed ${seed}, step ${step}: a store that applied only the reported names holds other ${k}\n  store: ${a.slice(0, 1500)}\n  model: ${b.slice(0, 1500)}\n  events:\n    ${log.slice(-12).join('\n    ')}`;
    }
  }
  return null;
}

function replacer(_k: string, v: unknown): unknown {
  if (v instanceof Uint8Array) return [...v];
  if (v instanceof Date) return v.toISOString();
  return v;
}

test('incremental-model-equals-a-full-rebuild-after-random-change-sequences', (t) => {
  const only = process.env.MODEL_SEED;
  const seeds = only ? [Number(only)] : Array.from({ length: 40 }, (_, i) => i + 1);
  for (const seed of seeds) {
    const failure = runSeed(seed, 150);
    if (failure) return t.fail(failure);
  }
  t.pass();
});

test('incremental-model-a-pod-change-at-scale-touches-only-that-pod', (t) => {
  const snap = bigSnapshot(2000, 200, 40);
  const model = new IncrementalModel(OPTS);
  for (const k of MODEL_KINDS) for (const o of (snap[k] ?? []) as KubeObject[]) model.set(k, o);
  const first = model.commit();
  t.true(first.full);
  t.is(first.workloads.size, 2000);
  // The label takes a meshed pod out of the mesh: its Workload changes, and nothing else is touched.
  const old = snap.pods[1]!;
  const changed = { ...old, metadata: { ...old.metadata!, labels: { ...old.metadata!.labels, 'mesh.io/dataplane-mode': 'none' } } };
  model.set('pods', changed);
  const c = model.commit();
  t.false(c.full);
  t.deepEqual([...c.workloads], ['Kubernetes//v1/Pod/ns1/app1-5f6b7c8d9-1']);
  t.is(c.services.size, 0);
  t.is(model.model.workloads.get('Kubernetes//v1/Pod/ns1/app1-5f6b7c8d9-1')?.tunnelProtocol, 'NONE');
  snap.pods[1] = changed;
  t.deepEqual(sorted(model.model.workloads).map(([k, w]) => [k, JSON.stringify(w, replacer)]), sorted(buildModel(snap, OPTS).workloads).map(([k, w]) => [k, JSON.stringify(w, replacer)]));
});

test('incremental-model-a-younger-peer-authentication-that-starts-selecting-a-taken-workload-is-conflicted', (t) => {
  // Only the younger policy's "selects some workload" changes when the pod arrives: the status
  // must follow it although nothing else about the policies did.
  const model = new IncrementalModel(OPTS);
  const objs = {
    namespaces: [ns('shop', { 'mesh.io/dataplane-mode': 'ambient' })],
    peerAuthentications: [pa('shop', 'older', { selector: { matchLabels: { app: 'a' } }, mtls: { mode: 'STRICT' } }, '2026-01-01T00:00:00Z'), pa('shop', 'younger', { selector: { matchLabels: { ver: '1' } }, mtls: { mode: 'PERMISSIVE' } }, '2026-01-02T00:00:00Z')],
    pods: [pod('shop', 'first', { labels: { app: 'a', ver: '2' } })],
  };
  for (const [k, list] of Object.entries(objs) as [ModelKind, KubeObject[]][]) for (const o of list) model.set(k, o);
  model.commit();
  const enforced = () => model.model.policyStatus.get('PeerAuthentication/shop/younger')?.conditions.find((c) => c.type === 'Enforced')?.reason;
  t.is(enforced(), 'Enforced');
  const second = pod('shop', 'second', { labels: { app: 'a', ver: '1' } });
  model.set('pods', second);
  t.false(model.commit().full);
  t.is(enforced(), 'Conflicted');
  const want = buildModel({ ...snapshot({ namespaces: objs.namespaces, peerAuthentications: objs.peerAuthentications, pods: [...objs.pods, second] }) }, OPTS);
  t.deepEqual(sorted(model.model.policyStatus), sorted(want.policyStatus));
});

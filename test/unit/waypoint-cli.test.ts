// `meshctl waypoint` without a cluster: its command line (run as a user runs it), the Gateway it
// generates, the list/status/delete text, the post-install check fed by the controller's model,
// and ztunnel-config's WAYPOINT column.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as k8s from '@kubernetes/client-node';
import test from 'ava';
import * as yaml from 'js-yaml';
import { buildModel, type ClusterSnapshot, type KubeObject, type WaypointUse } from '../../src/controller/model/index.ts';
import {
  checkWaypointName,
  deletionWarning,
  generateYaml,
  listRows,
  parseDuration,
  reconciled,
  renderList,
  renderStatus,
  renderWaitTimeout,
  waypointChecks,
} from '../../src/cli/waypoint.ts';
import { contextNamespace, loadKubeConfig } from '../../src/cli/kube.ts';
import { type DumpedService, waypointName } from '../../src/cli/ztunnel-config-format.ts';

const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));

function meshctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(MESHCTL, args, { env: { ...process.env, NO_COLOR: '1' } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

// ---- command line -----------------------------------------------------------------------------

test('generate prints the waypoint Gateway, ready for kubectl apply', async (t) => {
  const r = await meshctl('waypoint', 'generate', '-n', 'shop', '--name', 'reviews-wp', '--for', 'all');
  t.is(r.code, 0, r.stderr);
  t.is(
    r.stdout,
    [
      'apiVersion: gateway.networking.k8s.io/v1',
      'kind: Gateway',
      'metadata:',
      '  name: reviews-wp',
      '  namespace: shop',
      '  labels:',
      '    mesh.io/waypoint-for: all',
      'spec:',
      '  gatewayClassName: mesh-waypoint',
      '  listeners:',
      '    - name: mesh',
      '      port: 15008',
      '      protocol: HBONE',
      '',
    ].join('\n'),
  );
});

test('generate defaults: name "waypoint", namespace "default", traffic type service', async (t) => {
  const r = await meshctl('wp', 'generate');
  t.is(r.code, 0, r.stderr);
  t.like(yaml.load(r.stdout), { metadata: { name: 'waypoint', namespace: 'default', labels: { 'mesh.io/waypoint-for': 'service' } } });
});

test('bad arguments are usage errors (exit 2) that say what is expected', async (t) => {
  const badFor = await meshctl('waypoint', 'apply', '--for', 'pods');
  t.is(badFor.code, 2);
  t.regex(badFor.stderr, /argument 'pods' is invalid\. Allowed choices are service, workload, all, none/);
  const badName = await meshctl('waypoint', 'generate', '--name', 'My_Waypoint');
  t.is(badName.code, 2);
  t.regex(badName.stderr, /"My_Waypoint" is not a DNS-1123 label/);
  const badTimeout = await meshctl('waypoint', 'apply', '--wait', '--timeout', 'soon');
  t.is(badTimeout.code, 2);
  t.regex(badTimeout.stderr, /expected a duration such as 60s/);
  const both = await meshctl('waypoint', 'list', '--bogus');
  t.is(both.code, 2);
});

test('delete needs names or --all, not neither', async (t) => {
  const r = await meshctl('waypoint', 'delete', '-n', 'shop');
  t.is(r.code, 1);
  t.regex(r.stderr, /name the waypoints to delete, or pass --all/);
});

test('every waypoint command documents itself', async (t) => {
  for (const sub of ['apply', 'generate', 'list', 'status', 'delete']) {
    const r = await meshctl('waypoint', sub, '--help');
    t.is(r.code, 0, sub);
    t.regex(r.stdout, /Examples:/, `${sub} --help has examples`);
  }
});

test('parseDuration reads Go-style durations and bare seconds', (t) => {
  const cases: [string, number | undefined][] = [
    ['60s', 60_000],
    ['2m', 120_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['1h', 3_600_000],
    ['1.5s', 1500],
    ['45', 45_000],
    ['', undefined],
    ['soon', undefined],
    ['10 s', undefined],
    ['-5s', undefined],
  ];
  for (const [text, ms] of cases) t.is(parseDuration(text), ms, text);
});

test('checkWaypointName accepts DNS-1123 labels only', (t) => {
  t.is(checkWaypointName('waypoint'), undefined);
  t.is(checkWaypointName('reviews-v2-wp'), undefined);
  t.truthy(checkWaypointName('-wp'));
  t.truthy(checkWaypointName('wp.shop'));
  t.truthy(checkWaypointName('a'.repeat(64)));
});

// ---- list, status, delete ---------------------------------------------------------------------

function gateway(namespace: string, name: string, opts: { cls?: string; forLabel?: string; programmed?: 'True' | 'False'; pending?: boolean } = {}): KubeObject {
  const conditions = opts.pending
    ? [{ type: 'Programmed', status: 'Unknown', reason: 'Pending', message: 'Waiting for controller' }]
    : opts.programmed
      ? [
          { type: 'Accepted', status: 'True', reason: 'Accepted', message: '' },
          { type: 'Programmed', status: opts.programmed, reason: opts.programmed === 'True' ? 'Programmed' : 'Pending', message: opts.programmed === 'True' ? '' : 'deployment has 0/1 ready replicas' },
        ]
      : [];
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace, labels: opts.forLabel ? { 'mesh.io/waypoint-for': opts.forLabel } : {} },
    spec: { gatewayClassName: opts.cls ?? 'mesh-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
    status: { conditions },
  };
}

function use(gw: string, users: string[], problem = ''): WaypointUse {
  const [ns, name] = gw.split('/');
  return { gateway: gw, hostname: `${ns}/${name}.${ns}.svc.cluster.local`, found: !problem.includes('does not exist'), ready: problem === '', problem, users, policies: [] };
}

test('list: waypoints only, sorted, with programmed, traffic type and users by kind', (t) => {
  const gws = [
    gateway('shop', 'waypoint', { programmed: 'True', forLabel: 'service' }),
    gateway('blog', 'wp', { forLabel: 'all', pending: true }),
    gateway('shop', 'ingress', { cls: 'nginx' }),
  ];
  const uses = new Map([['shop/waypoint', use('shop/waypoint', ['Namespace/shop', 'Pod/shop/a', 'Pod/shop/b', 'Service/shop/web'])]]);
  const rows = listRows(gws, uses);
  t.deepEqual(
    rows.map((r) => r.name),
    ['wp', 'waypoint'],
  );
  t.is(
    renderList(rows, true),
    [
      'NAMESPACE  NAME      PROGRAMMED  TRAFFIC TYPE  USED BY',
      'blog       wp        Unknown     all           -',
      'shop       waypoint  True        service       1 namespace, 1 service, 2 pods',
      '',
    ].join('\n'),
  );
  t.regex(renderList(rows, false), /^NAME {6}PROGRAMMED/);
});

test('status: conditions, deployment, service, and every user refused with the reason', (t) => {
  const text = renderStatus({
    gateway: gateway('shop', 'waypoint', { programmed: 'True', forLabel: 'service' }),
    deployments: [{ name: 'waypoint', replicas: 2, ready: 2 }],
    service: { name: 'shop/waypoint', clusterIP: '10.96.0.30', endpoints: 2, readyEndpoints: 0 },
    use: use('shop/waypoint', ['Namespace/shop', 'Service/shop/web'], 'waypoint Service shop/waypoint has no ready endpoint'),
    problem: 'waypoint Service shop/waypoint has no ready endpoint',
  });
  t.is(
    text,
    [
      'Waypoint shop/waypoint  (class mesh-waypoint, traffic type service)',
      '',
      'Gateway conditions:',
      '  TYPE        STATUS  REASON      MESSAGE',
      '  Accepted    True    Accepted    -',
      '  Programmed  True    Programmed  -',
      '',
      'Deployment waypoint: 2/2 ready',
      'Service shop/waypoint: 10.96.0.30, 0/2 endpoints ready',
      '',
      'Traffic: REFUSED (fail closed) — waypoint Service shop/waypoint has no ready endpoint',
      '',
      'Users (1 namespace, 1 service):',
      '  KIND       NAMESPACE  NAME  TRAFFIC',
      '  Namespace  shop       -     refused',
      '  Service    shop       web   refused',
      '',
    ].join('\n'),
  );
});

test('status of a ready waypoint nobody uses says how to enrol', (t) => {
  const text = renderStatus({ gateway: gateway('shop', 'waypoint', { programmed: 'True' }), deployments: [], service: undefined, use: undefined, problem: '' });
  t.regex(text, /Traffic: served/);
  t.regex(text, /Users: none \(label a namespace, service or pod mesh\.io\/use-waypoint=waypoint/);
});

test('the CRD default status is not a controller verdict', (t) => {
  t.false(reconciled(gateway('shop', 'wp', { pending: true })));
  t.false(reconciled(gateway('shop', 'wp')));
  t.true(reconciled(gateway('shop', 'wp', { programmed: 'False' })));
  const text = renderWaitTimeout(gateway('shop', 'wp', { pending: true }), 'shop/wp', 1500, 'Gateway shop/wp is not Programmed (Programmed=Unknown)');
  t.regex(text, /^waypoint shop\/wp was not Programmed within 1\.5s\n/);
  t.regex(text, /no controller has reconciled it yet/);
  t.regex(text, /until it is ready, traffic of whatever uses it is refused \(fail closed\): Gateway shop\/wp is not Programmed/);
});

test('delete warns about each user still labelled, with the command that unlabels it', (t) => {
  t.is(deletionWarning('shop/waypoint', undefined), undefined);
  const w = deletionWarning('shop/waypoint', use('shop/waypoint', ['Namespace/shop', 'Pod/shop/a', 'Service/shop/web']))!;
  t.regex(w, /^warning: 1 namespace, 1 service, 1 pod still use waypoint shop\/waypoint: their traffic is now refused \(fail closed\)/);
  t.regex(w, /\n {2}Pod\/shop\/a\n/);
  t.regex(w, /kubectl label namespace shop mesh\.io\/use-waypoint- mesh\.io\/use-waypoint-namespace-/);
  t.regex(w, /kubectl -n shop label service web mesh\.io\/use-waypoint- mesh\.io\/use-waypoint-namespace-/);
});

// ---- meshctl check --post-install, judged by the controller's model ----------------------------

function ns(name: string, labels: Record<string, string> = {}): k8s.V1Namespace {
  return { metadata: { name, labels } };
}

function pod(namespace: string, name: string, ip: string, labels: Record<string, string> = {}): k8s.V1Pod {
  return { metadata: { name, namespace, labels }, spec: { containers: [] }, status: { phase: 'Running', podIP: ip } };
}

function svc(namespace: string, name: string, labels: Record<string, string> = {}): k8s.V1Service {
  return { metadata: { name, namespace, labels }, spec: { clusterIP: '10.96.0.9', ports: [{ port: 80 }] } };
}

function slice(namespace: string, service: string, ready: boolean): k8s.V1EndpointSlice {
  return { addressType: 'IPv4', metadata: { name: `${service}-x`, namespace, labels: { 'kubernetes.io/service-name': service } }, endpoints: [{ addresses: ['10.244.1.30'], conditions: { ready } }] };
}

function snapshot(over: Partial<ClusterSnapshot>): ClusterSnapshot {
  return { namespaces: [], pods: [], services: [], endpointSlices: [], nodes: [], gateways: [], httpRoutes: [], authorizationPolicies: [], peerAuthentications: [], ...over };
}

test('check: each unready waypoint fails, naming the pods, services and namespaces refused and why', (t) => {
  const snap = snapshot({
    namespaces: [ns('shop', { 'mesh.io/dataplane-mode': 'ambient', 'mesh.io/use-waypoint': 'waypoint' }), ns('blog', { 'mesh.io/dataplane-mode': 'ambient' }), ns('infra')],
    pods: [pod('shop', 'web-1', '10.244.1.7'), pod('blog', 'api-1', '10.244.1.8', { 'mesh.io/use-waypoint': 'gone' })],
    services: [svc('blog', 'api', { 'mesh.io/use-waypoint': 'shared', 'mesh.io/use-waypoint-namespace': 'infra' })],
    gateways: [gateway('shop', 'waypoint', { programmed: 'False', forLabel: 'all' }), gateway('infra', 'shared', { programmed: 'True' })],
    endpointSlices: [slice('infra', 'shared', true)],
  });
  const results = waypointChecks(buildModel(snap).waypoints, true);
  t.deepEqual(
    results.map((r) => [r.name, r.status]),
    [
      ['waypoint blog/gone', 'fail'],
      ['waypoint shop/waypoint', 'fail'],
    ],
  );
  t.is(results[0]!.detail, 'Gateway blog/gone does not exist: traffic is refused (fail closed) for Pod/blog/api-1');
  t.regex(results[0]!.fix!, /meshctl waypoint apply -n blog --name gone/);
  t.is(results[1]!.detail, 'Gateway shop/waypoint is not Programmed (Programmed=False): traffic is refused (fail closed) for Namespace/shop, Pod/shop/web-1');
  t.regex(results[1]!.fix!, /meshctl waypoint status -n shop --name waypoint/);
});

test('check: ready waypoints pass; without the Gateway API CRDs, the fix installs them', (t) => {
  const ready = snapshot({
    namespaces: [ns('shop', { 'mesh.io/use-waypoint': 'waypoint' })],
    gateways: [gateway('shop', 'waypoint', { programmed: 'True' })],
    endpointSlices: [slice('shop', 'waypoint', true)],
  });
  t.deepEqual(waypointChecks(buildModel(ready).waypoints, true), [{ name: 'waypoints', status: 'ok', detail: '1 waypoint in use, all ready (shop/waypoint)' }]);
  t.deepEqual(waypointChecks(buildModel(snapshot({})).waypoints, true), [{ name: 'waypoints', status: 'ok', detail: 'no namespace, service or pod uses a waypoint' }]);
  const noCrds = waypointChecks(buildModel({ ...ready, gateways: [] }).waypoints, false);
  t.is(noCrds[0]!.detail, 'the Gateway API CRDs are not installed, so Gateway shop/waypoint cannot exist: traffic is refused (fail closed) for Namespace/shop');
  t.regex(noCrds[0]!.fix!, /^install the Gateway API CRDs: kubectl apply -f /);
});

// ---- ztunnel-config's WAYPOINT column ----------------------------------------------------------

const svcOf = (namespace: string, name: string, vip: string): DumpedService =>
  ({ name, namespace, hostname: `${name}.${namespace}.svc.cluster.local`, addresses: [{ network: '', address: vip }], ports: [], subjectAltNames: [], waypoint: null }) as unknown as DumpedService;

test('WAYPOINT column: name in the same namespace, namespace/name across, None, and missing ones marked', (t) => {
  const services = [svcOf('shop', 'waypoint', '10.96.0.30'), svcOf('infra', 'shared', '10.96.0.31')];
  const byHost = (hostname: string) => ({ hostname, hboneMtlsPort: 15008 });
  t.is(waypointName(null, services, 'shop'), 'None');
  t.is(waypointName(byHost('shop/waypoint.shop.svc.cluster.local'), services, 'shop'), 'waypoint');
  t.is(waypointName(byHost('infra/shared.infra.svc.cluster.local'), services, 'shop'), 'infra/shared');
  t.is(waypointName(byHost('shop/gone.shop.svc.cluster.local'), services, 'shop'), 'gone (missing)');
  t.is(waypointName(byHost('infra/gone.infra.svc.cluster.local'), services, 'shop'), 'infra/gone (missing)');
  t.is(waypointName({ address: { network: '', address: '10.96.0.31' }, hboneMtlsPort: 15008 }, services, 'shop'), 'infra/shared');
  t.is(waypointName({ address: { network: '', address: '10.96.0.99' }, hboneMtlsPort: 15008 }, services, 'shop'), '10.96.0.99');
});

test('generateYaml round-trips to the Gateway apply sends', (t) => {
  t.deepEqual(yaml.load(generateYaml({ name: 'w', namespace: 'n', trafficType: 'none' })), {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'w', namespace: 'n', labels: { 'mesh.io/waypoint-for': 'none' } },
    spec: { gatewayClassName: 'mesh-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  });
});

// ---- which kubeconfig -------------------------------------------------------------------------

const KUBECONFIG_TEXT = (server: string) => `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: '${server}'}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: main, context: {cluster: c, user: u, namespace: shop}}, {name: other, context: {cluster: c, user: u}}]
current-context: main
`;

test('kubeconfig: --kubeconfig, then $KUBECONFIG, then ~/.kube/config, then the local cluster; --context picks one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-kubeconfig-'));
  const saved = { KUBECONFIG: process.env.KUBECONFIG, HOME: process.env.HOME };
  t.teardown(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const file = (name: string, server: string) => {
    writeFileSync(join(dir, name), KUBECONFIG_TEXT(server));
    return join(dir, name);
  };
  const state = join(dir, 'state');
  mkdirSync(state);
  mkdirSync(join(dir, 'home', '.kube'), { recursive: true });
  process.env.HOME = join(dir, 'home');
  delete process.env.KUBECONFIG;
  const server = async (o: Parameters<typeof loadKubeConfig>[0]) => (await loadKubeConfig(o)).getCurrentCluster()?.server;

  const none = await t.throwsAsync(loadKubeConfig({ stateDir: state }));
  t.like(none, { code: 'MESH_ERR_NO_KUBECONFIG' });
  t.regex(none!.message, /no kubeconfig: pass --kubeconfig, set KUBECONFIG, or start the local cluster with `meshctl dev up`/);

  file('state/kubeconfig', 'https://local:6443');
  t.is(await server({ stateDir: state }), 'https://local:6443');
  writeFileSync(join(dir, 'home', '.kube', 'config'), KUBECONFIG_TEXT('https://home:6443'));
  t.is(await server({ stateDir: state }), 'https://home:6443');
  process.env.KUBECONFIG = file('env', 'https://env:6443');
  t.is(await server({ stateDir: state }), 'https://env:6443');
  t.is(await server({ stateDir: state, preferLocal: true }), 'https://local:6443', 'check --post-install asks the cluster of its mesh.json');
  t.is(await server({ stateDir: state, kubeconfig: file('flag', 'https://flag:6443'), preferLocal: true }), 'https://flag:6443');

  const kc = await loadKubeConfig({ stateDir: state });
  t.is(contextNamespace(kc), 'shop');
  t.is(contextNamespace(await loadKubeConfig({ stateDir: state, context: 'other' })), 'default');
  const bad = await t.throwsAsync(loadKubeConfig({ stateDir: state, context: 'nope' }));
  t.regex(bad!.message, /has no context "nope" \(it has: main, other\)/);
});

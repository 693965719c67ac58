// Waypoints end to end, as a user runs them: a Gateway of class mesh-waypoint in namespace shop
// (deployed by the controller as a Deployment, Service and ServiceAccount it owns), the namespace
// labelled to use it, an HTTPRoute on Service web, and clients in pods whose connections ztunnel
// captures and sends over HBONE to the waypoint, which routes each request to a pod over HBONE
// again. Two nodes, one mesh shared by the tests in order; real kubectl, real Prometheus.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { startMesh, waitFor, type Mesh } from '../helpers/mesh.ts';
import { GRPC_CALLS, GRPC_SERVER, HTTP_ECHO_SERVER, HTTP_REQUESTS } from '../helpers/scripts.ts';
import { requireRoot } from '../helpers/topology.ts';
import { HOSTFS_IMAGE, WAYPOINT_IMAGE, waypointImageCurrent } from '../../src/local/waypoints.ts';
import { fileURLToPath } from 'node:url';

const NODE = process.execPath;
const run = promisify(execFile);
const GATEWAY_API = fileURLToPath(new URL('../../daemonset/chart/files/gateway-api-crds.yaml', import.meta.url));
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
// The gRPC pods run host commands that require @grpc/grpc-js from this checkout.
const NODE_PATH = fileURLToPath(new URL('../../node_modules', import.meta.url));

let mesh: Mesh;
let webVip = '';
let v1Ip = '';
let v2Ip = '';

const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

async function apply(name: string, yaml: string): Promise<string> {
  const f = `${mesh.stateDir}/${name}.yaml`;
  writeFileSync(f, yaml);
  await mesh.kubectl('apply', '-f', f);
  return f;
}

interface Result {
  counts: Record<string, number>;
  errors: Record<string, number>;
  p50: number;
  p99: number;
  max: number;
  samples: { status: number; headers: Record<string, string>; body: string }[];
}

let clients = 0;
/** Runs HTTP_REQUESTS in a new pod of `ns` and returns its RESULT. */
function requests(ns: string, spec: { url: string; n: number; method?: string; headers?: Record<string, string>; concurrency?: number }, node = 'node2'): Promise<Result> {
  return runScript<Result>(ns, HTTP_REQUESTS, [JSON.stringify(spec)], node);
}

/** Runs `script` with `args` in a new pod of `ns` and returns the JSON after its "RESULT " line. */
async function runScript<T>(ns: string, script: string, args: string[], node = 'node2'): Promise<T> {
  const name = `client-${++clients}`;
  await mesh.core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { name }, spec: { nodeName: node, restartPolicy: 'Never', containers: [{ name: 'main', image: 'local', command: [NODE, '-e', script, ...args], env: [{ name: 'NODE_PATH', value: NODE_PATH }] }] } } as k8s.V1Pod,
  });
  const log = `${mesh.stateDir}/logs/${ns}_${name}_main.log`;
  const line = await waitFor(`${ns}/${name} to finish`, () => {
    try {
      return readFileSync(log, 'utf8').split('\n').find((l) => l.startsWith('RESULT '));
    } catch {
      return undefined;
    }
  }, 90_000);
  await mesh.core.deleteNamespacedPod({ name, namespace: ns, gracePeriodSeconds: 0 }).catch(() => undefined);
  return JSON.parse(line.slice('RESULT '.length)) as T;
}

const count = (r: Result, prefix: string) => Object.entries(r.counts).filter(([k]) => k.startsWith(prefix)).reduce((a, [, n]) => a + n, 0);

async function podIp(ns: string, name: string): Promise<string> {
  return waitFor(`${ns}/${name} running`, async () => {
    const p = await mesh.core.readNamespacedPod({ name, namespace: ns });
    return p.status?.podIP && p.status.phase === 'Running' ? p.status.podIP : undefined;
  }, 30_000);
}

async function gatewayCondition(type: string): Promise<string | undefined> {
  const { stdout } = await mesh.kubectl('get', 'gateway', '-n', 'shop', 'waypoint', '-o', `jsonpath={.status.conditions[?(@.type=="${type}")].status}`);
  return stdout.trim() || undefined;
}

let waypointImageBuilt = false;

test.before(async (t) => {
  if (!(await requireRoot(t))) return;
  waypointImageBuilt = (await waypointImageCurrent()).current;
  mesh = await startMesh({ teardown: (fn) => cleanups.push(fn) }, { ztunnel: true });
  await mesh.kubectl('apply', '-f', GATEWAY_API);
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  await mesh.core.createNamespace({ body: { metadata: { name: 'plain' } } });
  const pod = (name: string, labels: Record<string, string>, node: string) =>
    mesh.core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name, labels }, spec: { nodeName: node, containers: [{ name: 'main', image: 'local', command: [NODE, '-e', HTTP_ECHO_SERVER, name] }] } } as k8s.V1Pod });
  await pod('web-v1', { app: 'web', version: 'v1' }, 'node1');
  await pod('web-v2', { app: 'web', version: 'v2' }, 'node2');
  await pod('mirror', { app: 'mirror' }, 'node1');
  const svc = (name: string, selector: Record<string, string>) =>
    mesh.core.createNamespacedService({ namespace: 'shop', body: { metadata: { name }, spec: { selector, ports: [{ name: 'http', port: 80, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
  const web = await svc('web', { app: 'web' });
  await svc('web-v1', { app: 'web', version: 'v1' });
  await svc('web-v2', { app: 'web', version: 'v2' });
  await svc('mirror', { app: 'mirror' });
  webVip = web.spec!.clusterIP!;
  v1Ip = await podIp('shop', 'web-v1');
  v2Ip = await podIp('shop', 'web-v2');
});

test.serial('waypoint-deploy: a Gateway of class mesh-waypoint becomes an owned Deployment, Service and ServiceAccount, and is Programmed', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const started = Date.now();
  await apply('waypoint', 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\nspec:\n  gatewayClassName: mesh-waypoint\n  listeners:\n  - {name: mesh, port: 15008, protocol: HBONE}\n');
  await mesh.kubectl('label', 'namespace', 'shop', 'mesh.io/use-waypoint=waypoint');
  await waitFor('the waypoint Gateway to be Programmed', async () => ((await gatewayCondition('Programmed')) === 'True' ? true : undefined), 60_000);
  t.log(`Gateway applied → Programmed in ${Date.now() - started} ms`);
  t.is(await gatewayCondition('Accepted'), 'True');
  for (const kind of ['deployment', 'service', 'serviceaccount']) {
    const { stdout } = await mesh.kubectl('get', kind, '-n', 'shop', 'waypoint', '-o', 'jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}');
    t.is(stdout, 'Gateway/waypoint', `${kind} owned by the Gateway`);
  }
  const { stdout: addr } = await mesh.kubectl('get', 'gateway', '-n', 'shop', 'waypoint', '-o', 'jsonpath={.status.addresses[*].value}');
  t.regex(addr, /waypoint\.shop\.svc\.cluster\.local/);
  const { stdout: cls } = await mesh.kubectl('get', 'gatewayclass', 'mesh-waypoint', '-o', 'jsonpath={.status.conditions[?(@.type=="Accepted")].status}');
  t.is(cls, 'True');
  // The pod runs the waypoint image when `make images` built it from this commit, else the checkout on the host's runtime.
  const { stdout: image } = await mesh.kubectl('get', 'deployment', '-n', 'shop', 'waypoint', '-o', 'jsonpath={.spec.template.spec.containers[0].image}');
  t.is(image, waypointImageBuilt ? WAYPOINT_IMAGE : HOSTFS_IMAGE);
  t.log(`the waypoint pod runs ${image}`);
});

test.serial('waypoint-routing: without a route the Service answers through the waypoint; a 90/10 split lands within ±3 %; a header match goes to v2 only', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const plain = await requests('shop', { url: `http://${webVip}/`, n: 20 });
  t.is(count(plain, '200 '), 20, JSON.stringify(plain));
  t.truthy(plain.samples[0]?.headers['x-seen-headers'], 'the backend answered');
  t.regex(plain.samples[0]!.headers['x-seen-headers']!, /traceparent/, 'the waypoint propagates a W3C traceparent');

  await apply(
    'route',
    `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs:
  - {group: "", kind: Service, name: web, port: 80}
  rules:
  - matches:
    - headers: [{name: x-version, value: v2}]
    backendRefs: [{name: web-v2, port: 80}]
  - matches:
    - path: {type: PathPrefix, value: /flaky}
    retry: {attempts: 2, codes: [503]}
    backendRefs: [{name: web-v1, port: 80}]
  - matches:
    - path: {type: PathPrefix, value: /slow}
    timeouts: {request: 200ms}
    backendRefs: [{name: web-v1, port: 80}]
  - matches:
    - path: {type: PathPrefix, value: /mirror}
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: mirror, port: 80}}
    backendRefs: [{name: web-v1, port: 80}]
  - backendRefs:
    - {name: web-v1, port: 80, weight: 90}
    - {name: web-v2, port: 80, weight: 10}
`,
  );
  await waitFor('the route to be Accepted', async () => {
    const { stdout } = await mesh.kubectl('get', 'httproute', '-n', 'shop', 'web', '-o', 'jsonpath={.status.parents[0].conditions[?(@.type=="Accepted")].status}');
    return stdout === 'True' ? true : undefined;
  }, 20_000);
  // The route reaches the waypoint over the config stream: wait until a header request lands on v2.
  await waitFor('the route in the waypoint', async () => (count(await requests('shop', { url: `http://${webVip}/`, n: 4, headers: { 'x-version': 'v2' } }), '200 web-v2') === 4 ? true : undefined), 30_000);

  const split = await requests('shop', { url: `http://${webVip}/`, n: 1000, concurrency: 8 });
  const v1 = count(split, '200 web-v1');
  const v2 = count(split, '200 web-v2');
  t.log(`1000 requests: v1 ${v1}, v2 ${v2}, p50 ${split.p50} ms, p99 ${split.p99} ms`);
  t.is(v1 + v2, 1000, JSON.stringify(split));
  t.true(Math.abs(v1 / 1000 - 0.9) <= 0.03, `v1 share ${v1 / 10} % (want 90 ± 3)`);

  const header = await requests('shop', { url: `http://${webVip}/`, n: 50, headers: { 'x-version': 'v2' } });
  t.is(count(header, '200 web-v2'), 50, JSON.stringify(header));
});

test.serial('waypoint-timeout-mirror: a 200 ms request timeout answers 504 in time; the mirror gets copies the client never sees', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const slow = await requests('shop', { url: `http://${webVip}/slow`, n: 5, concurrency: 1 });
  t.is(count(slow, '504'), 5, JSON.stringify(slow));
  t.true(slow.p50 >= 150 && slow.p50 <= 250, `504 after ${slow.p50} ms (want 200 ± 50)`);

  const mirrorLog = `${mesh.stateDir}/logs/shop_mirror_main.log`;
  const before = readFileSync(mirrorLog, 'utf8').split('\n').filter((l) => l.startsWith('REQ GET /mirror')).length;
  const m = await requests('shop', { url: `http://${webVip}/mirror`, n: 20, concurrency: 2 });
  t.is(count(m, '200 web-v1'), 20, `the client sees only the primary: ${JSON.stringify(m.counts)}`);
  const copies = await waitFor('the mirror to receive the copies', () => {
    const n = readFileSync(mirrorLog, 'utf8').split('\n').filter((l) => l.startsWith('REQ GET /mirror')).length - before;
    return n >= 20 ? n : undefined;
  }, 10_000);
  t.is(copies, 20);
});

test.serial('waypoint-authz: an L7 ALLOW of GET on the waypoint: POST gets 403 "RBAC: access denied", GET 200', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const policy = await apply(
    'get-only',
    'apiVersion: security.mesh.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: get-only, namespace: shop}\nspec:\n  targetRefs:\n  - {group: "", kind: Service, name: web}\n  action: ALLOW\n  rules:\n  - to:\n    - operation: {methods: [GET]}\n',
  );
  await waitFor('POST to be denied', async () => (count(await requests('shop', { url: `http://${webVip}/`, n: 2, method: 'POST' }), '403') === 2 ? true : undefined), 30_000);
  const post = await requests('shop', { url: `http://${webVip}/`, n: 10, method: 'POST' });
  t.is(count(post, '403 RBAC: access denied'), 10, JSON.stringify(post.counts));
  const get = await requests('shop', { url: `http://${webVip}/`, n: 10, headers: { 'x-version': 'v2' } });
  t.is(count(get, '200 web-v2'), 10, JSON.stringify(get.counts));
  const { stdout } = await mesh.kubectl('get', 'authorizationpolicy', '-n', 'shop', 'get-only', '-o', 'jsonpath={.status.conditions[*].message}');
  t.regex(stdout, /waypoint/i, `the status says where it is enforced: ${stdout}`);
  await mesh.kubectl('delete', '-f', policy);
});

test.serial('waypoint-retry: a retry turns a backend that fails 1 request in 2 into 100 % success', async (t) => {
  if (!mesh) return t.fail('no mesh');
  // Without a route (the pod dialled by its IP: through the waypoint, no Service's routes): every other request fails.
  const bare = await requests('shop', { url: `http://${v2Ip}:8080/flaky`, n: 40, concurrency: 1 });
  t.log(`without retry: ${JSON.stringify(bare.counts)}`);
  t.is(count(bare, '503'), 20, `the backend fails every other request: ${JSON.stringify(bare.counts)}`);
  const retried = await requests('shop', { url: `http://${webVip}/flaky`, n: 100, concurrency: 1 });
  t.is(count(retried, '200 web-v1'), 100, JSON.stringify(retried.counts));
});

test.serial('waypoint-fault: a TrafficPolicy aborting 50 % lands within ±5 % over 1,000 requests; an invalid one is refused naming the field', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const faulty = await mesh.core.createNamespacedService({ namespace: 'shop', body: { metadata: { name: 'faulty' }, spec: { selector: { app: 'web', version: 'v1' }, ports: [{ name: 'http', port: 80, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
  await apply('fault', 'apiVersion: networking.mesh.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: faulty, namespace: shop}\nspec:\n  targetRefs:\n  - {group: "", kind: Service, name: faulty}\n  faultInjection:\n    abort: {httpStatus: 503, percentage: 50}\n');
  const vip = faulty.spec!.clusterIP!;
  await waitFor('the fault to be in force', async () => (count(await requests('shop', { url: `http://${vip}/`, n: 20 }), '503') > 0 ? true : undefined), 30_000);
  const r = await requests('shop', { url: `http://${vip}/`, n: 1000, concurrency: 8 });
  const aborted = count(r, '503');
  t.log(`1000 requests with a 50 % abort: ${aborted} aborted, ${count(r, '200')} served`);
  t.is(aborted + count(r, '200 web-v1'), 1000, JSON.stringify(r.counts));
  t.true(Math.abs(aborted / 1000 - 0.5) <= 0.05, `aborted ${aborted / 10} % (want 50 ± 5)`);
  const bad = await t.throwsAsync(apply('bad-fault', 'apiVersion: networking.mesh.io/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: bad, namespace: shop}\nspec:\n  targetRefs:\n  - {group: "", kind: Service, name: faulty}\n  faultInjection:\n    abort: {httpStatus: 99, percentage: 150}\n'));
  t.regex(String((bad as Error & { stderr?: string }).stderr ?? bad?.message), /percentage|httpStatus/);
});

test.serial('waypoint-grpc: a GRPCRoute sends one method to v2 and the rest to v1', async (t) => {
  if (!mesh) return t.fail('no mesh');
  for (const [name, node] of [['grpc-v1', 'node1'], ['grpc-v2', 'node2']] as const) {
    await mesh.core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name, labels: { app: 'grpc', version: name.slice(5) } }, spec: { nodeName: node, containers: [{ name: 'main', image: 'local', command: [NODE, '-e', GRPC_SERVER, name], env: [{ name: 'NODE_PATH', value: NODE_PATH }] }] } } as k8s.V1Pod });
  }
  const grpcSvc = (name: string, selector: Record<string, string>) =>
    mesh.core.createNamespacedService({ namespace: 'shop', body: { metadata: { name }, spec: { selector, ports: [{ name: 'grpc', port: 80, appProtocol: 'grpc', targetPort: 8080 as unknown as k8s.IntOrString }] } } });
  const svc = await grpcSvc('grpc', { app: 'grpc' });
  await grpcSvc('grpc-v1', { app: 'grpc', version: 'v1' });
  await grpcSvc('grpc-v2', { app: 'grpc', version: 'v2' });
  await podIp('shop', 'grpc-v1');
  await podIp('shop', 'grpc-v2');
  await apply('grpc-route', 'apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: greeter, namespace: shop}\nspec:\n  parentRefs:\n  - {group: "", kind: Service, name: grpc, port: 80}\n  rules:\n  - matches:\n    - method: {service: demo.Greeter, method: Bye}\n    backendRefs: [{name: grpc-v2, port: 80}]\n  - backendRefs: [{name: grpc-v1, port: 80}]\n');
  const target = `${svc.spec!.clusterIP}:80`;
  type Counts = { counts: Record<string, number> };
  await waitFor('the GRPCRoute in the waypoint', async () => ((await runScript<Counts>('shop', GRPC_CALLS, [target, '2'])).counts['grpc-v2 Bye'] === 2 ? true : undefined), 30_000);
  const r = await runScript<Counts>('shop', GRPC_CALLS, [target, '20']);
  t.deepEqual(r.counts, { 'grpc-v1 Hello': 20, 'grpc-v2 Bye': 20 });
});

test.serial('waypoint-flows: meshctl flows --protocol http shows each request with method, path and status, beside its L4 flow', async (t) => {
  if (!mesh) return t.fail('no mesh');
  await requests('shop', { url: `http://${webVip}/flows-probe`, n: 5, concurrency: 1, headers: { 'x-version': 'v2' } });
  let last = '';
  const flows = await waitFor('L7 flows from the waypoint', async () => {
    const { stdout } = await run(MESHCTL, ['flows', '--state-dir', mesh.stateDir, '--protocol', 'http', '--last', '50', '-o', 'json'], { maxBuffer: 64 << 20 }).catch((e: Error & { stderr?: string; stdout?: string }) => {
      last = `${e.message} ${e.stderr ?? ''}`;
      throw e;
    });
    last = stdout.slice(-2000);
    const fs = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { flow: { l7?: { http?: { method: string; url: string; code: number } }; source?: { podName?: string }; IP?: unknown; reporter?: string } });
    const probes = fs.filter((f) => f.flow.l7?.http?.url === '/flows-probe');
    return probes.length >= 5 ? probes : undefined;
  }, 20_000).catch((e: Error) => {
    throw new Error(`${e.message}; meshctl said: ${last}`);
  });
  t.true(flows.every((f) => f.flow.l7?.http?.method === 'GET' && f.flow.l7.http.code === 200), JSON.stringify(flows[0]));
  t.regex(flows[0]!.flow.source?.podName ?? '', /^client-/, 'the client pod is named');
  // The L4 flow of the same connection (its client's ztunnel reports it when it closes) has the
  // same source address and port: the two join.
  const { ip, tcp } = flows[0]!.flow as unknown as { ip: { source: string }; tcp: { sourcePort: number } };
  const l4 = await waitFor('the L4 flow of the connection', async () => {
    const { stdout } = await run(MESHCTL, ['flows', '--state-dir', mesh.stateDir, '--from-ip', ip.source, '--all', '-o', 'json'], { maxBuffer: 64 << 20 });
    return stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { flow: { type: string; reporter: string; tcp: { sourcePort: number } } }).flow)
      .find((f) => f.type === 'L3_L4' && f.tcp.sourcePort === tcp.sourcePort);
  }, 20_000);
  t.is(l4.reporter, 'ztunnel-source');
});

test.serial('waypoint-config-loss: the waypoint keeps serving its last good config while the controller is away', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const during = requests('shop', { url: `http://${webVip}/`, n: 300, concurrency: 2, headers: { 'x-version': 'v2' } });
  await mesh.restartController();
  const r = await during;
  t.is(count(r, '200 web-v2'), 300, `every request routed by the last good config: ${JSON.stringify(r.counts)} ${JSON.stringify(r.errors)}`);
});

test.serial('waypoint-bypass: a client outside the mesh dialling the pod directly is refused; so is every request while the waypoint is gone, until it returns', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const bypass = await requests('plain', { url: `http://${v1Ip}:8080/`, n: 3, concurrency: 1 });
  // (A mesh client dialling the pod's IP is not a bypass: its ztunnel sends it to the waypoint too.)
  const direct = await requests('shop', { url: `http://${v1Ip}:8080/`, n: 5, concurrency: 1 });
  t.is(count(direct, '200 web-v1 traced'), 5, `a mesh client dialling the pod goes through the waypoint: ${JSON.stringify(direct)}`);
  t.is(count(bypass, '200'), 0, `never 200 around the waypoint: ${JSON.stringify(bypass)}`);

  await mesh.kubectl('delete', 'deployment', '-n', 'shop', 'waypoint', '--wait=false');
  // The deployer puts the Deployment back; in between, requests are refused, never served around it.
  const during = await requests('shop', { url: `http://${webVip}/`, n: 20, concurrency: 1 });
  t.log(`while the waypoint was replaced: ${JSON.stringify(during.counts)} errors ${JSON.stringify(during.errors)}`);
  t.is(count(during, '200') - count(during, '200 web-v1 traced') - count(during, '200 web-v2 traced'), 0, 'every answer came through the waypoint (it adds the traceparent), none around it');
  await waitFor('the waypoint to come back', async () => ((await gatewayCondition('Programmed')) === 'True' ? true : undefined), 60_000);
  await waitFor('requests to succeed again', async () => (count(await requests('shop', { url: `http://${webVip}/`, n: 5 }), '200 ') === 5 ? true : undefined), 60_000);
  t.pass();
});

test.serial('waypoint-metrics: a real Prometheus answers istio_requests_total{reporter="waypoint"} by response_code', async (t) => {
  if (!mesh) return t.fail('no mesh');
  // The serving pod: one replaced earlier (waypoint-bypass) may still be draining (Waypoint.drain).
  const podName = await waitFor('the serving waypoint pod', async () => {
    const { stdout } = await mesh.kubectl('get', 'pod', '-n', 'shop', '-l', 'gateway.networking.k8s.io/gateway-name=waypoint', '-o', 'json');
    return (JSON.parse(stdout) as { items: k8s.V1Pod[] }).items.find((p) => !p.metadata?.deletionTimestamp && p.status?.phase === 'Running')?.metadata?.name;
  }, 30_000);
  const pf = spawn('kubectl', ['port-forward', '-n', 'shop', `pod/${podName}`, ':15020'], { env: { ...process.env, KUBECONFIG: mesh.cluster.kubeconfigPath }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (pf.exitCode === null) pf.kill('SIGTERM');
  });
  let out = '';
  pf.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const port = await waitFor('port-forward', () => /127\.0\.0\.1:(\d+)/.exec(out)?.[1], 20_000);
  const promPort = 20000 + Math.floor(Math.random() * 20000);
  writeFileSync(`${mesh.stateDir}/prom-wp.yml`, `global: {scrape_interval: 1s}\nscrape_configs:\n- job_name: waypoint\n  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: ['127.0.0.1:${port}']\n`);
  const prom = spawn('/usr/bin/prometheus', [`--config.file=${mesh.stateDir}/prom-wp.yml`, `--storage.tsdb.path=${mesh.stateDir}/prom-wp`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: 'ignore' });
  t.teardown(async () => {
    if (prom.exitCode === null) {
      prom.kill('SIGTERM');
      await new Promise((r) => prom.once('exit', r));
    }
  });
  await new Promise((r) => setTimeout(r, 2000));
  await requests('shop', { url: `http://${webVip}/`, n: 200, concurrency: 2 });
  await new Promise((r) => setTimeout(r, 2500));
  await requests('shop', { url: `http://${webVip}/`, n: 200, concurrency: 2 });
  const query = 'sum(rate(istio_requests_total{reporter="waypoint"}[1m])) by (response_code)';
  let last = '';
  const answer = await waitFor('Prometheus to answer', async () => {
    // Traffic keeps flowing while we ask: on a loaded host Prometheus may start scraping only after
    // the requests above, and a rate needs the counter to move between two scrapes.
    await requests('shop', { url: `http://${webVip}/`, n: 20, concurrency: 2 });
    const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(query)}`);
    last = await res.text();
    const r = JSON.parse(last) as { data: { result: { metric: { response_code?: string }; value: [number, string] }[] } };
    return r.data.result.some((x) => x.metric.response_code === '200' && Number(x.value[1]) > 0) ? r.data.result : undefined;
  }, 30_000).catch((e: Error) => {
    throw new Error(`${e.message}; last answer: ${last}`);
  });
  t.true(answer.some((x) => x.metric.response_code === '200'), JSON.stringify(answer));
});

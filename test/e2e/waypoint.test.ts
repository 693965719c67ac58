// Waypoints end to end, as a user runs them: a Gateway of class mesh-waypoint in namespace shop
// (deployed by the controller as a Deployment, Service and ServiceAccount it owns), the namespace
// labelled to use it, an HTTPRoute on Service web, and clients in pods whose connections ztunnel
// captures and sends over HBONE to the waypoint, which routes each request to a pod over HBONE
// again. Two nodes, one mesh shared by the tests in order; real kubectl, real Prometheus.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { startMesh, waitFor, type Mesh } from '../helpers/mesh.ts';
import { HTTP_ECHO_SERVER, HTTP_REQUESTS } from '../helpers/scripts.ts';
import { requireRoot } from '../helpers/topology.ts';
import { fileURLToPath } from 'node:url';

const NODE = process.execPath;
const GATEWAY_API = fileURLToPath(new URL('../fixtures/gateway-api-crds.yaml', import.meta.url));

let mesh: Mesh;
let webVip = '';
let v1Ip = '';

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
async function requests(ns: string, spec: { url: string; n: number; method?: string; headers?: Record<string, string>; concurrency?: number }, node = 'node2'): Promise<Result> {
  const name = `client-${++clients}`;
  await mesh.core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { name }, spec: { nodeName: node, restartPolicy: 'Never', containers: [{ name: 'main', image: 'local', command: [NODE, '-e', HTTP_REQUESTS, JSON.stringify(spec)] }] } } as k8s.V1Pod,
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
  return JSON.parse(line.slice('RESULT '.length)) as Result;
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

test.before(async (t) => {
  if (!(await requireRoot(t))) return;
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
  await podIp('shop', 'web-v2');
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
  const { stdout: podName } = await mesh.kubectl('get', 'pod', '-n', 'shop', '-l', 'gateway.networking.k8s.io/gateway-name=waypoint', '-o', 'jsonpath={.items[0].metadata.name}');
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
    const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(query)}`);
    last = await res.text();
    const r = JSON.parse(last) as { data: { result: { metric: { response_code?: string }; value: [number, string] }[] } };
    return r.data.result.some((x) => x.metric.response_code === '200' && Number(x.value[1]) > 0) ? r.data.result : undefined;
  }, 30_000).catch((e: Error) => {
    throw new Error(`${e.message}; last answer: ${last}`);
  });
  t.true(answer.some((x) => x.metric.response_code === '200'), JSON.stringify(answer));
});

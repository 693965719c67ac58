// Seeing the mesh as Hubble and istioctl users expect (issue 17 §3 and §4), end to end on the
// two-node local cluster with the real meshctl: a waypoint's HTTP requests as L7 flows with method,
// path, status and latency; --http-status 403 finding the request an L7 DENY refused, with
// --print-policy-names naming that policy; --not --namespace; a connection ztunnel refuses for
// want of a healthy endpoint as a DROPPED flow with its reason; bystander pods (a namespace
// without the mesh label, a pod opted out) whose flows say why they were not captured; and
// `meshctl analyze` printing each problem seeded into the cluster and exiting 1.
import { execFile, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import type { Flow } from '../../src/flows/types.ts';
import { type Mesh, startMesh, waitFor } from '../helpers/mesh.ts';
import { HTTP_ECHO_SERVER, HTTP_REQUESTS } from '../helpers/scripts.ts';
import { requireRoot } from '../helpers/topology.ts';

const NODE = process.execPath;
const run = promisify(execFile);
const GATEWAY_API = fileURLToPath(new URL('../../daemonset/chart/files/gateway-api-crds.yaml', import.meta.url));
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));

let mesh: Mesh;
let webVip = '';
let emptyVip = '';
let dbIp = '';
const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

async function apply(name: string, yaml: string): Promise<void> {
  const f = `${mesh.stateDir}/${name}.yaml`;
  writeFileSync(f, yaml);
  await mesh.kubectl('apply', '-f', f);
}

interface Result {
  counts: Record<string, number>;
  errors: Record<string, number>;
}

let clients = 0;
/** Runs HTTP_REQUESTS in a new pod and returns its RESULT line. */
async function requests(ns: string, spec: { url: string; n: number; method?: string }, opts: { node?: string; labels?: Record<string, string> } = {}): Promise<Result & { pod: string }> {
  const name = `client-${++clients}`;
  await mesh.core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { name, labels: { app: 'client', ...opts.labels } }, spec: { nodeName: opts.node ?? 'node2', restartPolicy: 'Never', containers: [{ name: 'main', image: 'local', command: [NODE, '-e', HTTP_REQUESTS, JSON.stringify(spec)] }] } } as k8s.V1Pod,
  });
  const log = `${mesh.stateDir}/logs/${ns}_${name}_main.log`;
  const line = await waitFor(`${ns}/${name} to finish`, () => {
    try {
      return readFileSync(log, 'utf8').split('\n').find((l) => l.startsWith('RESULT '));
    } catch {
      return undefined;
    }
  }, 90_000);
  return { ...(JSON.parse(line.slice('RESULT '.length)) as Result), pod: name };
}

async function meshctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(MESHCTL, [...args, '--state-dir', mesh.stateDir], { timeout: 60_000, maxBuffer: 64 << 20 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
}

async function flows(...args: string[]): Promise<Flow[]> {
  const r = await meshctl('flows', '--all', '-o', 'json', ...args);
  if (r.code !== 0) throw new Error(`meshctl flows ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { flow?: Flow })
    .flatMap((r) => (r.flow ? [r.flow] : []));
}

async function podIp(ns: string, name: string): Promise<string> {
  return waitFor(`${ns}/${name} running`, async () => {
    const p = await mesh.core.readNamespacedPod({ name, namespace: ns });
    return p.status?.podIP && p.status.phase === 'Running' ? p.status.podIP : undefined;
  }, 30_000);
}

test.before(async (t) => {
  if (!(await requireRoot(t))) return;
  mesh = await startMesh({ teardown: (fn) => cleanups.push(fn) }, { ztunnel: true });
  await mesh.kubectl('apply', '-f', GATEWAY_API);
  // shop: in the mesh behind a waypoint; store: in the mesh, STRICT, no waypoint; legacy: outside.
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  await mesh.core.createNamespace({ body: { metadata: { name: 'store', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  await mesh.core.createNamespace({ body: { metadata: { name: 'legacy' } } });
  const server = (ns: string, name: string, labels: Record<string, string>, node: string) =>
    mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name, labels }, spec: { nodeName: node, containers: [{ name: 'main', image: 'local', command: [NODE, '-e', HTTP_ECHO_SERVER, name] }] } } as k8s.V1Pod });
  await server('shop', 'web', { app: 'web' }, 'node1');
  await server('store', 'db', { app: 'db' }, 'node1');
  const svc = (ns: string, name: string, selector: Record<string, string>) =>
    mesh.core.createNamespacedService({ namespace: ns, body: { metadata: { name }, spec: { selector, ports: [{ name: 'http', port: 80, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
  webVip = (await svc('shop', 'web', { app: 'web' })).spec!.clusterIP!;
  emptyVip = (await svc('store', 'empty', { app: 'nothing' })).spec!.clusterIP!;
  dbIp = await podIp('store', 'db');
  await podIp('shop', 'web');
  await apply('waypoint', 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\nspec:\n  gatewayClassName: mesh-waypoint\n  listeners:\n  - {name: mesh, port: 15008, protocol: HBONE}\n');
  await mesh.kubectl('label', 'namespace', 'shop', 'mesh.io/use-waypoint=waypoint');
  await waitFor('the waypoint Gateway to be Programmed', async () => {
    const { stdout } = await mesh.kubectl('get', 'gateway', '-n', 'shop', 'waypoint', '-o', 'jsonpath={.status.conditions[?(@.type=="Programmed")].status}');
    return stdout.trim() === 'True' ? true : undefined;
  }, 90_000);
  await apply('deny-admin', 'apiVersion: security.mesh.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-admin, namespace: shop}\nspec:\n  targetRefs:\n  - {group: "", kind: Service, name: web}\n  action: DENY\n  rules:\n  - to:\n    - operation: {methods: [POST], paths: ["/admin*"]}\n');
  await apply('strict', 'apiVersion: security.mesh.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: store}\nspec:\n  mtls: {mode: STRICT}\n');
});

test.serial('l7-flows: method, path, status and latency; --http-status 403 finds the waypoint-denied request and --print-policy-names names its DENY policy', async (t) => {
  if (!mesh) return t.fail('no mesh');
  // The DENY reaches the waypoint over the config stream: wait until a POST /admin is refused.
  await waitFor('POST /admin to be denied', async () => ((await requests('shop', { url: `http://${webVip}/admin`, n: 1, method: 'POST' })).counts['403 RBAC: access denied'] === 1 ? true : undefined), 60_000);
  const get = await requests('shop', { url: `http://${webVip}/items?page=2`, n: 3 });
  t.is(get.counts['200 web untraced'] ?? get.counts['200 web traced'], 3, JSON.stringify(get));
  const post = await requests('shop', { url: `http://${webVip}/admin/users`, n: 2, method: 'POST' });
  t.is(post.counts['403 RBAC: access denied'], 2, JSON.stringify(post));

  const ok = await waitFor('3 L7 flows of GET /items', async () => {
    const f = (await flows('--type', 'l7', '--http-method', 'get', '--http-path', '^/items$', '--from-pod', `shop/${get.pod}`)).filter((x) => x.l7?.http?.url === '/items?page=2');
    return f.length >= 3 ? f : undefined;
  }, 30_000);
  for (const f of ok) {
    t.is(f.type, 'L7');
    t.is(f.verdict, 'FORWARDED');
    t.like(f.l7, { type: 'RESPONSE', http: { method: 'GET', url: '/items?page=2', code: 200 } });
    t.true((f.l7?.latencyNs ?? 0) > 0, 'latency measured');
    t.is(f.destination.podName, 'web');
    t.true(f.source.labels?.includes('app=client'), 'pod labels ride with the flow');
  }
  const compact = await meshctl('flows', '--all', '--type', 'l7', '--from-pod', `shop/${get.pod}`, '--time-format', 'RFC3339Milli');
  t.regex(compact.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z: shop\/client-\d+:\d+ \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/default\) -> shop\/web:\d+ .* http-response FORWARDED \(HTTP\/1\.1 200 [\d.]+ms \(GET \/items\?page=2\)/m);

  const denied = await waitFor('2 denied L7 flows', async () => {
    const f = await flows('--http-status', '403', '--from-pod', `shop/${post.pod}`);
    return f.length >= 2 ? f : undefined;
  }, 30_000);
  for (const f of denied) {
    t.like(f, { type: 'L7', verdict: 'DROPPED', responseFlags: 'RBAC' });
    t.like(f.l7, { type: 'REQUEST', http: { method: 'POST', url: '/admin/users', code: 403 } });
    t.deepEqual(f.ingressDeniedBy, [{ name: 'deny-admin', namespace: 'shop', kind: 'AuthorizationPolicy' }]);
  }
  const named = await meshctl('flows', '--all', '--http-status', '4+', '--from-pod', `shop/${post.pod}`, '--print-policy-names');
  t.regex(named.stdout, /http-request DROPPED DENIED BY AuthorizationPolicy shop\/deny-admin \(HTTP\/1\.1 POST \/admin\/users/);
  t.is((await flows('--http-status', '5+', '--from-pod', `shop/${post.pod}`)).length, 0, 'no 5xx among them');
  // A status filter that is not one is refused before anything is asked.
  const bad = await meshctl('flows', '--http-status', '6+');
  t.is(bad.code, 2);
  t.regex(bad.stderr, /neither a status code/);
});

test.serial('refused: a connection to a Service with no healthy endpoint is a DROPPED flow with its reason', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const r = await requests('store', { url: `http://${emptyVip}/`, n: 1 });
  t.is(Object.values(r.counts).length, 0, `ztunnel refused it: ${JSON.stringify(r)}`);
  const refused = await waitFor('the refused flow', async () => {
    const f = await flows('--verdict', 'DROPPED', '--from-pod', `store/${r.pod}`, '--to-service', 'store/empty');
    return f.length >= 1 ? f : undefined;
  }, 30_000);
  t.like(refused[0], { reporter: 'ztunnel-source', trafficDirection: 'EGRESS', summary: 'TCP refused by ztunnel before it was set up' });
  t.regex(refused[0]!.dropReasonDesc, /service empty\.store\.svc\.cluster\.local has no healthy endpoint for port 80/);
  const line = await meshctl('flows', '--all', '--verdict', 'DROPPED', '--from-pod', `store/${r.pod}`);
  t.regex(line.stdout, /store\/client-\d+:\d+ .* egress DROPPED \(TCP refused by ztunnel before it was set up, via empty\.store\.svc\.cluster\.local, service empty\.store\.svc\.cluster\.local has no healthy endpoint/);
});

test.serial('not-captured: bystanders\' flows say why the mesh did not capture them; STRICT refuses them; --not --namespace leaves a namespace out', async (t) => {
  if (!mesh) return t.fail('no mesh');
  // The bystanders call as soon as they start, before their Workloads can have reached the
  // nodes: the agents hold such a flow until the model names its pod (src/agent/flows.ts).
  // A follower sees each flow as it enters the agent's ring, so nothing can name it afterwards.
  const follower = spawn(MESHCTL, ['flows', '-f', '-o', 'json', '--to-pod', 'store/db', '--type', 'trace-sock', '--state-dir', mesh.stateDir], { stdio: ['ignore', 'pipe', 'ignore'] });
  let followed = '';
  follower.stdout.on('data', (d: Buffer) => (followed += d.toString()));
  t.teardown(() => follower.kill());
  await new Promise((r) => setTimeout(r, 2000)); // its stream is open before the pod starts
  const outside = await requests('legacy', { url: `http://${dbIp}:8080/`, n: 1 });
  const first = await waitFor('the followed flow of the new pod', () => {
    const got = followed.split('\n').filter(Boolean).flatMap((l) => (JSON.parse(l) as { flow?: Flow }).flow ?? []);
    return got.length ? got : undefined;
  }, 30_000);
  t.is(first[0]!.source.podName, outside.pod, `the first flow of ${outside.pod}, as a follower saw it, names it: ${JSON.stringify(first[0]!.source)}`);
  const optedOut = await requests('store', { url: `http://${dbIp}:8080/`, n: 1 }, { labels: { 'mesh.io/dataplane-mode': 'none' } });
  const observed = await waitFor('the bystanders\' kernel flows', async () => {
    const f = (await flows('--type', 'trace-sock', '--to-pod', 'store/db')).filter((x) => x.source.podName === outside.pod || x.source.podName === optedOut.pod);
    return f.length >= 2 ? f : undefined;
  }, 30_000);
  const by = (pod: string) => observed.find((f) => f.source.podName === pod)!;
  t.is(by(outside.pod).notCapturedReason, 'namespace legacy has no mesh.io/dataplane-mode=ambient label');
  t.is(by(optedOut.pod).notCapturedReason, 'opted out by its label mesh.io/dataplane-mode=none');
  const line = await meshctl('flows', '--all', '--from-pod', `legacy/${outside.pod}`, '--type', 'trace-sock');
  t.regex(line.stdout, /observed FORWARDED \(TCP plaintext \(not in the mesh\).*not captured: namespace legacy has no mesh\.io\/dataplane-mode=ambient label/);
  // At db, STRICT refused both, naming the PeerAuthentication.
  const strict = await waitFor('STRICT refusals at db', async () => {
    const f = (await flows('--verdict', 'DROPPED', '--to-pod', 'store/db', '--type', 'policy-verdict')).filter((x) => x.source.podName === outside.pod || x.source.podName === optedOut.pod);
    return f.length >= 2 ? f : undefined;
  }, 30_000);
  t.true(strict.every((f) => f.ingressDeniedBy?.[0]?.kind === 'PeerAuthentication'), JSON.stringify(strict.map((f) => f.ingressDeniedBy)));

  // --not --namespace shop: nothing from or to shop, and the rest still there.
  const notShop = await flows('--not', '--namespace', 'shop');
  t.true(notShop.length > 0);
  t.false(notShop.some((f) => f.source.namespace === 'shop' || f.destination.namespace === 'shop'), 'shop is left out');
  t.true(notShop.some((f) => f.destination.namespace === 'store'));
  t.true((await flows('--namespace', 'shop')).length > 0, 'shop has flows to leave out');
});

test.serial('analyze: each seeded problem on its own line with its code and fix, exit 1; -o json the same', async (t) => {
  if (!mesh) return t.fail('no mesh');
  await mesh.core.createNamespace({ body: { metadata: { name: 'typo', labels: { 'mesh.io/dataplane-mode': 'ambiant' } } } });
  await mesh.core.createNamespace({ body: { metadata: { name: 'orphan', labels: { 'mesh.io/dataplane-mode': 'ambient', 'mesh.io/use-waypoint': 'ghost' } } } });
  const r = await meshctl('analyze');
  t.is(r.code, 1, r.stderr);
  t.log(r.stdout);
  const lines = r.stdout.split('\n');
  const has = (re: RegExp) => t.true(lines.some((l) => re.test(l)), `${re} in:\n${r.stdout}`);
  has(/^Error \[MESH0101\] \(Namespace typo\) label mesh\.io\/dataplane-mode=ambiant is not a mode the mesh knows.*Fix: kubectl label namespace typo mesh\.io\/dataplane-mode=ambient --overwrite/);
  has(/^Error \[MESH0301\] \(Gateway orphan\/ghost\) waypoint orphan\/ghost is used by Namespace\/orphan but does not exist.*Fix: meshctl waypoint apply -n orphan --name ghost/);
  has(/^Warning \[MESH0401\] \(Service store\/empty\) has no ready endpoint: no pod matches its selector app=nothing/);
  has(/^Error \[MESH0501\] \(Namespace store\) namespace store requires mutual TLS .*clients outside the mesh still call it in plaintext: \d+ connection\(s\) refused, from .*legacy\/client-\d+.*Fix: .*kubectl label namespace legacy mesh\.io\/dataplane-mode=ambient/);
  t.false(lines.some((l) => /MESH0502|MESH0703/.test(l)), 'flows and certificates were read on the local cluster');
  t.false(lines.some((l) => /\(Gateway shop\/waypoint\)|\(Service shop\/web\)/.test(l)), 'the healthy waypoint and service are no finding');
  const json = await meshctl('analyze', '-o', 'json');
  t.is(json.code, 1);
  const codes = (JSON.parse(json.stdout) as { code: string }[]).map((f) => f.code);
  for (const c of ['MESH0101', 'MESH0301', 'MESH0401', 'MESH0501']) t.true(codes.includes(c), c);
  // Fixed, the errors go: a namespace scope with none exits 0.
  await mesh.kubectl('label', 'namespace', 'typo', 'mesh.io/dataplane-mode=ambient', '--overwrite');
  const fixed = await meshctl('analyze', '-n', 'typo');
  t.is(fixed.code, 0, fixed.stdout);
  t.regex(fixed.stdout, /No validation issues found when analyzing namespace: typo/);
});

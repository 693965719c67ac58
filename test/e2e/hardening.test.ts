// Holes a user or an attacker could walk through, each reproduced on the local cluster and closed:
// a waypoint label that switched policy off; plaintext let in while a restarted ztunnel's
// policies were still on their way; one node's credential speaking for another on the config
// stream and the flow relay; flows readable by any certificate of the mesh. Two nodes, one mesh
// shared by the tests in order.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { NodeCredentials } from '../../src/controller/node-auth.ts';
import { Relay } from '../../src/flows/relay.ts';
import { observerClient, serveObserver, unary } from '../../src/flows/server.ts';
import { CertificateClient, spiffeId, type WorkloadCertificate } from '../../src/identity/index.ts';
import { ConfigClient, WORKLOAD, type Workload } from '../../src/xds/index.ts';
import { SERVER_NAME, startMesh, waitFor, type Mesh } from '../helpers/mesh.ts';
import { HTTP_LOOP, HTTP_OK_SERVER, loopResults } from '../helpers/scripts.ts';
import { requireRoot } from '../helpers/topology.ts';

const NODE = process.execPath;
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const run = promisify(execFile);



let mesh: Mesh;
let serverIp = '';

const results = (ns: string, pod: string) => loopResults(`${mesh.stateDir}/logs/${ns}_${pod}_main.log`, (f) => readFileSync(f, 'utf8'));
const since = (ns: string, pod: string, t0: number) => results(ns, pod).filter(([ts]) => ts > t0);

async function apply(name: string, yaml: string): Promise<string> {
  const f = `${mesh.stateDir}/${name}.yaml`;
  writeFileSync(f, yaml);
  await mesh.kubectl('apply', '-f', f);
  return f;
}

/** Waits until a pod's loop has answered `n` times since t0 and all of those are (not) ok. */
async function settle(ns: string, pod: string, want: 'ok' | 'refused', t0: number, n = 5): Promise<void> {
  await waitFor(`${ns}/${pod} to be ${want}`, () => {
    const r = since(ns, pod, t0).slice(-n);
    return r.length === n && r.every(([, x]) => (want === 'ok' ? x === 'ok' : x !== 'ok')) ? true : undefined;
  }, 20_000);
}

// ava allows t.teardown() in tests only: the shared mesh is torn down (and checked for leftovers)
// after the last test, whatever happened.
const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

test.before(async (t) => {
  if (!(await requireRoot(t))) return;
  mesh = await startMesh({ teardown: (fn) => cleanups.push(fn) }, { ztunnel: true });
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  await mesh.core.createNamespace({ body: { metadata: { name: 'plain' } } });
  const mk = (ns: string, name: string, node: string, command: string[]) =>
    mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name, labels: { app: name } }, spec: { nodeName: node, containers: [{ name: 'main', image: 'local', command }] } } as k8s.V1Pod });
  await mk('shop', 'orders', 'node1', [NODE, '-e', HTTP_OK_SERVER]);
  const server = await waitFor('orders running', async () => {
    const p = await mesh.core.readNamespacedPod({ name: 'orders', namespace: 'shop' });
    return p.status?.podIP && p.status.phase === 'Running' ? p : undefined;
  });
  serverIp = server.status!.podIP!;
  await mk('shop', 'caller', 'node2', [NODE, '-e', HTTP_LOOP, serverIp]);
  await mk('plain', 'outsider', 'node2', [NODE, '-e', HTTP_LOOP, serverIp]);
  await settle('shop', 'caller', 'ok', 0);
  await settle('plain', 'outsider', 'ok', 0);
});

test.serial('waypoint-label-keeps-policy: labelling a pod with a missing waypoint never lets traffic through', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const policy = await apply(
    'allow-get',
    'apiVersion: security.mesh.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: orders-get, namespace: shop}\nspec:\n  selector: {matchLabels: {app: orders}}\n  rules:\n  - to:\n    - operation: {methods: [GET]}\n',
  );
  let t0 = Date.now();
  await settle('shop', 'caller', 'refused', t0);
  await settle('plain', 'outsider', 'refused', t0);

  // The reproduction: label the pod with a waypoint that does not exist.
  await mesh.kubectl('label', 'pod', '-n', 'shop', 'orders', 'mesh.io/use-waypoint=wp');
  const labelledAt = Date.now();
  await new Promise((r) => setTimeout(r, 3000));
  const during = [...since('shop', 'caller', labelledAt), ...since('plain', 'outsider', labelledAt)];
  t.true(during.length > 20, 'both callers kept trying');
  t.deepEqual(during.filter(([, r]) => r === 'ok'), [], 'no request got through after the label');
  const status = JSON.parse((await mesh.kubectl('get', 'authorizationpolicy', '-n', 'shop', 'orders-get', '-o', 'json')).stdout) as { status: { conditions: { type: string; status: string; message: string }[] } };
  const enforced = status.status.conditions.find((c) => c.type === 'Enforced');
  t.is(enforced?.status, 'False');
  t.regex(enforced?.message ?? '', /Gateway shop\/wp does not exist.*ztunnel refuses all traffic to the workloads that use it/);

  // Without the policy, the missing waypoint alone still refuses: at the caller's ztunnel
  // (outbound) and, for a client outside the mesh, at the destination's ztunnel.
  await mesh.kubectl('delete', '-f', policy);
  t0 = Date.now();
  await new Promise((r) => setTimeout(r, 3000));
  t.deepEqual([...since('shop', 'caller', t0), ...since('plain', 'outsider', t0)].filter(([, r]) => r === 'ok'), [], 'the waypoint is never bypassed');
  t.regex(mesh.logs.get('ztunnel-node2') ?? '', /workload shop\/orders uses waypoint shop\/wp\.shop\.svc\.cluster\.local is missing/, 'the caller\'s ztunnel names the waypoint');
  t.regex(mesh.logs.get('ztunnel-node1') ?? '', /shop\/orders uses waypoint shop\/wp\.shop\.svc\.cluster\.local is missing/, 'the destination names it too');
  const { stdout } = await run(MESHCTL, ['flows', '--all', '-o', 'json', '--from-pod', 'shop/caller', '--verdict', 'DROPPED', '--state-dir', mesh.stateDir], { timeout: 60_000 });
  const reasons = stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { flow?: { dropReasonDesc?: string } }).flow?.dropReasonDesc ?? '');
  t.true(reasons.some((r) => /uses waypoint shop\/wp\.shop\.svc\.cluster\.local is missing/.test(r)), `a DROPPED flow names the waypoint: ${reasons.slice(-3).join(' | ')}`);

  // Removing the label restores traffic.
  await mesh.kubectl('label', 'pod', '-n', 'shop', 'orders', 'mesh.io/use-waypoint-');
  t0 = Date.now();
  await settle('shop', 'caller', 'ok', t0);
  await settle('plain', 'outsider', 'ok', t0);
  t.pass();
});

test.serial('service-waypoint-not-bypassed-by-pod-ip: a Service\'s missing waypoint also guards its pods reached by IP', async (t) => {
  if (!mesh) return t.fail('no mesh');
  await apply('orders-svc', 'apiVersion: v1\nkind: Service\nmetadata: {name: orders, namespace: shop}\nspec:\n  selector: {app: orders}\n  ports:\n  - {port: 80, targetPort: 8080}\n');
  await mesh.kubectl('label', 'service', '-n', 'shop', 'orders', 'mesh.io/use-waypoint=svc-wp');
  let t0 = Date.now();
  // Both loops dial the pod IP, never the Service's VIP.
  await settle('shop', 'caller', 'refused', t0);
  await settle('plain', 'outsider', 'refused', t0);
  t.regex(mesh.logs.get('ztunnel-node1') ?? '', /service shop\/orders\.shop\.svc\.cluster\.local uses waypoint shop\/svc-wp\.shop\.svc\.cluster\.local is missing/);
  await mesh.kubectl('label', 'service', '-n', 'shop', 'orders', 'mesh.io/use-waypoint-');
  t0 = Date.now();
  await settle('shop', 'caller', 'ok', t0);
  await settle('plain', 'outsider', 'ok', t0);
  t.pass();
});

test.serial('restart-strict-no-plaintext: a plaintext client racing a ztunnel restart never gets through STRICT', async (t) => {
  if (!mesh) return t.fail('no mesh');
  await apply('strict', 'apiVersion: security.mesh.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec:\n  mtls: {mode: STRICT}\n');
  const t0 = Date.now();
  await settle('plain', 'outsider', 'refused', t0);
  await settle('shop', 'caller', 'ok', t0);
  const from = Date.now();
  for (let round = 0; round < 3; round++) {
    const z = mesh.processes.get('ztunnel-node1')!;
    z.kill('SIGKILL');
    await new Promise((r) => z.once('exit', r));
    const restarted = Date.now();
    await mesh.startProcess('ztunnel', 'node1');
    await settle('shop', 'caller', 'ok', restarted, 3);
  }
  await new Promise((r) => setTimeout(r, 2000));
  const tried = since('plain', 'outsider', from);
  t.true(tried.length > 20, `the outsider kept trying (${tried.length})`);
  t.deepEqual(tried.filter(([, r]) => r === 'ok'), [], 'no plaintext connection was accepted before, during or after the restarts');
});

/** node1's own credential, obtained from the CA exactly as node1's agent obtains it. */
async function nodeCredential(node: string): Promise<WorkloadCertificate> {
  const token = await mesh.tokenFor(node);
  const ca = new CertificateClient({ address: `127.0.0.1:${mesh.controller.ca.port}`, caRoots: mesh.root, serverName: SERVER_NAME, token: () => token });
  try {
    return await ca.fetch(spiffeId('cluster.local', 'mesh-system', 'mesh-node'));
  } finally {
    ca.close();
  }
}

test.serial('config-stream-node-from-credentials: node1\'s credential cannot read, NACK or announce flows as node2', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const cert = await nodeCredential('node1');
  const creds = grpc.credentials.createSsl(Buffer.from(mesh.root), Buffer.from(cert.key), Buffer.from(cert.certChain.join('\n')));
  const before = mesh.controller.relayPeers().find((p) => p.name === 'node2');
  t.truthy(before, 'node2\'s agent announced its flows API');
  for (const [id, name, why] of [
    ['agent~node2', 'node2', /claims node "node2", but its certificate is bound to node "node1"/],
    ['ztunnel~node2', 'node2', /claims node "node2", but its certificate is bound to node "node1"/],
    ['agent~node2', 'node1', /node id "agent~node2" must be agent~node1 or ztunnel~node1/],
  ] as const) {
    const c = new ConfigClient<{ [WORKLOAD]: Workload }>({
      address: `127.0.0.1:${mesh.controller.xdsPort}`,
      credentials: creds,
      node: { id, name, cluster: '', metadata: { observer: '127.0.0.1:9' } },
      types: [WORKLOAD],
      channelOptions: { 'grpc.ssl_target_name_override': SERVER_NAME },
      // Reject every resource: were the stream admitted, this NACK would be filed under the victim.
      validate: () => 'refused by the impostor',
    });
    c.start();
    const err = await waitFor(`the stream as ${id}/${name} to be refused`, () => c.status().lastError);
    await c.close();
    t.regex(err, /PERMISSION_DENIED/, id);
    t.regex(err, why, `${id} as ${name}: ${err}`);
    t.is(c.entries(WORKLOAD).size, 0, 'nothing was served to it');
  }
  // node2's state is untouched: its announced flows address, its streams in sync, no NACK on record.
  const after = mesh.controller.relayPeers().find((p) => p.name === 'node2');
  t.is(after?.address, before?.address);
  t.deepEqual(mesh.controller.xds.status().rejections, {});
  t.true(after!.configClients.every((c) => c.inSync), 'node2\'s agent and ztunnel stay in sync');

  // The relay checks who answers at an address: a server holding node1's certificate, dialled
  // as node2, is refused; the real node2 agent is accepted.
  const fake = await serveObserver({}, '127.0.0.1:0', grpc.ServerCredentials.createSsl(Buffer.from(mesh.root), [{ cert_chain: Buffer.from(cert.certChain.join('\n')), private_key: Buffer.from(cert.key) }], false));
  t.teardown(() => fake.close());
  const controllerId = await mesh.controller.ca.authority.issueWorkloadKey(spiffeId('cluster.local', 'mesh-system', 'mesh-controller'), 600_000);
  const relay = new Relay({
    peers: () => [
      { name: 'node2', address: `127.0.0.1:${fake.port}`, configClients: [] },
      { name: 'node1', address: mesh.controller.relayPeers().find((p) => p.name === 'node1')!.address, configClients: [] },
    ],
    credentials: new NodeCredentials('cluster.local', ['system:serviceaccount:mesh-system:mesh-node']).relayCredentials(Buffer.from(mesh.root), controllerId),
    version: 'test',
  });
  t.teardown(() => relay.close());
  const nodes = await relay.nodes();
  const n2 = nodes.find((n) => n.name === 'node2')!;
  t.is(n2.state, 'UNAVAILABLE');
  t.regex(n2.error ?? '', /not that node's agent: its certificate is bound to node node1, not node2/);
  t.not(nodes.find((n) => n.name === 'node1')?.state, 'UNAVAILABLE', 'the real agent answers the relay');
});

test.serial('flows-api-controller-only: a node agent serves its flows to the controller\'s identity only', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const address = mesh.controller.relayPeers().find((p) => p.name === 'node1')!.address;
  const call = async (who: { key: string; certChain: readonly string[] }) => {
    const client = observerClient(address, grpc.credentials.createSsl(Buffer.from(mesh.root), Buffer.from(who.key), Buffer.from(who.certChain.join('\n')), { checkServerIdentity: () => undefined }), { 'grpc.ssl_target_name_override': 'node1' });
    try {
      return await unary<{ numFlows: number }>((opts, cb) => client.ServerStatus({}, opts, cb));
    } catch (e) {
      return e as Error;
    } finally {
      client.close();
    }
  };
  // Another node's credential, and a workload's, from the same CA: refused.
  const other = await call(await nodeCredential('node2'));
  t.regex((other as Error).message ?? '', /PERMISSION_DENIED.*only the controller's relay \(spiffe:\/\/cluster\.local\/ns\/mesh-system\/sa\/mesh-controller\) may read this node's flows; the client presented spiffe:\/\/cluster\.local\/ns\/mesh-system\/sa\/mesh-node/);
  const workload = await mesh.controller.ca.authority.issueWorkloadKey(spiffeId('cluster.local', 'shop', 'caller'), 600_000);
  t.regex(((await call(workload)) as Error).message ?? '', /PERMISSION_DENIED/);
  const controller = await mesh.controller.ca.authority.issueWorkloadKey(spiffeId('cluster.local', 'mesh-system', 'mesh-controller'), 600_000);
  const ok = await call(controller);
  t.false(ok instanceof Error, String(ok));
  t.true((ok as { numFlows: number }).numFlows >= 0);
});

test.serial('link-local-refused: a STRICT pod is not reachable through its IPv6 link-local address from the node', async (t) => {
  if (!mesh) return t.fail('no mesh');
  const podNs = `${mesh.prefix}-node1-shop-orders`;
  const nodeNs = `${mesh.prefix}-node1`;
  // The pod's link-local address, and the node-side veth that leads to it (eth0@ifN: N is its index).
  const addr = /inet6 (fe80::[0-9a-f:]+)\//.exec((await run('ip', ['-n', podNs, '-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'link'])).stdout)?.[1];
  const peerIndex = /eth0@if(\d+)/.exec((await run('ip', ['-n', podNs, 'link', 'show', 'eth0'])).stdout)?.[1];
  const veth = new RegExp(`^${peerIndex}: ([^:@]+)`, 'm').exec((await run('ip', ['-n', nodeNs, '-o', 'link', 'show'])).stdout)?.[1];
  t.truthy(addr && veth, `found the pod's link-local (${addr}) and the node's veth (${veth})`);
  const client = `const s = require('node:net').connect({ host: process.argv[1], port: 8080 }); s.setTimeout(3000, () => { console.log('timeout'); process.exit(); }); s.on('connect', () => s.write('GET / HTTP/1.0\\r\\n\\r\\n')); s.on('data', (d) => { console.log('reply ' + String(d).split('\\r\\n')[0]); process.exit(); }); s.on('error', (e) => { console.log(e.code); process.exit(); });`;
  const { stdout } = await run('ip', ['netns', 'exec', nodeNs, NODE, '-e', client, `${addr}%${veth}`], { timeout: 10_000 });
  t.is(stdout.trim(), 'ECONNREFUSED', 'refused, never served around ztunnel and STRICT');
});

test.serial('local-ztunnel-ports-on-loopback: in the local cluster ztunnel\'s metrics and readiness are not on the host\'s addresses', async (t) => {
  if (!mesh) return t.fail('no mesh');
  for (const node of ['node1', 'node2']) {
    for (const which of ['metrics', 'readiness', 'admin'] as const) {
      const port = mesh.ztunnelPort(node, which);
      const { stdout } = await run('ss', ['-Hltn', `sport = :${port}`]);
      const local = stdout.trim().split(/\s+/)[3] ?? '';
      t.is(local, `127.0.0.1:${port}`, `${node} ${which} listens on ${local}`);
    }
  }
});

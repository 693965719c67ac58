// The mesh, shown end to end on this host (root), in a local cluster it makes and removes: two
// nodes, a web service and a client calling it; the traffic is seen in plaintext on the wire
// between the nodes; the namespace is labelled ambient with the real kubectl; the same traffic
// then crosses in mutual TLS with SPIFFE identities (ztunnel's access log and Istio metrics show
// it); a DENY policy stops the client. `npm run demo`.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as k8s from '@kubernetes/client-node';
import { type Mesh, startMesh, waitFor } from '../test/helpers/mesh.ts';
import { uniquePrefix } from '../test/helpers/topology.ts';

const NODE = process.execPath;
const MARKER = 'SECRET-ORDER-4242';
const step = (s: string) => console.log(`\n▸ ${s}`);
const say = (s: string) => console.log(`  ${s}`);

const WEB = `require('node:http').createServer((q, s) => { let n = 0; q.on('data', (d) => (n += d.length)); q.on('end', () => s.end('order received (' + n + ' bytes)\\n')); }).listen(8080);`;
const CLIENT = `
const http = require('node:http');
setInterval(() => {
  // A new connection per order (no keep-alive): capture applies to connections made after enrolment.
  const r = http.request('http://web/', { method: 'POST', timeout: 2000, agent: false }, (s) => { let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => console.log(new Date().toISOString(), 'ok', b.trim())); });
  r.on('error', (e) => console.log(new Date().toISOString(), 'error', e.code || e.message)); r.on('timeout', () => r.destroy(new Error('timeout')));
  r.end('${MARKER} 2x espresso');
}, 300);
`;

async function capture(mesh: Mesh, seconds: number): Promise<Buffer> {
  const file = `${mesh.stateDir}/capture-${Date.now()}.pcap`;
  const tshark = spawn('ip', ['netns', 'exec', `${mesh.prefix}-fabric`, 'tshark', '-q', '-i', 'f0', '-w', file, '-f', 'tcp'], { stdio: 'ignore' });
  await sleep(seconds * 1000);
  tshark.kill('SIGTERM');
  await new Promise((r) => tshark.once('exit', r));
  return readFileSync(file);
}

function clientLog(mesh: Mesh, last = 3): string[] {
  try {
    return readFileSync(`${mesh.stateDir}/logs/shop_client_main.log`, 'utf8').trim().split('\n').slice(-last);
  } catch {
    return []; // not started yet
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the demo creates network namespaces and loads eBPF programs: run it as root');
  const cleanups: (() => Promise<void> | void)[] = [];
  const prefix = uniquePrefix().replace(/^mt/, 'md');
  try {
    step(`starting a local cluster (2 nodes), the controller, and on each node the agent and ztunnel (prefix ${prefix})`);
    const started = Date.now();
    const mesh = await startMesh({ teardown: (fn) => cleanups.push(fn) }, { ztunnel: true, prefix });
    say(`ready in ${((Date.now() - started) / 1000).toFixed(1)} s; kubeconfig ${mesh.cluster.kubeconfigPath}`);

    step('deploying the shop: web on node1, a client on node2 that posts an order to http://web/ every 300 ms');
    await mesh.core.createNamespace({ body: { metadata: { name: 'shop' } } });
    const pod = (name: string, node: string, script: string): Promise<k8s.V1Pod> =>
      mesh.core.createNamespacedPod({
        namespace: 'shop',
        body: { metadata: { name, labels: { app: name } }, spec: { nodeName: node, containers: [{ name: 'main', image: 'unused', command: [NODE, '-e', script] }] } },
      });
    await pod('web', 'node1', WEB);
    await mesh.core.createNamespacedService({ namespace: 'shop', body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
    await pod('client', 'node2', CLIENT);
    await waitFor('the client to get answers', () => (clientLog(mesh, 1)[0]?.includes(' ok ') ? true : undefined), 30_000);
    for (const l of clientLog(mesh, 2)) say(`client: ${l}`);
    say((await mesh.kubectl('get', 'pods', '-n', 'shop', '-o', 'wide')).stdout.trim().split('\n').join('\n  '));

    step('capturing 2 s on node1\'s link to the network (tshark)');
    const plain = await capture(mesh, 2);
    say(`the order "${MARKER}" is ${plain.includes(MARKER) ? 'VISIBLE in plaintext on the wire' : 'not visible'} (${plain.length} bytes captured)`);

    step('kubectl label namespace shop mesh.io/dataplane-mode=ambient');
    const labelled = Date.now();
    await mesh.kubectl('label', 'namespace', 'shop', 'mesh.io/dataplane-mode=ambient');
    await waitFor('both pods enrolled', () => (mesh.enrolledUids('node1').length && mesh.enrolledUids('node2').length ? true : undefined), 10_000);
    say(`both pods captured by the eBPF datapath in ${Date.now() - labelled} ms, without restarting them`);
    await waitFor('ztunnels serving both pods', () => ((mesh.logs.get('ztunnel-node1') ?? '').includes('"pod":"shop/web"') && (mesh.logs.get('ztunnel-node2') ?? '').includes('"pod":"shop/client"') ? true : undefined), 15_000);
    await sleep(1000);

    step('capturing 2 s again');
    const meshed = await capture(mesh, 2);
    say(`the order is ${meshed.includes(MARKER) ? 'STILL VISIBLE (something is wrong)' : 'no longer visible: it crosses over HBONE (mTLS) to port 15008'} (${meshed.length} bytes captured)`);
    for (const l of clientLog(mesh, 2)) say(`client: ${l}`);
    const access = (mesh.logs.get('ztunnel-node1') ?? '').split('\n').filter((l) => l.includes('"src.identity"')).at(-1);
    if (access) {
      const a = JSON.parse(access) as Record<string, unknown>;
      say(`ztunnel on node1, access log: ${a['src.identity']} → ${a['dst.identity']} (${a['direction']}, ${a['bytes_recv']} bytes in)`);
    }
    const metrics = await (await fetch(`http://127.0.0.1:${mesh.ztunnelPort('node1', 'metrics')}/metrics`)).text();
    const line = metrics.split('\n').find((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('destination_workload="web"') && l.includes('mutual_tls'));
    if (line) say(`metrics: istio_tcp_connections_opened_total{…destination_workload="web", connection_security_policy="mutual_tls"…} ${line.split(' ').at(-1)}`);

    step('applying an AuthorizationPolicy that DENYs the client\'s identity (cluster.local/ns/shop/sa/default)');
    const policy = `${mesh.stateDir}/deny.yaml`;
    writeFileSync(policy, 'apiVersion: security.mesh.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-client, namespace: shop}\nspec:\n  action: DENY\n  selector: {matchLabels: {app: web}}\n  rules:\n  - from:\n    - source: {principals: ["cluster.local/ns/shop/sa/default"]}\n');
    say((await mesh.kubectl('apply', '-f', policy)).stdout.trim());
    await sleep(1500);
    for (const l of clientLog(mesh, 2)) say(`client: ${l}`);
    const denied = (mesh.logs.get('ztunnel-node1') ?? '').split('\n').filter((l) => l.includes('"error"') && l.includes('DENY') || l.includes('denied')).length;
    say(`ztunnel on node1 refused ${denied} connection(s) by policy`);

    step('what to try next');
    say('meshctl dev up                      # a local cluster that stays up');
    say('kubectl label ns <ns> mesh.io/dataplane-mode=ambient');
    say('npm run bench:mesh                 # pod to pod through two ztunnels vs no mesh');
    say('npm test                            # everything above, as tests');
  } finally {
    step('cleaning up');
    for (const c of cleanups.reverse()) await c();
    say('every namespace, cgroup, pin and process the demo made is gone');
  }
}

main().catch((e: Error) => {
  console.error(`demo failed: ${e.message}`);
  process.exit(1);
});

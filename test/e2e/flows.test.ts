// Flows end to end: a known sequence of connections on the two-node local cluster — plaintext
// before the namespace joins the mesh, mTLS after, and one a DENY policy refuses — read back with
// the real `meshctl flows` through the controller's relay, which merges both nodes' agents. Each
// filter narrows to exactly the expected flows; --follow streams a new one; `meshctl status` and
// `meshctl ztunnel-config` match the cluster.
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import type { Flow } from '../../src/flows/types.ts';
import { startMesh, waitFor } from '../helpers/mesh.ts';
import { requireRoot } from '../helpers/topology.ts';

const run = promisify(execFile);
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const NODE = process.execPath;
const SERVER = `require('node:net').createServer((s) => { s.on('error', () => {}); s.on('data', () => s.end('pong')); }).listen(8080);`;
// Connects to each target in turn (one connection each, waiting for the reply), then exits 0.
const CLIENT = `
const net = require('node:net');
const fs = require('node:fs');
(async () => {
  for (let i = 0; !fs.existsSync(process.env.GO_FILE) && i < 600; i++) await new Promise((r) => setTimeout(r, 50));
  for (const t of process.argv.slice(1)) {
    await new Promise((resolve) => {
      const s = net.connect(8080, t);
      s.setTimeout(3000, () => s.destroy(new Error('timeout')));
      s.on('connect', () => s.write('ping'));
      s.on('data', () => s.end());
      s.on('error', (e) => console.log(t, 'error', e.code || e.message));
      s.on('close', () => { console.log(t, 'closed'); resolve(); });
    });
  }
})();
`;

interface JsonFlow {
  flow: Flow;
  node_name: string;
}

test('flows: exactly the connections made, with identities and verdicts; filters, relay, follow, status and ztunnel-config', async (t) => {
  if (!(await requireRoot(t))) return;
  const mesh = await startMesh(t, { ztunnel: true });
  const meshctl = (...args: string[]) => run(MESHCTL, [...args, '--state-dir', mesh.stateDir], { timeout: 60_000 });
  const flows = async (...args: string[]): Promise<JsonFlow[]> => {
    const { stdout } = await meshctl('flows', '--all', '-o', 'json', ...args);
    return stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as JsonFlow & { lost_events?: unknown })
      .filter((r) => r.flow);
  };
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop' } } });
  for (const sa of ['client', 'web', 'db']) await mesh.core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: sa } } });
  const pod = (name: string, node: string, sa: string, command: string[], restart = 'Always') =>
    mesh.core.createNamespacedPod({
      namespace: 'shop',
      body: {
        metadata: { name, labels: { app: name } },
        spec: { nodeName: node, serviceAccountName: sa, restartPolicy: restart, containers: [{ name: 'main', image: 'unused', command, env: [{ name: 'GO_FILE', value: `${mesh.stateDir}/go-${name}` }] }] },
      } as k8s.V1Pod,
    });
  // A client starts connecting once it is running and, in the mesh, served by its ztunnel (the
  // agent enrols running pods: a pod's very first connections could precede its enrolment).
  const client = async (name: string, targets: string[], meshed: boolean) => {
    await pod(name, 'node2', 'client', [NODE, '-e', CLIENT, ...targets], 'Never');
    await ipOf(name);
    if (meshed) await waitFor(`${name} served`, () => ((mesh.logs.get('ztunnel-node2') ?? '').includes(`"pod":"shop/${name}"`) ? true : undefined));
    writeFileSync(`${mesh.stateDir}/go-${name}`, '');
    await finished(name);
  };
  const ipOf = (name: string) =>
    waitFor(`${name} running`, async () => {
      const p = await mesh.core.readNamespacedPod({ name, namespace: 'shop' });
      return p.status?.phase === 'Running' && p.status.podIP ? p.status.podIP : undefined;
    });
  const finished = (name: string) =>
    waitFor(`${name} to finish`, async () => ((await mesh.core.readNamespacedPod({ name, namespace: 'shop' })).status?.phase === 'Succeeded' ? true : undefined), 30_000);
  await pod('web', 'node1', 'web', [NODE, '-e', SERVER]);
  await pod('db', 'node2', 'db', [NODE, '-e', SERVER]);
  const [web, db] = [await ipOf('web'), await ipOf('db')];

  // 1. Outside the mesh: three plaintext connections, seen by the kernel on the client's node.
  await client('plain', [web, web, db], false);
  const plain = await waitFor('3 plaintext flows', async () => {
    const f = await flows('--from-pod', 'shop/plain');
    return f.length >= 3 ? f : undefined;
  }).catch(async (e: Error) => {
    const all = await meshctl('flows', '--all').catch((err: Error) => ({ stdout: err.message, stderr: '' }));
    throw new Error(`${e.message}\nall flows:\n${all.stdout}${all.stderr}\nagent-node2:\n${(mesh.logs.get('agent-node2') ?? '').split('\n').slice(-10).join('\n')}`);
  });
  t.is(plain.length, 3, 'one flow per connection');
  for (const { flow: f } of plain) {
    t.is(f.verdict, 'FORWARDED');
    t.false(f.ip.encrypted);
    t.is(f.reporter, 'kernel');
    t.is(f.source.podName, 'plain');
    t.is(f.source.identity, '', 'no identity was proven');
    t.is(f.tcp.destinationPort, 8080);
    t.true(f.bytesSent >= 4 && f.bytesReceived >= 4, `bytes counted: ${f.bytesSent}/${f.bytesReceived}`);
    t.is(f.kernel?.decision, 'OBSERVED');
  }
  t.deepEqual(plain.map((r) => r.flow.destination.podName).sort(), ['db', 'web', 'web']);

  // 2. In the mesh: two connections to web (other node) and one to db (same node), each reported
  // by the client's ztunnel (egress) and the server's (ingress), with both SPIFFE identities.
  await mesh.kubectl('label', 'namespace', 'shop', 'mesh.io/dataplane-mode=ambient');
  await waitFor('ztunnels serving web and db', () => ((mesh.logs.get('ztunnel-node1') ?? '').includes('"pod":"shop/web"') && (mesh.logs.get('ztunnel-node2') ?? '').includes('"pod":"shop/db"') ? true : undefined));
  await client('meshed', [web, web, db], true);
  const meshed = await waitFor('6 mTLS flows', async () => {
    const f = await flows('--from-pod', 'shop/meshed');
    return f.length >= 6 ? f : undefined;
  });
  t.is(meshed.length, 6, '3 connections × (egress + ingress)');
  for (const { flow: f } of meshed) {
    t.is(f.verdict, 'FORWARDED', f.dropReasonDesc);
    t.true(f.ip.encrypted, 'mTLS');
    t.is(f.protocol, 'HBONE');
    t.is(f.source.identity, 'spiffe://cluster.local/ns/shop/sa/client');
    t.is(f.destination.identity, `spiffe://cluster.local/ns/shop/sa/${f.destination.podName}`);
    t.true(f.bytesSent >= 4 && f.bytesReceived >= 4);
  }
  const egress = meshed.filter((r) => r.flow.trafficDirection === 'EGRESS');
  const ingress = meshed.filter((r) => r.flow.trafficDirection === 'INGRESS');
  t.is(egress.length, 3);
  t.is(ingress.length, 3);
  t.true(egress.every((r) => r.node_name === 'node2' && r.flow.kernel?.decision === 'CAPTURED'), 'egress joined with the kernel capture');
  t.true(ingress.every((r) => r.flow.kernel?.decision === 'STEERED'), 'ingress joined with the kernel steer');
  t.deepEqual(ingress.map((r) => r.node_name).sort(), ['node1', 'node1', 'node2'], 'the relay merges both nodes');

  // 3. A DENY policy: the client's identity may not reach db.
  const policy = `${mesh.stateDir}/deny.yaml`;
  writeFileSync(policy, 'apiVersion: security.mesh.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-client, namespace: shop}\nspec:\n  action: DENY\n  selector: {matchLabels: {app: db}}\n  rules:\n  - from:\n    - source: {principals: ["cluster.local/ns/shop/sa/client"]}\n');
  await mesh.kubectl('apply', '-f', policy);
  await waitFor('the policy at node2\'s ztunnel', async () => {
    const dump = await (await fetch(`http://127.0.0.1:${mesh.ztunnelPort('node2', 'admin')}/config_dump`)).text();
    return dump.includes('deny-client') ? true : undefined;
  });
  await client('denied', [db], true);
  const denied = await waitFor('denied flows', async () => {
    const f = await flows('--from-pod', 'shop/denied');
    return f.length >= 2 ? f : undefined;
  });
  t.is(denied.length, 2, 'egress and ingress');
  t.true(denied.every((r) => r.flow.verdict === 'DROPPED'), denied.map((r) => r.flow.verdict).join());
  t.true(denied.every((r) => r.flow.dropReasonDesc.startsWith('Policy denied')), denied.map((r) => r.flow.dropReasonDesc).join(' | '));

  // 4. Filters narrow to exactly what they name.
  const dropped = await flows('-n', 'shop', '--verdict', 'DROPPED');
  t.deepEqual(dropped.map((r) => r.flow.uuid).sort(), denied.map((r) => r.flow.uuid).sort());
  const toDb = await flows('--to-pod', 'shop/db');
  t.true(toDb.length >= 4 && toDb.every((r) => r.flow.destination.podName === 'db'));
  const plaintext = await flows('--protocol', 'plaintext');
  t.deepEqual(plaintext.map((r) => r.flow.uuid).sort(), plain.map((r) => r.flow.uuid).sort(), '--protocol plaintext: the 3 connections made outside the mesh');
  const node1 = await flows('--node-name', 'node1');
  t.true(node1.length >= 2 && node1.every((r) => r.node_name === 'node1'));
  const ing = await flows('--from-pod', 'shop/meshed', '--traffic-direction', 'ingress');
  t.is(ing.length, 3);
  const byIdentity = await flows('--to-identity', 'shop/web');
  t.is(byIdentity.length, 4, '2 connections to web, egress + ingress');
  const byIp = await flows('--to-ip', db, '--from-pod', 'shop/meshed');
  t.is(byIp.length, 2);
  const last2 = await meshctl('flows', '--last', '2', '-o', 'json');
  t.is(last2.stdout.trim().split('\n').length, 2, '--last 2');

  // Compact output reads like hubble's.
  const compact = (await meshctl('flows', '--from-pod', 'shop/meshed', '--to-pod', 'shop/db', '--traffic-direction', 'egress', '--print-node-name')).stdout.trim();
  t.regex(compact, /^\w{3} [ \d]\d \d\d:\d\d:\d\d\.\d{3} \[node2\]: shop\/meshed:\d+ \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/client\) -> shop\/db:8080 \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/db\) egress FORWARDED \(HBONE mTLS/);

  // 5. --follow streams new flows as they happen: a pod that keeps connecting (so the test does
  // not depend on how fast meshctl starts), and only flows made after the request are shown.
  const followFrom = Date.now();
  const follower = spawn(MESHCTL, ['flows', '--follow', '--from-pod', 'shop/late', '-o', 'json', '--state-dir', mesh.stateDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (follower.exitCode === null) follower.kill('SIGTERM');
  });
  let followed = '';
  follower.stdout.on('data', (d) => (followed += String(d)));
  const LOOP = `const net = require('node:net'); setInterval(() => { const s = net.connect(8080, process.argv[1]); s.on('connect', () => s.write('ping')); s.on('data', () => s.end()); s.on('error', () => {}); }, 300);`;
  await pod('late', 'node2', 'client', [NODE, '-e', LOOP, web]);
  const got = await waitFor('followed flows', () => {
    const fl = followed.split('\n').filter((l) => l.includes('"flow"')).map((l) => JSON.parse(l) as JsonFlow);
    return fl.length >= 4 ? fl : undefined;
  }, 30_000);
  t.true(got.every((r) => r.flow.source.podName === 'late'), 'only the filtered pod');
  t.true(got.every((r) => r.flow.timeUnixNano >= followFrom * 1e6), 'only flows made after the request');
  follower.kill('SIGTERM');
  await mesh.core.deleteNamespacedPod({ name: 'late', namespace: 'shop' });

  // 6. meshctl status: both nodes, agents and ztunnels connected, config in sync.
  const st = JSON.parse((await meshctl('status', '-o', 'json')).stdout) as { nodes: { name: string; state: string; ztunnelConnected: boolean; configClients: { id: string; inSync: boolean }[] }[]; problems: string[] };
  t.deepEqual(st.nodes.map((n) => n.name), ['node1', 'node2']);
  t.true(st.nodes.every((n) => n.state === 'CONNECTED' && n.ztunnelConnected));
  t.deepEqual(st.problems, []);

  // 7. ztunnel-config shows the cluster's workloads with their addresses and protocol.
  const wl = JSON.parse((await meshctl('ztunnel-config', 'workloads', '--node', 'node1', '-o', 'json')).stdout) as { name: string; namespace: string; addresses: string[]; tunnelProtocol: string }[];
  const byName = new Map(wl.filter((w) => w.namespace === 'shop').map((w) => [w.name, w]));
  t.true(byName.get('web')?.addresses.includes(web), JSON.stringify(byName.get('web')));
  t.is(byName.get('web')?.tunnelProtocol, 'HBONE');
  t.true(byName.get('db')?.addresses.includes(db));

  // 8. meshctl check --post-install: healthy now; a dead ztunnel is named, with exit code 1.
  const healthy = await meshctl('check', '--post-install');
  t.regex(healthy.stdout, /all checks passed: the mesh is healthy/);
  const z2 = mesh.processes.get('ztunnel-node2')!;
  z2.kill('SIGKILL');
  await new Promise((r) => z2.once('exit', r));
  const broken = await waitFor('the dead ztunnel to show', async () => {
    const r = await meshctl('check', '--post-install').then(() => undefined, (e: { code: number; stdout: string }) => e);
    return r && /node2 ztunnel/.test(r.stdout) && r.code === 1 ? r : undefined;
  });
  t.regex(broken.stdout, /✖ node2 ztunnel\s+not connected to the controller/);
  t.is(byName.get('plain'), undefined, 'a pod that has finished is no workload');
});

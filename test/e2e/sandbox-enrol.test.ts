// Enrolment at sandbox creation (what Istio's CNI plugin does): a pod in an ambient namespace is
// captured and served by its ztunnel before its first instruction, so even the connection it makes
// as it starts goes over HBONE — none escapes in plaintext while the agent catches up. A pod that
// is already running when its namespace joins is captured only once ztunnel serves it.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import type { Flow } from '../../src/flows/types.ts';
import { startMesh, waitFor } from '../helpers/mesh.ts';
import { requireRoot } from '../helpers/topology.ts';

const run = promisify(execFile);
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const NODE = process.execPath;
const SERVER = `require('node:net').createServer((s) => { s.on('error', () => {}); s.on('data', () => s.end('pong')); }).listen(8080);`;
// Connects at once, prints the outcome, then stays up (so it stays a workload of the model).
const EAGER = `const s = require('node:net').connect(8080, process.argv[1]);
s.on('connect', () => s.write('ping')); s.on('data', (d) => { console.log('reply', String(d)); s.end(); });
s.on('error', (e) => console.log('error', e.code)); setInterval(() => {}, 1000);`;

test('a pod in an ambient namespace is in the mesh from its first instruction', async (t) => {
  if (!(await requireRoot(t))) return;
  const mesh = await startMesh(t, { ztunnel: true });
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  const pod = (name: string, node: string, command: string[]) =>
    mesh.core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name }, spec: { nodeName: node, containers: [{ name: 'main', image: 'unused', command }] } } as k8s.V1Pod });
  const running = async (name: string) =>
    waitFor(`${name} running`, async () => {
      const p = await mesh.core.readNamespacedPod({ name, namespace: 'shop' });
      return p.status?.phase === 'Running' && p.status.podIP ? p : undefined;
    });
  await pod('web', 'node1', [NODE, '-e', SERVER]);
  const web = await running('web');
  await new Promise((r) => setTimeout(r, 500)); // the server listening

  for (const name of ['eager1', 'eager2', 'eager3']) {
    const created = Date.now();
    const p = await pod(name, 'node2', [NODE, '-e', EAGER, web.status!.podIP!]);
    await running(name);
    t.log(`${name}: created → Running ${Date.now() - created} ms (sandbox, enrolment, ztunnel listeners included)`);
    const log = `${mesh.stateDir}/logs/shop_${name}_main.log`;
    const out = await waitFor(`${name}'s first connection`, () => {
      try {
        const l = readFileSync(log, 'utf8');
        return l.includes('reply') || l.includes('error') ? l : undefined;
      } catch {
        return undefined;
      }
    });
    t.regex(out, /reply pong/, `${name}: the connection made at start succeeded`);
    t.true(mesh.enrolledUids('node2').includes(p.metadata!.uid!), `${name} is enrolled`);
  }
  const { stdout } = await run(MESHCTL, ['flows', '--all', '-o', 'json', '--from-namespace', 'shop', '--state-dir', mesh.stateDir]);
  const flows = stdout.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { flow?: Flow }).flow).filter((f): f is Flow => f !== undefined);
  for (const name of ['eager1', 'eager2', 'eager3']) {
    const mine = flows.filter((f) => f.source.podName === name);
    t.true(mine.length >= 1, `${name} has flows`);
    t.true(mine.every((f) => f.ip.encrypted && f.protocol === 'HBONE'), `${name}: no connection in plaintext: ${JSON.stringify(mine.map((f) => [f.reporter, f.protocol]))}`);
  }
  // The model catches up and keeps them; nothing was unenrolled meanwhile.
  await new Promise((r) => setTimeout(r, 1500));
  t.is(mesh.enrolledUids('node2').length, 3);
});

// New connections every 10 ms: one line per outcome change and a tally per second,
// "<ms> tally <ok> <failed> <codes>".
const LOOP = `
const net = require('node:net');
const ip = process.argv[1];
let ok = 0, failed = 0, codes = [];
setInterval(() => {
  const s = net.connect(8080, ip);
  let got = '';
  s.setTimeout(3000, () => s.destroy(new Error('timeout')));
  s.on('connect', () => s.write('ping'));
  s.on('data', (d) => { got += d; });
  s.on('error', (e) => { s.code = e.code || e.message; });
  s.on('close', () => { if (got === 'pong') ok++; else { failed++; codes.push(s.code || 'closed-without-reply'); } });
}, 10);
setInterval(() => { console.log(Date.now(), 'tally', ok, failed, codes.join(',') || '-'); ok = 0; failed = 0; codes = []; }, 1000);
`;

test('a running pod whose namespace joins the mesh is captured only once ztunnel serves it: none of its connections is refused meanwhile', async (t) => {
  if (!(await requireRoot(t))) return;
  const mesh = await startMesh(t, { ztunnel: true });
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  await mesh.core.createNamespace({ body: { metadata: { name: 'late' } } });
  const pod = (ns: string, name: string, node: string, command: string[]) =>
    mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { nodeName: node, containers: [{ name: 'main', image: 'unused', command }] } } as k8s.V1Pod });
  const running = async (ns: string, name: string) =>
    waitFor(`${name} running`, async () => {
      const p = await mesh.core.readNamespacedPod({ name, namespace: ns });
      return p.status?.phase === 'Running' && p.status.podIP ? p : undefined;
    });
  // The server is in the mesh from the start; the client runs outside it, then its namespace joins.
  await pod('shop', 'web', 'node1', [NODE, '-e', SERVER]);
  const web = await running('shop', 'web');
  await pod('late', 'client', 'node2', [NODE, '-e', LOOP, web.status!.podIP!]);
  const client = await running('late', 'client');
  const log = `${mesh.stateDir}/logs/late_client_main.log`;
  const tallies = (from = 0) =>
    (() => {
      try {
        return readFileSync(log, 'utf8');
      } catch {
        return '';
      }
    })()
      .split('\n')
      .map((l) => l.split(' '))
      .filter(([ts, what]) => what === 'tally' && Number(ts) >= from)
      .map(([, , ok, failed, codes]) => ({ ok: Number(ok), failed: Number(failed), codes: codes ?? '-' }));
  await waitFor('the client connecting, outside the mesh', () => (tallies().reduce((n, x) => n + x.ok, 0) >= 100 ? true : undefined), 30_000);
  t.false(mesh.enrolledUids('node2').includes(client.metadata!.uid!), 'not enrolled before its namespace joins');

  const joined = Date.now();
  await mesh.core.patchNamespace(
    { name: 'late', body: { metadata: { labels: { 'mesh.io/dataplane-mode': 'ambient' } } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await waitFor('the client enrolled', () => (mesh.enrolledUids('node2').includes(client.metadata!.uid!) ? true : undefined), 30_000);
  // Its connections go over HBONE from then on (flows say so), and none failed on the way.
  const hbone = await waitFor('an HBONE flow from the client', async () => {
    const { stdout } = await run(MESHCTL, ['flows', '--all', '-o', 'json', '--from-namespace', 'late', '--state-dir', mesh.stateDir]);
    const flows = stdout.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { flow?: Flow }).flow).filter((f): f is Flow => f !== undefined);
    return flows.find((f) => f.source.podName === 'client' && f.ip.encrypted && f.protocol === 'HBONE');
  }, 30_000);
  t.truthy(hbone, 'the client now talks over HBONE');
  await new Promise((r) => setTimeout(r, 3000));
  const during = tallies(joined - 1000);
  const ok = during.reduce((n, x) => n + x.ok, 0);
  const failed = during.reduce((n, x) => n + x.failed, 0);
  t.log(`from 1 s before the label to 3 s after the first HBONE flow: ${ok} connections ok, ${failed} failed (${during.map((x) => x.codes).filter((c) => c !== '-').join(',') || 'none'})`);
  t.true(ok > 200, `the client kept connecting (${ok})`);
  t.is(failed, 0, 'no connection of the joining pod failed');
});

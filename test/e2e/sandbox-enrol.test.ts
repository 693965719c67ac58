// Enrolment at sandbox creation (what Istio's CNI plugin does): a pod in an ambient namespace is
// captured and served by its ztunnel before its first instruction, so even the connection it makes
// as it starts goes over HBONE — none escapes in plaintext while the agent catches up.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

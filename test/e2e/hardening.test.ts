// Holes a user or an attacker could walk through, each reproduced on the local cluster and closed:
// a waypoint label that switched policy off, and plaintext let in while a restarted ztunnel's
// policies were still on their way. Two nodes, one mesh shared by the tests in order.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { startMesh, waitFor, type Mesh } from '../helpers/mesh.ts';
import { requireRoot } from '../helpers/topology.ts';

const NODE = process.execPath;
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const run = promisify(execFile);

// Answers every request with 200 "ok".
const SERVER = `require('node:http').createServer((q, s) => { s.on('error', () => {}); s.end('ok'); }).listen(8080);`;

// A new connection and GET every 100 ms; one line per attempt: "<ms since epoch> ok|<error>".
const LOOP = `
const http = require('node:http');
setInterval(() => {
  const r = http.get({ host: process.argv[1], port: 8080, path: '/', agent: false, timeout: 1500 }, (s) => {
    let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => console.log(Date.now(), s.statusCode === 200 && b === 'ok' ? 'ok' : 'status-' + s.statusCode));
  });
  r.on('timeout', () => r.destroy(new Error('timeout')));
  r.on('error', (e) => console.log(Date.now(), e.code || e.message));
}, 100);
`;

let mesh: Mesh;
let serverIp = '';

function results(ns: string, pod: string): [number, string][] {
  try {
    return readFileSync(`${mesh.stateDir}/logs/${ns}_${pod}_main.log`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' '))
      .map(([ts, r]) => [Number(ts), r ?? ''] as [number, string]);
  } catch {
    return [];
  }
}

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
  await mk('shop', 'orders', 'node1', [NODE, '-e', SERVER]);
  const server = await waitFor('orders running', async () => {
    const p = await mesh.core.readNamespacedPod({ name: 'orders', namespace: 'shop' });
    return p.status?.podIP && p.status.phase === 'Running' ? p : undefined;
  });
  serverIp = server.status!.podIP!;
  await mk('shop', 'caller', 'node2', [NODE, '-e', LOOP, serverIp]);
  await mk('plain', 'outsider', 'node2', [NODE, '-e', LOOP, serverIp]);
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
  await new Promise((r) => setTimeout(r, 1000));
  const tried = since('plain', 'outsider', from);
  t.true(tried.length > 30, `the outsider kept trying (${tried.length})`);
  t.deepEqual(tried.filter(([, r]) => r === 'ok'), [], 'no plaintext connection was accepted before, during or after the restarts');
});

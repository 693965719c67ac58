// ztunnel killed and restarted: while it is down, enrolled pods get refusals — never plaintext to
// each other — and new connections work again soon after it is back.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { startMesh, waitFor } from '../helpers/mesh.ts';
import { requireRoot } from '../helpers/topology.ts';

const NODE = process.execPath;
const MARKER = 'RESTART-MARKER-91c2';

// A new connection every 20 ms (the resolution of the time-to-serve figure); one line per attempt: "<ms since epoch> ok|<error code>".
const CLIENT = `
const net = require('node:net');
setInterval(() => {
  const s = net.connect(8080, process.argv[1]);
  let got = '';
  s.setTimeout(1000, () => s.destroy(new Error('timeout')));
  s.on('connect', () => s.write('${MARKER}'));
  s.on('data', (d) => { got += d; s.end(); });
  s.on('close', () => console.log(Date.now(), got.includes('ok') ? 'ok' : 'fail'));
  s.on('error', (e) => console.log(Date.now(), e.code || e.message));
}, 20);
`;
// Connections reset by the killed ztunnel must not crash the server (an unhandled 'error' would).
const SERVER = `require('node:net').createServer((s) => { s.on('error', () => {}); s.on('data', () => s.end('ok')); }).listen(8080);`;

test('ztunnel killed and restarted: refusals meanwhile, no plaintext, and service again within seconds', async (t) => {
  if (!(await requireRoot(t))) return;
  // A compile cache of its own, empty at first, as a new node pod's emptyDir: what the
  // replacement finds there is what the crashed ztunnel wrote before it was killed (main.ts
  // flushes it once serving), not what some earlier process wrote at a clean exit.
  const compileCache = mkdtempSync(join(tmpdir(), 'mesh-restart-compile-cache-'));
  process.env.NODE_COMPILE_CACHE = compileCache;
  t.teardown(() => {
    delete process.env.NODE_COMPILE_CACHE;
    rmSync(compileCache, { recursive: true, force: true });
  });
  const mesh = await startMesh(t, { ztunnel: true });
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  const mk = (name: string, node: string, command: string[]) =>
    mesh.core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name }, spec: { nodeName: node, containers: [{ name: 'main', image: 'unused', command }] } } as k8s.V1Pod });
  await mk('server', 'node1', [NODE, '-e', SERVER]);
  const server = await waitFor('server running', async () => {
    const p = await mesh.core.readNamespacedPod({ name: 'server', namespace: 'shop' });
    return p.status?.podIP && p.status.phase === 'Running' ? p : undefined;
  });
  await waitFor('server served', () => ((mesh.logs.get('ztunnel-node1') ?? '').includes('"pod":"shop/server"') ? true : undefined));
  await mk('client', 'node2', [NODE, '-e', CLIENT, server.status!.podIP!]);
  const log = `${mesh.stateDir}/logs/shop_client_main.log`;
  const lines = () => {
    try {
      return readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' ') as [string, string]);
    } catch {
      return [];
    }
  };
  await waitFor('client served', () => ((mesh.logs.get('ztunnel-node2') ?? '').includes('"pod":"shop/client"') ? true : undefined));
  await waitFor('successful connections', () => (lines().filter(([, r]) => r === 'ok').length >= 5 ? true : undefined), 15_000);

  const capFile = `${mesh.stateDir}/restart.pcap`;
  const tshark = spawn('ip', ['netns', 'exec', `${mesh.prefix}-fabric`, 'tshark', '-q', '-i', 'f0', '-w', capFile, '-f', 'tcp'], { stdio: 'ignore' });
  t.teardown(() => {
    if (tshark.exitCode === null) tshark.kill('SIGTERM');
  });
  await new Promise((r) => setTimeout(r, 1500));

  // Kill the client's ztunnel (node2) hard.
  const z = mesh.processes.get('ztunnel-node2')!;
  const killedAt = Date.now();
  z.kill('SIGKILL');
  await new Promise((r) => z.once('exit', r));
  await new Promise((r) => setTimeout(r, 1500));
  const down = lines().filter(([ts]) => Number(ts) > killedAt + 200 && Number(ts) < killedAt + 1400);
  t.true(down.length > 5, 'the client kept trying');
  t.true(down.every(([, r]) => r !== 'ok'), `no connection succeeded while ztunnel was down: ${down.map(([, r]) => r).join(',')}`);

  const restartedAt = Date.now();
  await mesh.startProcess('ztunnel', 'node2');
  const back = await waitFor('connections to succeed again', () => {
    const ok = lines().find(([ts, r]) => Number(ts) > restartedAt && r === 'ok');
    return ok ? Number(ok[0]) : undefined;
  }, 45_000).catch((e: Error) => {
    const tailFile = (f: string) => {
      try {
        return readFileSync(f, 'utf8').split('\n').slice(-8).join('\n');
      } catch (err) {
        return (err as Error).message;
      }
    };
    const tail = (k: string) => (mesh.logs.get(k) ?? '').split('\n').slice(-8).join('\n');
    throw new Error(`${e.message}\nclient: ${lines().slice(-3).map((l) => l.join(' ')).join('; ')}\nztunnel-node2:\n${tail('ztunnel-node2')}\nztunnel-node1:\n${tail('ztunnel-node1')}\nagent-node2:\n${tail('agent-node2')}\nserver pod:\n${tailFile(`${mesh.stateDir}/logs/shop_server_main.log`)}`);
  });
  // From the replacement's spawn (the issue's measure: module loading, certificates, config sync
  // and ZDS included), and from before its node token was written (the local cluster's extra step).
  const spawnedAt = mesh.local.spawnedAt.get('ztunnel-node2')!;
  t.true(spawnedAt >= restartedAt, 'the replacement was spawned by this test');
  t.log(`ztunnel restart → first successful new connection: ${back - spawnedAt} ms after the replacement's spawn (${back - restartedAt} ms after the restart began)`);
  // Where the time went, from the replacement's own log (its lines carry their time).
  const milestones = (mesh.logs.get('ztunnel-node2') ?? '')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { time: string; msg: string; pod?: string; uptimeMs?: number })
    .filter((l) => ['requesting the node certificate', 'modules loaded', 'node certificate', 'config stream connected', 'serving pod', 'ztunnel ready'].includes(l.msg))
    .map((l) => `${l.msg}${l.pod ? ` ${l.pod}` : ''} +${Date.parse(l.time) - spawnedAt} ms${l.uptimeMs !== undefined ? ` (uptime ${l.uptimeMs} ms)` : ''}`);
  t.log(`replacement's start, from its spawn: ${milestones.join('; ')}`);
  await new Promise((r) => setTimeout(r, 500));
  tshark.kill('SIGTERM');
  await new Promise((r) => tshark.once('exit', r));
  const wire = readFileSync(capFile);
  t.true(wire.length > 1000, 'the capture saw traffic');
  t.false(wire.includes(MARKER), 'no plaintext crossed the wire before, during or after the restart');
});

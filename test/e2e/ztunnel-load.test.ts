// ztunnel under load, through the whole pod path (capture → outbound ztunnel → HBONE across the
// nodes → inbound ztunnel → app): a 1 GiB stream byte-exact by ClusterIP, 1,000 connections open
// at the same time by pod IP, and garbage sent straight at a pod's 15008 and 15006 while a mesh
// client keeps being served.
import { readFileSync, writeFileSync } from 'node:fs';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { startMesh, waitFor, type Mesh } from '../helpers/mesh.ts';
import { requireRoot } from '../helpers/topology.ts';

const NODE = process.execPath;
// Replies "<bytes> <sha256>" for what each connection sent.
const SERVER = `const crypto = require('node:crypto');
const srv = require('node:net').createServer((s) => {
  const h = crypto.createHash('sha256'); let n = 0;
  s.on('error', () => {}); s.on('data', (d) => { n += d.length; h.update(d); });
  s.on('end', () => s.end(n + ' ' + h.digest('hex') + '\\n'));
});
srv.maxConnections = 5000; srv.listen({ port: 8080, backlog: 2048 });`;
// bulk: one connection with BYTES bytes; many: N connections opened together, then each sends.
const CLIENT = `const net = require('node:net'); const crypto = require('node:crypto'); const fs = require('node:fs');
const [host, mode, arg] = process.argv.slice(1); const PORT = Number(process.env.PORT || 8080);
const out = (o) => fs.appendFileSync(process.env.OUT, JSON.stringify(o) + '\\n');
function exchange(s, send) {
  return new Promise((resolve) => { let r = ''; s.on('data', (d) => (r += d)); s.on('error', (e) => resolve({ error: e.code || e.message })); s.on('close', () => resolve({ reply: r.trim() })); send(); });
}
(async () => {
  if (mode === 'bulk') {
    const total = Number(arg); const chunk = crypto.randomBytes(1 << 20); const h = crypto.createHash('sha256'); let sent = 0;
    const s = net.connect(PORT, host); const t0 = Date.now();
    const r = await exchange(s, () => s.on('connect', function pump() {
      while (sent < total) { const ok = s.write(chunk); h.update(chunk); sent += chunk.length; if (!ok) { s.once('drain', pump); return; } }
      s.end();
    }));
    out({ mode, bytes: sent, sha: h.digest('hex'), ms: Date.now() - t0, ...r });
  } else {
    const n = Number(arg); const socks = [];
    for (let i = 0; i < n; i++) socks.push(net.connect(PORT, host));
    const connected = await Promise.all(socks.map((s) => new Promise((res) => { s.once('connect', () => res(true)); s.once('error', () => res(false)); })));
    const replies = await Promise.all(socks.map((s, i) => exchange(s, () => s.end('conn-' + i))));
    const ok = replies.filter((r, i) => r.reply === ('conn-' + i).length + ' ' + crypto.createHash('sha256').update('conn-' + i).digest('hex')).length;
    out({ mode, connected: connected.filter(Boolean).length, ok, errors: [...new Set(replies.filter((r) => r.error).map((r) => r.error))] });
  }
})();`;

function pod(mesh: Mesh, ns: string, name: string, node: string, command: string[], env: Record<string, string> = {}, restartPolicy = 'Always'): Promise<k8s.V1Pod> {
  return mesh.core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { name, labels: { app: name } }, spec: { nodeName: node, restartPolicy, containers: [{ name: 'main', image: 'unused', command, env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })) }] } } as k8s.V1Pod,
  });
}

async function ipOf(mesh: Mesh, ns: string, name: string): Promise<string> {
  return waitFor(`${ns}/${name} running`, async () => {
    const p = await mesh.core.readNamespacedPod({ name, namespace: ns });
    return p.status?.phase === 'Running' && p.status.podIP ? p.status.podIP : undefined;
  });
}

async function result(mesh: Mesh, file: string, timeoutMs: number): Promise<Record<string, unknown>> {
  return waitFor(`client result in ${file}`, () => {
    try {
      const l = readFileSync(file, 'utf8').trim();
      return l ? (JSON.parse(l.split('\n')[0]!) as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  }, timeoutMs).catch((e: Error) => {
    throw new Error(`${e.message}\nztunnel-node2: ${(mesh.logs.get('ztunnel-node2') ?? '').slice(-1500)}\nztunnel-node1: ${(mesh.logs.get('ztunnel-node1') ?? '').slice(-1500)}`);
  });
}

test('1 GiB byte-exact by ClusterIP, 1,000 concurrent connections, and garbage on 15008/15006 through the pod path', async (t) => {
  if (!(await requireRoot(t))) return;
  const mesh = await startMesh(t, { ztunnel: true });
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  await mesh.core.createNamespace({ body: { metadata: { name: 'plain' } } });
  await pod(mesh, 'shop', 'sink', 'node1', [NODE, '-e', SERVER]);
  const sink = await ipOf(mesh, 'shop', 'sink');
  await mesh.core.createNamespacedService({ namespace: 'shop', body: { metadata: { name: 'sink' }, spec: { selector: { app: 'sink' }, ports: [{ port: 80, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
  const vip = (await mesh.core.readNamespacedService({ name: 'sink', namespace: 'shop' })).spec!.clusterIP!;
  await new Promise((r) => setTimeout(r, 500));

  // 1 GiB by ClusterIP (port 80 → 8080), across the nodes.
  const bulkOut = `${mesh.stateDir}/bulk.out`;
  writeFileSync(bulkOut, '');
  const BYTES = 1 << 30;
  await pod(mesh, 'shop', 'bulk', 'node2', [NODE, '-e', CLIENT, vip, 'bulk', String(BYTES)], { OUT: bulkOut, PORT: '80' }, 'Never');
  const bulk = await result(mesh, bulkOut, 240_000);
  t.is(bulk.bytes, BYTES);
  t.is(bulk.reply, `${BYTES} ${String(bulk.sha)}`, `the server got exactly the ${BYTES} bytes sent: ${JSON.stringify(bulk)}`);
  t.log(`1 GiB through two ztunnels by ClusterIP: ${bulk.ms} ms (${((BYTES * 8) / Number(bulk.ms) / 1e6).toFixed(2)} Gbit/s)`);

  // 1,000 connections open at once, by pod IP.
  const manyOut = `${mesh.stateDir}/many.out`;
  writeFileSync(manyOut, '');
  await pod(mesh, 'shop', 'many', 'node2', [NODE, '-e', CLIENT, sink, 'many', '1000'], { OUT: manyOut }, 'Never');
  const many = await result(mesh, manyOut, 120_000);
  t.is(many.connected, 1000, JSON.stringify(many));
  t.is(many.ok, 1000, `every connection answered byte-exact: ${JSON.stringify(many)}`);

  // Garbage straight at the pod's 15008 (HBONE) and 15006 (ztunnel's inbound port), from a pod
  // outside the mesh, while a mesh client keeps being served.
  const GARBAGE = `const net = require('node:net'); const fs = require('node:fs'); const [host] = process.argv.slice(1);
const one = (port, data) => new Promise((resolve) => { const s = net.connect(port, host); let r = Buffer.alloc(0);
  s.setTimeout(5000, () => s.destroy(new Error('timeout')));
  s.on('connect', () => s.write(data)); s.on('data', (d) => (r = Buffer.concat([r, d])));
  s.on('error', (e) => resolve({ port, error: e.code || e.message, got: r.length })); s.on('close', () => resolve({ port, closed: true, got: r.length, head: r.subarray(0, 16).toString('hex') })); });
(async () => { for (const [port, data] of [[15008, 'GET / HTTP/1.1\\r\\n\\r\\n'], [15008, Buffer.alloc(4096, 0xff)], [15006, 'garbage\\n']]) fs.appendFileSync(process.env.OUT, JSON.stringify(await one(port, data)) + '\\n'); })();`;
  const garbageOut = `${mesh.stateDir}/garbage.out`;
  writeFileSync(garbageOut, '');
  await pod(mesh, 'plain', 'junk', 'node2', [NODE, '-e', GARBAGE, sink], { OUT: garbageOut }, 'Never');
  const garbage = await waitFor('garbage results', () => {
    const l = readFileSync(garbageOut, 'utf8').trim().split('\n').filter(Boolean);
    return l.length >= 3 ? l.map((x) => JSON.parse(x) as { port: number; error?: string; closed?: boolean; got: number }) : undefined;
  }, 30_000);
  for (const g of garbage) t.true(g.closed === true || g.error !== undefined, `port ${g.port}: the connection ends (${JSON.stringify(g)})`);
  t.true(garbage.every((g) => g.error !== 'timeout'), `no garbage connection is left hanging: ${JSON.stringify(garbage)}`);
  const afterOut = `${mesh.stateDir}/after.out`;
  writeFileSync(afterOut, '');
  await pod(mesh, 'shop', 'after', 'node2', [NODE, '-e', CLIENT, sink, 'many', '10'], { OUT: afterOut }, 'Never');
  const after = await result(mesh, afterOut, 60_000);
  t.is(after.ok, 10, `ztunnel keeps serving the mesh after the garbage: ${JSON.stringify(after)}`);
  t.false((mesh.logs.get('ztunnel-node1') ?? '').includes('"level":60'), 'no fatal error in the destination ztunnel');
  t.is(mesh.processes.get('ztunnel-node1')?.exitCode, null, 'the destination ztunnel is still running');
});

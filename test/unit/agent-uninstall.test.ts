// Uninstall or restart: the agent's reading of the API server's answer about its DaemonSet
// (src/agent/uninstall.ts), and where the local kubelet resolves a node pod's hostPaths
// (src/local/runtime/noderoot.ts). The whole path runs in test/e2e/chart-mesh.test.ts.
import { mkdtempSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { judge, shutdownKind } from '../../src/agent/uninstall.ts';
import { NodeRoot } from '../../src/local/runtime/noderoot.ts';
import { loadOrCreatePki } from '../../src/local/apiserver/pki.ts';

test('a DaemonSet that is there and not deleting is a restart: the datapath stays', (t) => {
  const k = judge(200, JSON.stringify({ metadata: { name: 'mesh-node' } }), 'mesh-system/mesh-node');
  t.false(k.uninstall);
  t.regex(k.why, /still there/);
});

test('gone, deleting, or the account or its Role removed is an uninstall', (t) => {
  t.true(judge(404, '', 'mesh-system/mesh-node').uninstall);
  t.true(judge(200, JSON.stringify({ metadata: { deletionTimestamp: '2026-12-07T00:00:00Z' } }), 'ds').uninstall);
  t.true(judge(401, '', 'ds').uninstall);
  t.true(judge(403, '', 'ds').uninstall);
});

test('no answer, or a server error, keeps the datapath (fail closed)', (t) => {
  for (const status of [undefined, 500, 503]) {
    const k = judge(status, 'boom', 'ds');
    t.false(k.uninstall);
    t.regex(k.why, /keeping the datapath/);
  }
});

test('shutdownKind asks for the DaemonSet with the pod token over TLS checked against ca.crt', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-uninstall-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pki = await loadOrCreatePki(dir);
  const sa = join(dir, 'sa');
  mkdirSync(sa);
  writeFileSync(join(sa, 'token'), 'the-token\n');
  writeFileSync(join(sa, 'ca.crt'), pki.caCertPem);
  const seen: { path?: string; auth?: string }[] = [];
  let status = 200;
  const server = createServer({ key: pki.keyPem, cert: pki.certPem }, (req, res) => {
    seen.push({ path: req.url ?? '', auth: req.headers.authorization ?? '' });
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ metadata: { name: 'mesh-node' } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String((server.address() as { port: number }).port) };
  t.false((await shutdownKind('mesh-system', 'mesh-node', env, sa)).uninstall);
  t.deepEqual(seen[0], { path: '/apis/apps/v1/namespaces/mesh-system/daemonsets/mesh-node', auth: 'Bearer the-token' });
  status = 404;
  t.true((await shutdownKind('mesh-system', 'mesh-node', env, sa)).uninstall);
  // Without credentials it cannot tell, and keeps everything.
  t.false((await shutdownKind('mesh-system', 'mesh-node', env, join(dir, 'absent'))).uninstall);
  t.false((await shutdownKind('mesh-system', 'mesh-node', {}, sa)).uninstall);
});

test("a node's own host paths resolve into its root; others stay the host's", (t) => {
  const root = new NodeRoot('/state/nodes/node1/root', '/sys/fs/cgroup/unified/x-kubepods/node1');
  t.is(root.resolve('/sys/fs/bpf'), '/state/nodes/node1/root/sys/fs/bpf');
  t.is(root.resolve('/sys/fs/cgroup'), '/state/nodes/node1/root/sys/fs/cgroup');
  t.is(root.resolve('/var/run/mesh'), '/state/nodes/node1/root/var/run/mesh');
  t.is(root.resolve('/etc/cni/net.d/'), '/state/nodes/node1/root/etc/cni/net.d/');
  t.is(root.resolve('/opt/cni/bin'), '/state/nodes/node1/root/opt/cni/bin');
  t.is(root.resolve('/usr'), '/usr');
  t.is(root.resolve('/tmp/mesh-x-bpffs'), '/tmp/mesh-x-bpffs');
  t.is(root.resolve('/sys/fs/bpfx'), '/sys/fs/bpfx');
  t.is(root.resolve('/run/../usr'), '/usr');
});

test("an old agent's stop leaves the sockets a newer agent bound at the same paths", async (t) => {
  const { createServer, connect } = await import('node:net');
  const { boundSockets, closeKeepingOthers } = await import('../../src/agent/sockets.ts');
  const dir = mkdtempSync(join(tmpdir(), 'mesh-sockets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'zds.sock');
  const listen = (p: string) => new Promise<ReturnType<typeof createServer>>((resolve) => {
    const srv = createServer((c) => c.end('new'));
    srv.listen(p, () => resolve(srv));
  });
  const old = await listen(path);
  const mine = boundSockets([path, join(dir, 'absent.sock')]);
  t.deepEqual([...mine.keys()], [path]);
  // The newer agent removes the file and binds the path again, as ZdsServer.listen does.
  rmSync(path);
  const newer = await listen(path);
  t.teardown(() => newer.close());
  const kept = await closeKeepingOthers(mine, () => void old.close());
  t.deepEqual(kept, [path]);
  const answer = await new Promise<string>((resolve, reject) => {
    const c = connect(path);
    let b = '';
    c.on('data', (d) => (b += String(d)));
    c.on('end', () => resolve(b));
    c.on('error', reject);
  });
  t.is(answer, 'new');
  // Its own path, not taken over: closed and gone as before.
  const alone = join(dir, 'alone.sock');
  const own = await listen(alone);
  t.deepEqual(await closeKeepingOthers(boundSockets([alone]), () => void own.close()), []);
  t.throws(() => statSync(alone));
});

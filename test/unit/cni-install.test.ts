// The CNI installer on a fake node (temp conf and bin dirs): installs once, changes nothing the
// second time, puts its entry back when the primary CNI rewrites its file, and leaves nothing
// behind on uninstall. The installed launcher runs the plugin.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import * as yaml from 'js-yaml';
import { computeManifest, Installer, loadInstallConfig, planBundle } from '../../src/cni/index.ts';
import { hostEnv } from '../../src/common/settings.ts';

const run = promisify(execFile);
const PRIMARY = { cniVersion: '1.0.0', name: 'podnet', plugins: [{ type: 'bridge', bridge: 'cni0' }, { type: 'portmap' }] };

// Planned once for the file: every fake node installs the same bundle (≈ 125 MB read and hashed).
const MANIFEST = computeManifest();
const BUNDLE = planBundle(MANIFEST);

function node(t: { teardown(fn: () => void): void }, bundle = BUNDLE) {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-cni-install-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const confDir = join(dir, 'net.d');
  const binDir = join(dir, 'bin');
  mkdirSync(confDir);
  mkdirSync(binDir);
  writeFileSync(join(dir, 'token'), 'tok-1\n');
  writeFileSync(join(dir, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  const cfg = loadInstallConfig({
    MESH_CNI_CONF_DIR: confDir,
    MESH_CNI_BIN_DIR: binDir,
    MESH_CNI_TOKEN_FILE: join(dir, 'token'),
    MESH_CNI_CA_FILE: join(dir, 'ca.crt'),
    MESH_CNI_RECHECK: '100ms',
    KUBERNETES_SERVICE_HOST: '10.96.0.1',
  }, bundle);
  return { dir, confDir, binDir, cfg, installer: new Installer(cfg, { retireAfterMs: 300 }) };
}
/** The settings a node's installer was given, as the environment that gives them. */
function pick(cfg: { confDir: string; binDir: string; tokenFile: string; caFile: string }) {
  return { MESH_CNI_CONF_DIR: cfg.confDir, MESH_CNI_BIN_DIR: cfg.binDir, MESH_CNI_TOKEN_FILE: cfg.tokenFile, MESH_CNI_CA_FILE: cfg.caFile, KUBERNETES_SERVICE_HOST: '10.96.0.1' };
}
const types = (path: string) => (JSON.parse(readFileSync(path, 'utf8')) as { plugins: { type: string }[] }).plugins.map((p) => p.type);

test('install chains the plugin after the primary network, writes the kubeconfig and the launcher; a second pass changes nothing', async (t) => {
  const n = node(t);
  writeFileSync(join(n.confDir, '10-podnet.conflist'), JSON.stringify(PRIMARY));
  writeFileSync(join(n.confDir, '99-later.conflist'), JSON.stringify({ ...PRIMARY, name: 'later' }));
  const first = n.installer.ensure();
  t.is(first.conflist, join(n.confDir, '10-podnet.conflist'));
  t.deepEqual(types(first.conflist!), ['bridge', 'portmap', 'mesh-cni']);
  t.deepEqual(types(join(n.confDir, '99-later.conflist')), ['bridge', 'portmap'], 'only the primary network is touched');
  const kc = yaml.load(readFileSync(n.cfg.kubeconfig, 'utf8')) as { clusters: { cluster: { server: string } }[]; users: { user: { token: string } }[] };
  t.is(kc.clusters[0]!.cluster.server, 'https://10.96.0.1:443');
  t.is(kc.users[0]!.user.token, 'tok-1');
  t.is(statSync(n.cfg.kubeconfig).mode & 0o777, 0o600, 'the token is not world-readable');
  t.deepEqual(n.installer.ensure().changed, [], 'idempotent');
  // The installed plugin runs from its bundle alone: no PATH, nothing of this checkout.
  t.deepEqual(readdirSync(n.binDir).sort(), ['mesh-cni', 'mesh-cni.d']);
  t.deepEqual(readdirSync(join(n.binDir, 'mesh-cni.d')), [BUNDLE.version]);
  t.regex(readFileSync(join(n.binDir, 'mesh-cni'), 'utf8'), new RegExp(`mesh-cni\\.d/${BUNDLE.version}"`));
  const child = run(join(n.binDir, 'mesh-cni'), [], { env: { CNI_COMMAND: 'VERSION' } });
  child.child.stdin!.end('{"cniVersion":"1.0.0"}');
  const { stdout } = await child;
  t.like(JSON.parse(stdout), { supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  // A rotated token reaches the kubeconfig.
  writeFileSync(join(n.dir, 'token'), 'tok-2\n');
  t.deepEqual(n.installer.ensure().changed, [n.cfg.kubeconfig]);
});

test('a single-plugin .conf is converted to a .conflist holding it and our entry', (t) => {
  const n = node(t);
  writeFileSync(join(n.confDir, '10-flannel.conf'), JSON.stringify({ cniVersion: '0.4.0', name: 'cbr0', type: 'flannel' }));
  const s = n.installer.ensure();
  t.is(s.conflist, join(n.confDir, '10-flannel.conflist'));
  t.false(existsSync(join(n.confDir, '10-flannel.conf')));
  t.deepEqual(types(s.conflist!), ['flannel', 'mesh-cni']);
});

test('no primary network yet: the installer waits, and chains once the primary CNI writes its file', async (t) => {
  const n = node(t);
  n.installer.start();
  t.teardown(() => n.installer.stop());
  await new Promise((r) => setTimeout(r, 50));
  writeFileSync(join(n.confDir, '10-podnet.conflist'), JSON.stringify(PRIMARY));
  const path = join(n.confDir, '10-podnet.conflist');
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && !types(path).includes('mesh-cni')) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(types(path), ['bridge', 'portmap', 'mesh-cni']);
});

test('the primary CNI rewriting its file loses our entry only for a moment', async (t) => {
  const n = node(t);
  const path = join(n.confDir, '10-podnet.conflist');
  writeFileSync(path, JSON.stringify(PRIMARY));
  n.installer.start();
  t.teardown(() => n.installer.stop());
  const started = Date.now();
  writeFileSync(path, JSON.stringify(PRIMARY)); // as Calico or Cilium do when they restart
  while (Date.now() - started < 3000 && !types(path).includes('mesh-cni')) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(types(path), ['bridge', 'portmap', 'mesh-cni']);
  t.log(`entry back ${Date.now() - started} ms after the rewrite`);
});

test('an upgrade installs the new plugin version beside the running one, switches the launcher, and removes the old one after the grace', async (t) => {
  const n = node(t);
  writeFileSync(join(n.confDir, '10-podnet.conflist'), JSON.stringify(PRIMARY));
  n.installer.ensure();
  const next = planBundle({ ...MANIFEST, files: [...MANIFEST.files, 'README.md'] });
  t.not(next.version, BUNDLE.version, 'another file, another version');
  const upgraded = new Installer(loadInstallConfig({ ...process.env, ...pick(n.cfg) }, next), { retireAfterMs: 300 });
  const s = upgraded.ensure();
  t.true(s.changed.includes(join(n.binDir, 'mesh-cni.d', next.version)));
  t.true(s.changed.includes(join(n.binDir, 'mesh-cni')));
  t.deepEqual(readdirSync(join(n.binDir, 'mesh-cni.d')).sort(), [BUNDLE.version, next.version].sort(), 'the old version stays for ADDs that read the old launcher');
  t.regex(readFileSync(join(n.binDir, 'mesh-cni'), 'utf8'), new RegExp(next.version));
  await new Promise((r) => setTimeout(r, 350));
  upgraded.ensure();
  t.deepEqual(readdirSync(join(n.binDir, 'mesh-cni.d')), [next.version]);
  t.deepEqual(upgraded.ensure().changed, [], 'settled');
});

test('uninstall takes out our entry, the kubeconfig and the launcher, and nothing else', (t) => {
  const n = node(t);
  const path = join(n.confDir, '10-podnet.conflist');
  writeFileSync(path, JSON.stringify(PRIMARY));
  n.installer.start();
  n.installer.uninstall();
  t.deepEqual(JSON.parse(readFileSync(path, 'utf8')), PRIMARY);
  t.deepEqual(readdirSync(n.confDir), ['10-podnet.conflist']);
  t.deepEqual(readdirSync(n.binDir), []);
  t.notThrows(() => n.installer.uninstall(), 'uninstalling twice is fine');
});

test('the installer refuses a misspelt setting and needs an API server', (t) => {
  t.throws(() => loadInstallConfig({ MESH_CNI_CONF_DIRS: '/x', KUBERNETES_SERVICE_HOST: 'h' }), { message: /MESH_CNI_CONF_DIRS \(did you mean MESH_CNI_CONF_DIR\?\)/ });
  t.throws(() => loadInstallConfig({}), { message: /MESH_CNI_API_SERVER is not set/ });
  t.is(loadInstallConfig({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }).apiServer, 'https://[fd00::1]:6443');
});

test('the installer process installs, and on SIGTERM takes everything out again', async (t) => {
  const n = node(t);
  const path = join(n.confDir, '10-podnet.conflist');
  writeFileSync(path, JSON.stringify(PRIMARY));
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [fileURLToPath(new URL('../../src/cni/install-main.ts', import.meta.url))], {
    env: { ...hostEnv(), MESH_LOG_LEVEL: 'info', MESH_CNI_CONF_DIR: n.confDir, MESH_CNI_BIN_DIR: n.binDir, MESH_CNI_TOKEN_FILE: join(n.dir, 'token'), MESH_CNI_CA_FILE: join(n.dir, 'ca.crt'), MESH_CNI_API_SERVER: 'https://127.0.0.1:6443' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && !log.includes('mesh CNI plugin installed')) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(types(path), ['bridge', 'portmap', 'mesh-cni'], log);
  child.kill('SIGTERM');
  t.is(await exited, 0, log);
  t.deepEqual(JSON.parse(readFileSync(path, 'utf8')), PRIMARY);
  t.deepEqual(readdirSync(n.confDir), ['10-podnet.conflist']);
  t.deepEqual(readdirSync(n.binDir), []);
});

test('a bad setting stops the installer process with the variable named', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [fileURLToPath(new URL('../../src/cni/install-main.ts', import.meta.url))], { env: { ...hostEnv(), MESH_CNI_WAIT_ZTUNNEL: 'soon', MESH_CNI_API_SERVER: 'https://x' }, encoding: 'utf8' });
  t.is(r.status, 1);
  t.regex(r.stdout + r.stderr, /MESH_CNI_WAIT_ZTUNNEL=soon/);
});

test('when another file becomes the primary network, our entry moves there', (t) => {
  const n = node(t);
  writeFileSync(join(n.confDir, '10-podnet.conflist'), JSON.stringify(PRIMARY));
  n.installer.ensure();
  writeFileSync(join(n.confDir, '05-cilium.conflist'), JSON.stringify({ ...PRIMARY, name: 'cilium', plugins: [{ type: 'cilium-cni' }] }));
  n.installer.ensure();
  t.deepEqual(types(join(n.confDir, '05-cilium.conflist')), ['cilium-cni', 'mesh-cni']);
  t.deepEqual(types(join(n.confDir, '10-podnet.conflist')), ['bridge', 'portmap']);
});

// The images `make images` builds, run as a cluster runs them: each starts the pinned Node 24, each
// process reads its settings and fails on a bad one with its own clear message, the controller and
// waypoint run as uid 1337, and the node image's addon loads libbpf and puts the BPF object through
// the kernel's verifier. Builds the images once (an unchanged checkout reuses what `make images`
// built). Needs root and podman with runc (make setup).
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { findCgroup2Mount } from '../../src/common/cgroup.ts';
import { containerUlimits, removeV1Tree } from '../../src/local/runtime/oci.ts';
import test, { type ExecutionContext } from 'ava';
import { IMAGES, INPUTS_LABEL, imageTags } from '../../src/images/build.ts';
import { requireRoot } from '../helpers/topology.ts';

const ROOT = join(import.meta.dirname, '../..');
const BUILD = join(ROOT, 'src/images/build.ts');
const PODMAN = ['--runtime', 'runc', '--cgroup-manager', 'cgroupfs'];
const ULIMITS = containerUlimits();
const image = (name: string) => `${IMAGES.find((i) => i.name === name)!.repository}:latest`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], timeout = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout, maxBuffer: 16 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

// The containers' cgroup parent: the test's own, removed after (podman's default, libpod_parent,
// would stay on the host; the leak check reports it).
const CGROUP = join(findCgroup2Mount(), `mesh-images-${process.pid}`);
test.after.always(() => {
  removeV1Tree(CGROUP);
  try {
    rmdirSync(CGROUP);
  } catch {
    // never made, or already gone
  }
});

/** `podman run --rm` of an image, as the local kubelet runs one (runc, cgroupfs, the host's ulimits). */
function run(img: string, opts: { args?: string[]; entrypoint?: string[]; env?: Record<string, string>; flags?: string[] } = {}): Promise<Run> {
  mkdirSync(CGROUP, { recursive: true });
  const a = [...PODMAN, 'run', '--rm', '--pull', 'never', '--cgroup-parent', `/${relative(findCgroup2Mount(), CGROUP)}`, ...ULIMITS, ...(opts.flags ?? [])];
  for (const [k, v] of Object.entries(opts.env ?? {})) a.push('--env', `${k}=${v}`);
  if (opts.entrypoint) a.push('--entrypoint', JSON.stringify(opts.entrypoint));
  return sh('podman', [...a, img, ...(opts.args ?? [])]);
}

let build: Promise<{ ms: number; out: string }> | undefined;
/** Builds the images once per test run; the build itself skips images whose inputs are unchanged. */
function built(): Promise<{ ms: number; out: string }> {
  build ??= (async () => {
    const t0 = Date.now();
    const r = await sh(process.execPath, [BUILD], 120_000);
    if (r.code !== 0) throw new Error(`make images failed: ${r.stderr || r.stdout}`);
    return { ms: Date.now() - t0, out: r.stdout };
  })();
  return build;
}

async function ready(t: ExecutionContext): Promise<boolean> {
  if (!(await requireRoot(t))) return false;
  await built();
  return true;
}

test('the images build FROM scratch in well under a minute, tagged latest and the version, and a rebuild of the same checkout reuses them', async (t) => {
  if (!(await ready(t))) return;
  const first = await built();
  t.log(first.out.trim());
  t.log(`build: ${(first.ms / 1000).toFixed(1)} s`);
  t.true(first.ms < 60_000, `building took ${first.ms} ms`);
  const again = await sh(process.execPath, [BUILD]);
  t.is(again.code, 0, again.stderr);
  for (const spec of IMAGES) t.regex(again.stdout, new RegExp(`${spec.name}: .* unchanged`));
  t.log(`rebuild of an unchanged checkout: ${again.stdout.match(/done in (\S+ s)/)?.[1]}`);
  for (const spec of IMAGES) {
    const [latest, version] = imageTags().map((tag) => `${spec.repository}:${tag}`);
    const ids = await Promise.all([latest!, version!].map((ref) => sh('podman', ['image', 'inspect', '--format', '{{.Id}}', ref])));
    t.is(ids[0]!.code, 0, `${latest} is missing`);
    t.is(ids[0]!.stdout, ids[1]!.stdout, `${latest} and ${version} are one image`);
    const cfg = JSON.parse((await sh('podman', ['image', 'inspect', '--format', '{{json .Config}}', latest!])).stdout) as {
      User: string;
      Entrypoint: string[];
      Cmd: string[];
      Labels: Record<string, string>;
    };
    t.deepEqual(cfg.Entrypoint, ['/usr/local/bin/node']);
    t.deepEqual(cfg.Cmd, [spec.defaultEntry]);
    t.is(cfg.User, spec.name === 'node' ? '0:0' : '1337:1337');
    t.is(cfg.Labels['org.opencontainers.image.title'], `mesh-${spec.name}`);
    t.is(cfg.Labels['org.opencontainers.image.version'], imageTags()[1]);
    t.is(cfg.Labels['org.opencontainers.image.licenses'], 'Apache-2.0');
    t.regex(cfg.Labels[INPUTS_LABEL] ?? '', /^[0-9a-f]{64}$/);
    const size = (await sh('podman', ['images', '--format', '{{.Size}}', latest!])).stdout.trim();
    t.log(`${latest}: ${size}`);
  }
});

test('each image runs the pinned Node 24, with no shell, no dev dependencies and no host libraries beyond what it links', async (t) => {
  if (!(await ready(t))) return;
  const pinned = (await sh(join(ROOT, 'node_modules/node/bin/node'), ['--version'])).stdout.trim();
  t.regex(pinned, /^v24\./);
  for (const spec of IMAGES) {
    const v = await run(image(spec.name), { args: ['--version'] });
    t.is(v.code, 0, v.stderr);
    t.is(v.stdout.trim(), pinned, spec.name);
    const look = await run(image(spec.name), {
      entrypoint: ['node', '--input-type=module', '-e', [
        "import { existsSync, readdirSync } from 'node:fs';",
        "console.log(JSON.stringify({ sh: existsSync('/bin/sh'), dev: ['typescript', 'ava', 'eslint', 'node-gyp', '@types/node', 'node'].filter((p) => existsSync('/app/node_modules/' + p)),",
        "  libs: readdirSync('/lib/x86_64-linux-gnu').sort(), uid: process.getuid() }));",
      ].join('\n')],
    });
    t.is(look.code, 0, look.stderr);
    const seen = JSON.parse(look.stdout) as { sh: boolean; dev: string[]; libs: string[]; uid: number };
    t.false(seen.sh, `${spec.name}: a shell in a FROM scratch image`);
    t.deepEqual(seen.dev, [], `${spec.name}: dev dependencies in the image`);
    t.is(seen.uid, spec.name === 'node' ? 0 : 1337);
    const addonLibs = ['libbpf.so.1', 'libelf.so.1', 'libmnl.so.0', 'libz.so.1'];
    for (const lib of addonLibs) t.is(seen.libs.includes(lib), spec.name === 'node', `${spec.name}: ${lib}`);
    t.log(`${spec.name}: ${seen.libs.join(' ')}`);
  }
});

test('controller image: an unknown MESH_ setting stops it at start with the list of the settings it reads', async (t) => {
  if (!(await ready(t))) return;
  const r = await run(image('controller'), { env: { MESH_TRUST_DOMAN: 'example.org' } });
  t.is(r.code, 1);
  t.regex(r.stderr + r.stdout, /unknown setting MESH_TRUST_DOMAN \(did you mean MESH_TRUST_DOMAIN\?\): the controller reads /);
  t.regex(r.stderr + r.stdout, /"code":"MESH_ERR_CONFIG"/);
});

test('waypoint image: with no settings it says MESH_WAYPOINT_NAME is not set', async (t) => {
  if (!(await ready(t))) return;
  const r = await run(image('waypoint'));
  t.is(r.code, 1);
  t.regex(r.stderr + r.stdout, /MESH_WAYPOINT_NAME is not set/);
});

test('node image: ztunnel, the agent and the CNI installer check their settings; the addon loads libbpf and the BPF object passes the verifier', async (t) => {
  if (!(await ready(t))) return;
  // The chart's ztunnel container runs the bundle (ZTUNNEL_ENTRY).
  const zt = await run(image('node'), { args: ['build/ztunnel/main.mjs'] });
  t.is(zt.code, 1);
  t.regex(zt.stderr + zt.stdout, /MESH_NODE_NAME is not set/);
  const agent = await run(image('node'), { env: { MESH_BPFFS: '/sys/fs/bpf' } });
  t.is(agent.code, 1);
  t.regex(agent.stderr + agent.stdout, /unknown setting MESH_BPFFS\b.*the agent reads .*MESH_BPFFS_DIR/);
  // The chart's CNI DaemonSet runs the installer from this image.
  const cni = await run(image('node'), { args: ['src/cni/install-main.ts'], env: { MESH_CNI_CONF_DI: '/etc/cni/net.d' } });
  t.is(cni.code, 1);
  t.regex(cni.stderr + cni.stdout, /unknown setting MESH_CNI_CONF_DI\b/);

  // A bpffs of our own, so the pins land nowhere the host uses.
  const dir = mkdtempSync('/tmp/mesh-images-test-');
  const bpffs = join(dir, 'bpffs');
  mkdirSync(bpffs);
  await sh('mount', ['-t', 'bpf', 'bpf', bpffs]);
  t.teardown(async () => {
    await sh('umount', [bpffs]);
    rmSync(dir, { recursive: true, force: true });
  });
  const load = await run(image('node'), {
    flags: ['--privileged', '--mount', `type=bind,source=${bpffs},destination=/sys/fs/bpf`],
    entrypoint: ['node', '--input-type=module', '-e', [
      "const d = await import('/app/src/datapath/index.ts');",
      'const n = d.native();',
      "const o = await n.loadObject(d.bpfObjectPath, '/sys/fs/bpf', {});",
      'console.log(JSON.stringify({ libbpf: n.libbpfVersion(), programs: o.programs.length, maps: o.maps.length }));',
      'n.closeObject(o.handle);',
    ].join('\n')],
  });
  t.is(load.code, 0, load.stderr);
  const loaded = JSON.parse(load.stdout) as { libbpf: string; programs: number; maps: number };
  t.regex(loaded.libbpf, /^v1\./);
  t.true(loaded.programs > 0 && loaded.maps > 0);
  t.log(`in the node image: libbpf ${loaded.libbpf} loaded ${loaded.programs} programs and ${loaded.maps} maps`);
});

test('node image: the CNI installer puts a plugin on the host that runs with nothing but /bin/sh there', async (t) => {
  if (!(await ready(t))) return;
  // The host side: a bare root (a static busybox as /bin/sh, nothing else) whose CNI dirs the
  // installer container gets as hostPath mounts, as the chart's DaemonSet gives them.
  const root = mkdtempSync('/tmp/mesh-images-test-');
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const d of ['bin', 'opt/cni/bin', 'etc/cni/net.d', 'tmp']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'bin/sh'));
  writeFileSync(join(root, 'etc/cni/net.d/10-podnet.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', plugins: [{ type: 'bridge' }] }));
  writeFileSync(join(root, 'token'), 'tok\n');
  writeFileSync(join(root, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  const mount = (src: string, dst: string) => ['--mount', `type=bind,source=${join(root, src)},destination=${dst}`];
  const install = await run(image('node'), {
    flags: [...mount('opt/cni/bin', '/host/opt/cni/bin'), ...mount('etc/cni/net.d', '/host/etc/cni/net.d'), ...mount('token', '/sa/token'), ...mount('ca.crt', '/sa/ca.crt')],
    env: { MESH_CNI_BIN_DIR: '/host/opt/cni/bin', MESH_CNI_CONF_DIR: '/host/etc/cni/net.d', MESH_CNI_TOKEN_FILE: '/sa/token', MESH_CNI_CA_FILE: '/sa/ca.crt', MESH_CNI_API_SERVER: 'https://10.96.0.1:443' },
    entrypoint: ['node', '--input-type=module', '-e', [
      "const c = await import('/app/src/cni/install.ts');",
      'const s = new c.Installer(c.loadInstallConfig()).ensure();',
      'console.log(JSON.stringify(s));',
    ].join('\n')],
  });
  t.is(install.code, 0, install.stderr);
  const plugins = JSON.parse(readFileSync(join(root, 'etc/cni/net.d/10-podnet.conflist'), 'utf8')) as { plugins: { type: string }[] };
  t.deepEqual(plugins.plugins.map((p) => p.type), ['bridge', 'mesh-cni']);
  const version = await new Promise<Run>((resolve) => {
    const child = execFile('/usr/sbin/chroot', [root, '/opt/cni/bin/mesh-cni'], { env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }));
    child.stdin!.end('{"cniVersion":"1.0.0"}');
  });
  t.is(version.code, 0, version.stderr + version.stdout);
  t.like(JSON.parse(version.stdout), { supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
});

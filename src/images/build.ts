// `make images`: builds the mesh's OCI images into the host's local image store (containers-storage)
// with `podman build`, FROM scratch, holding only what runs:
//   localhost/mesh-controller  node src/controller/main.ts              uid 1337
//   localhost/mesh-node        node src/agent/main.ts | build/ztunnel/main.mjs (ztunnel bundled), the addon, its shared
//                              libraries and the BPF object             root (loads BPF, enters netns)
//   localhost/mesh-waypoint    node src/waypoint/main.ts               uid 1337
// Each holds the pinned Node 24 binary (node_modules/node, stripped) and the shared libraries it
// links (found with ldd), the TypeScript files the process's entry reaches (Node strips the
// types), proto/, and the npm packages those files load with their dependencies — no dev
// dependencies, no typings. No RUN step, so no container runtime is involved in the build. Tags:
// `latest` and the package version. Layers are ordered so the Node runtime layer is the same in
// all three images and stored once; timestamps come from the last commit (SOURCE_DATE_EPOCH
// overrides), so a rebuild of the same checkout makes the same layers. An image whose inputs did
// not change is not rebuilt.
//
// Usage: node src/images/build.ts [controller|node|waypoint ...]   (default: all three)
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { computeManifest, MANIFEST_FILE, manifestForImage } from '../cni/bundle.ts';
import { entryPackages, keepPackageFile, packageClosure, sharedLibraries } from './contents.ts';
import { bundleZtunnelSync } from './ztunnel-bundle.ts';
import { ZTUNNEL_ENTRY } from '../ztunnel/config.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
const STAGE = join(ROOT, 'build/images');
const ADDON = 'build/Release/mesh_native.node';
const BPF_OBJECT = 'bpf/.output/mesh.bpf.o';
const NODE_BINARY = join(ROOT, 'node_modules/node/bin/node');
/** The node binary's path inside every image. */
const IMAGE_NODE = '/usr/local/bin/node';
/** The label that records what an image was built from, so an unchanged image is not rebuilt. */
export const INPUTS_LABEL = 'io.mesh.image.inputs';
/** Istio's proxies run as 1337; the controller and waypoint need no privilege at all. */
const NON_ROOT = '1337:1337';
const GLOBAL = ['--runtime', 'runc', '--cgroup-manager', 'cgroupfs'];

export interface ImageSpec {
  name: 'controller' | 'node' | 'waypoint';
  repository: string;
  description: string;
  entries: string[];
  /** The entry the image runs when the pod gives no args (the node image has two: the DaemonSet picks). */
  defaultEntry: string;
  user: string;
  native: boolean;
}

export const IMAGES: readonly ImageSpec[] = [
  {
    name: 'controller',
    repository: 'localhost/mesh-controller',
    description: 'Mesh controller: reconcilers, config (xDS) server and CA',
    entries: ['src/controller/main.ts'],
    defaultEntry: 'src/controller/main.ts',
    user: NON_ROOT,
    native: false,
  },
  {
    name: 'node',
    repository: 'localhost/mesh-node',
    description: 'Mesh node: the agent (eBPF datapath, pod enrolment), ztunnel, the CNI installer and plugin, and the node checks',
    // The chart's CNI DaemonSet runs the installer from this image too, and `meshctl check
    // --pre-install` runs node-check.ts on each node with it.
    entries: ['src/agent/main.ts', 'src/ztunnel/main.ts', 'src/cni/install-main.ts', 'src/cni/main.ts', 'src/cli/node-check.ts'],
    defaultEntry: 'src/agent/main.ts',
    // The agent loads BPF programs, pins maps and enters pod network namespaces; ztunnel opens
    // listeners in them. The DaemonSet grants the capabilities; the user stays root.
    user: '0:0',
    native: true,
  },
  {
    name: 'waypoint',
    repository: 'localhost/mesh-waypoint',
    description: 'Mesh waypoint: the L7 proxy of a namespace or service',
    entries: ['src/waypoint/main.ts'],
    defaultEntry: 'src/waypoint/main.ts',
    user: NON_ROOT,
    native: false,
  },
];

function say(msg: string): void {
  process.stdout.write(`images: ${msg}\n`);
}

function packageJson(): { name: string; version: string; license: string; description: string } {
  return JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; license: string; description: string };
}

function copyInto(dest: string, src: string, target: string, mode?: number): void {
  const to = join(dest, target);
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(src, to); // follows symlinks: the image gets the file, not a link to the host's
  chmodSync(to, mode ?? (statSync(src).mode & 0o111 ? 0o755 : 0o644));
}

/** The Node runtime every image shares: node, the libraries it links, the loader, users, /tmp. */
function stageRuntime(): string[] {
  const dir = join(STAGE, 'runtime');
  copyInto(dir, NODE_BINARY, IMAGE_NODE.slice(1), 0o755);
  // The npm package's binary keeps its symbol table (18 MB); nothing in a pod reads it. `strip`
  // comes with binutils (g++'s dependency, so `make setup` has it).
  execFileSync('strip', [join(dir, IMAGE_NODE.slice(1))]);
  const libs = sharedLibraries([NODE_BINARY]);
  for (const lib of libs) copyInto(dir, lib, lib.slice(1), 0o755);
  mkdirSync(join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/sbin/nologin\nmesh:x:1337:1337:mesh:/nonexistent:/sbin/nologin\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nmesh:x:1337:\n');
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  return libs;
}

/** The addon, the BPF object and the libraries the addon links beyond Node's own. */
function stageNative(runtimeLibs: string[]): void {
  const dir = join(STAGE, 'native');
  for (const f of [ADDON, BPF_OBJECT]) {
    if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: run \`make\` first (make images does)`);
    copyInto(dir, join(ROOT, f), join('app', f));
  }
  for (const lib of sharedLibraries([join(ROOT, ADDON)])) if (!runtimeLibs.includes(lib)) copyInto(dir, lib, lib.slice(1), 0o755);
}

/** The image's TypeScript files, proto/ and a package.json (module type, version); for an image
 *  that carries the CNI plugin, the manifest of what the installer copies to the host (the image
 *  has no ldd to find Node's libraries; they sit at their host paths in it, see stageRuntime). */
function stageApp(spec: ImageSpec, files: string[]): void {
  const dir = join(STAGE, `app-${spec.name}`);
  for (const f of files) copyInto(dir, join(ROOT, f), join('app', f), 0o644);
  // ztunnel runs bundled (ZTUNNEL_ENTRY, src/images/ztunnel-bundle.ts); its sources stay beside
  // it for reading, and their packages in the image for prom-client's metric files it requires.
  if (spec.entries.includes('src/ztunnel/main.ts')) copyInto(dir, bundleZtunnelSync(ROOT), join('app', ZTUNNEL_ENTRY), 0o644);
  cpSync(join(ROOT, 'proto'), join(dir, 'app/proto'), { recursive: true });
  const pkg = packageJson();
  writeFileSync(join(dir, 'app/package.json'), `${JSON.stringify({ name: pkg.name, version: pkg.version, private: true, license: pkg.license, type: 'module' }, null, 2)}\n`);
  if (spec.entries.includes('src/cni/main.ts')) writeFileSync(join(dir, 'app', MANIFEST_FILE), manifestForImage(computeManifest(ROOT, NODE_BINARY), IMAGE_NODE));
}

function stageModules(spec: ImageSpec, packages: string[]): number {
  const dir = join(STAGE, `modules-${spec.name}`);
  const dirs = packageClosure(ROOT, packages);
  for (const d of dirs) {
    const from = join(ROOT, d);
    cpSync(from, join(dir, 'app', d), { recursive: true, dereference: true, filter: (src) => keepPackageFile(relative(from, src)) });
  }
  return dirs.length;
}

/** A digest of every staged file an image is made of (path, mode, content) plus its Containerfile. */
function digest(parts: string[], containerfile: string): string {
  const h = createHash('sha256').update(containerfile);
  const walk = (base: string, rel: string): void => {
    for (const e of readdirSync(join(base, rel), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(rel, e.name);
      if (e.isDirectory()) {
        h.update(`d ${p}\n`);
        walk(base, p);
      } else {
        h.update(`f ${p} ${statSync(join(base, p)).mode}\n`).update(readFileSync(join(base, p)));
      }
    }
  };
  for (const part of parts) walk(join(STAGE, part), '');
  return h.digest('hex');
}

function containerfile(spec: ImageSpec, parts: string[], labels: Record<string, string>): string {
  return [
    'FROM scratch',
    // Most shared first, labels last: podman's layer cache then reuses the Node runtime layer
    // across the three images and a rebuild redoes only the layers whose files changed.
    ...parts.map((p) => `COPY ${p}/ /`),
    'ENV PATH=/usr/local/bin',
    'WORKDIR /app',
    `USER ${spec.user}`,
    `ENTRYPOINT [${JSON.stringify(IMAGE_NODE)}]`,
    `CMD [${JSON.stringify(spec.defaultEntry)}]`,
    `LABEL ${Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' \\\n      ')}`,
    '',
  ].join('\n');
}

function sourceDateEpoch(): number {
  const env = process.env['SOURCE_DATE_EPOCH'];
  if (env && /^\d+$/.test(env)) return Number(env);
  try {
    return Number(execFileSync('git', ['-C', ROOT, 'log', '-1', '--format=%ct'], { encoding: 'utf8' }).trim());
  } catch {
    return 0;
  }
}

function revision(): string {
  try {
    const head = execFileSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim();
    return dirty ? `${head}-dirty` : head;
  } catch {
    return 'unknown';
  }
}

function podman(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('podman', [...GLOBAL, ...args], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.error) throw new Error(`podman could not run (${r.error.message}): apt-get install podman runc, or \`make setup\``);
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

/** The tags `make images` gives every image: `latest` and the package version. */
export function imageTags(): string[] {
  return ['latest', packageJson().version];
}

/**
 * Builds the named images (all by default); returns each image's `repository:latest`. `extraTag`
 * also names them (`--tag`): a test that installs them holds its own name for what it built, which
 * a build of another checkout on the same host (which moves `latest`) leaves alone.
 */
export function buildImages(names: string[] = IMAGES.map((i) => i.name), extraTag?: string): string[] {
  const unknown = names.filter((n) => !IMAGES.some((i) => i.name === n));
  if (unknown.length) throw new Error(`unknown image ${unknown.join(', ')}: the images are ${IMAGES.map((i) => i.name).join(', ')}`);
  const t0 = Date.now();
  rmSync(STAGE, { recursive: true, force: true });
  const runtimeLibs = stageRuntime();
  say(`staged the Node runtime: ${relative(ROOT, NODE_BINARY)} (${execFileSync(NODE_BINARY, ['--version'], { encoding: 'utf8' }).trim()}) and ${runtimeLibs.length} shared libraries`);
  const pkg = packageJson();
  const epoch = sourceDateEpoch();
  const built: string[] = [];
  for (const spec of IMAGES.filter((i) => names.includes(i.name))) {
    const ts = Date.now();
    const { packages, files } = entryPackages(ROOT, spec.entries);
    stageApp(spec, files);
    const modules = stageModules(spec, packages);
    if (spec.native) stageNative(runtimeLibs);
    const parts = ['runtime', `modules-${spec.name}`, `app-${spec.name}`, ...(spec.native ? ['native'] : [])];
    const labels = {
      'org.opencontainers.image.title': `mesh-${spec.name}`,
      'org.opencontainers.image.description': spec.description,
      'org.opencontainers.image.version': pkg.version,
      'org.opencontainers.image.revision': revision(),
      'org.opencontainers.image.licenses': pkg.license,
      'org.opencontainers.image.created': new Date(epoch * 1000).toISOString(),
      'org.opencontainers.image.base.name': 'scratch',
    };
    const file = containerfile(spec, parts, labels);
    const inputs = digest(parts, file);
    writeFileSync(join(STAGE, `Containerfile.${spec.name}`), `${file}LABEL ${INPUTS_LABEL}="${inputs}"\n`);
    const tags = [...imageTags(), ...(extraTag ? [extraTag] : [])].map((t) => `${spec.repository}:${t}`);
    say(`${spec.name}: ${files.length} source files, ${modules} npm packages (${packages.join(' ')})${spec.native ? ', the addon, its libraries and the BPF object' : ''}`);
    const have = podman(['image', 'inspect', '--format', `{{index .Labels "${INPUTS_LABEL}"}}`, tags[0]!]);
    const allTagged = tags.every((t) => podman(['image', 'exists', t]).code === 0);
    if (have.code === 0 && have.stdout.trim() === inputs && allTagged) {
      say(`${spec.name}: ${tags.join(', ')} unchanged (same inputs), not rebuilt`);
    } else {
      const previous = have.code === 0 ? podman(['image', 'inspect', '--format', '{{.Id}}', tags[0]!]).stdout.trim() : '';
      const r = podman(['build', '--quiet', '--layers', '--timestamp', String(epoch), '-f', join(STAGE, `Containerfile.${spec.name}`), ...tags.flatMap((t) => ['--tag', t]), STAGE]);
      if (r.code !== 0) throw new Error(`podman build of ${spec.repository} failed: ${r.stderr.trim()}`);
      say(`${spec.name}: built ${tags.join(', ')} (${r.stdout.trim().slice(0, 12)}) in ${((Date.now() - ts) / 1000).toFixed(1)} s`);
      // The image these tags named before is now untagged: remove it (and its cached layers) unless
      // a container or another tag still uses it, so rebuilds do not pile up in the store.
      if (previous && !r.stdout.trim().startsWith(previous)) podman(['rmi', previous]);
    }
    built.push(tags[0]!);
  }
  for (const image of built) {
    const size = podman(['images', '--format', '{{.Size}}', image]).stdout.trim().split('\n')[0];
    say(`  ${image}  ${size}`);
  }
  say(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return built;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    const args = process.argv.slice(2);
    const at = args.indexOf('--tag');
    const tag = at >= 0 ? args.splice(at, 2)[1] : undefined;
    if (at >= 0 && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag ?? '')) throw new Error(`--tag needs an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]*), got ${JSON.stringify(tag)}`);
    buildImages(args.length ? args : undefined, tag);
  } catch (err) {
    process.stderr.write(`images: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}

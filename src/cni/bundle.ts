// The plugin as the CNI bin dir holds it: self-contained, so that a node needs nothing but /bin/sh
// to run it (istio-cni ships a static Go binary; ours is Node, so we ship Node).
//
//   <binDir>/mesh-cni                    a three-line sh launcher naming the version it runs
//   <binDir>/mesh-cni.d/<version>/node   the pinned Node binary
//   <binDir>/mesh-cni.d/<version>/lib/   every shared library Node links, the dynamic loader too
//   <binDir>/mesh-cni.d/<version>/app/   src/cni/main.ts, the files it imports, its npm packages
//
// The launcher runs Node through the bundled loader with the bundled libraries only
// (`ld.so --library-path`), so neither the host's libc nor its library search path matters.
// <version> is a digest of every file in the bundle: an upgrade installs beside the running one,
// switches the launcher in one rename, and removes the old version once no ADD can still be
// starting from it.
//
// What goes in is the manifest. From a checkout it is computed (ldd, the entry's imports); the node
// image has no ldd, so the image build writes it to /app/cni-plugin.json.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { entryPackages, keepPackageFile, packageClosure, parseLdd } from '../images/contents.ts';

/** The app root: the checkout, or /app in the node image. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
export const PLUGIN_ENTRY = 'src/cni/main.ts';
/** Where the node image keeps the manifest its build computed. */
export const MANIFEST_FILE = 'cni-plugin.json';

export interface BundleManifest {
  /** The app root the files are relative to. */
  readonly root: string;
  /** The Node binary (absolute). */
  readonly node: string;
  /** The shared libraries Node links and the dynamic loader (absolute). */
  readonly libs: readonly string[];
  /** The plugin's files: its sources, package.json files, its npm packages' files (relative to root). */
  readonly files: readonly string[];
}

/** The files under `base` (paths relative to it) that `keep` accepts. */
function walk(base: string, rel: string, keep: (rel: string) => boolean, out: string[]): void {
  for (const e of readdirSync(join(base, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) walk(base, p, keep, out);
    else if (keep(p)) out.push(p);
  }
}

/** The manifest computed from a checkout (or any app root with node_modules): needs ldd. */
export function computeManifest(root = ROOT, nodeBinary = process.execPath): BundleManifest {
  const { packages, files } = entryPackages(root, [PLUGIN_ENTRY]);
  const all = [...files, 'package.json'];
  for (const dir of packageClosure(root, packages)) {
    const inPkg: string[] = [];
    walk(join(root, dir), '', keepPackageFile, inPkg);
    for (const f of inPkg) all.push(join(dir, f));
  }
  const libs = parseLdd(execFileSync('ldd', [nodeBinary], { encoding: 'utf8' }), nodeBinary);
  if (!libs.some(isLoader)) throw new Error(`ldd ${nodeBinary} names no dynamic loader: is it a static binary? The bundle needs one to start Node`);
  return Object.freeze({ root, node: nodeBinary, libs: Object.freeze(libs.sort()), files: Object.freeze([...new Set(all)].sort()) });
}

/** The manifest the node image carries, else the one computed from this checkout. */
export function loadManifest(root = ROOT): BundleManifest {
  const file = join(root, MANIFEST_FILE);
  if (!existsSync(file)) return computeManifest(root);
  const m = JSON.parse(readFileSync(file, 'utf8')) as Omit<BundleManifest, 'root'>;
  return Object.freeze({ root, node: m.node, libs: Object.freeze([...m.libs]), files: Object.freeze([...m.files]) });
}

/** What the image build writes to /app/cni-plugin.json: paths as they are inside the image. */
export function manifestForImage(m: BundleManifest, imageNode: string): string {
  return `${JSON.stringify({ node: imageNode, libs: m.libs, files: m.files }, null, 2)}\n`;
}

const isLoader = (lib: string) => /\/ld-linux[^/]*\.so(\.\d+)*$|\/ld64\.so(\.\d+)*$|\/ld-musl[^/]*\.so(\.\d+)*$/.test(lib);

/** One file of the bundle: where it goes (relative to the version dir) and where it comes from. */
export interface BundleFile {
  readonly target: string;
  readonly source: string;
  readonly mode: number;
}

export interface BundlePlan {
  /** A digest of every file's target, mode and content: same inputs, same version. */
  readonly version: string;
  readonly files: readonly BundleFile[];
  /** The loader's name inside lib/ (the launcher runs Node through it). */
  readonly loader: string;
  readonly bytes: number;
}

/** The files of the bundle and its version. Reads every file once (≈ 125 MB: a fraction of a second),
 *  a chunk at a time: the installer runs under a 128 MiB memory limit, and holding the Node binary
 *  whole (≈ 100 MB) on top of Node's own heap had the kernel OOM-kill it before it logged a line. */
export function planBundle(m: BundleManifest): BundlePlan {
  const files: BundleFile[] = [{ target: 'node', source: m.node, mode: 0o755 }];
  const names = new Set<string>();
  for (const lib of m.libs) {
    const name = basename(lib);
    if (names.has(name)) throw new Error(`two shared libraries named ${name} (${lib}): the bundle keeps them in one directory`);
    names.add(name);
    files.push({ target: `lib/${name}`, source: lib, mode: 0o755 });
  }
  for (const f of m.files) files.push({ target: `app/${f}`, source: join(m.root, f), mode: 0o644 });
  const loader = m.libs.find(isLoader);
  if (!loader) throw new Error('the plugin bundle has no dynamic loader among its libraries');
  const h = createHash('sha256');
  const chunk = Buffer.allocUnsafe(1 << 20);
  let bytes = 0;
  for (const f of files) {
    const fd = openSync(f.source, 'r');
    try {
      const size = fstatSync(fd).size;
      h.update(`${f.target}\0${f.mode}\0${size}\0`);
      let read = 0;
      for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; read += n) h.update(chunk.subarray(0, n));
      if (read !== size) throw new Error(`${f.source} changed size while it was read (${size} → ${read} bytes)`);
      bytes += size;
    } finally {
      closeSync(fd);
    }
  }
  return Object.freeze({ version: h.digest('hex').slice(0, 16), files: Object.freeze(files), loader: basename(loader), bytes });
}

/** The launcher the runtime execs: finds its bundle beside itself (runtimes exec plugins by full path). */
export function launcherScript(plan: BundlePlan, pluginName: string): string {
  return [
    '#!/bin/sh',
    `# ${pluginName}: the mesh's CNI plugin (installed by the mesh CNI installer; removed on uninstall).`,
    `# Runs the bundled Node with the bundled libraries only, so the host needs nothing but /bin/sh.`,
    `d="\${0%/*}/${pluginName}.d/${plan.version}"`,
    // Each call is a new process: Node's on-disk compile cache saves a third of its start.
    `export NODE_COMPILE_CACHE="\${NODE_COMPILE_CACHE:-/tmp/${pluginName}-compile-cache}"`,
    `exec "$d/lib/${plan.loader}" --library-path "$d/lib" "$d/node" "$d/app/${PLUGIN_ENTRY}" "$@"`,
    '',
  ].join('\n');
}

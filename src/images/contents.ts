// What goes into an image: the shared libraries a binary links (from ldd), the npm packages a
// process loads (from its entry's imports, then the packages' own dependencies), and which files
// of those packages are worth copying. Pure functions over the checkout; build.ts does the I/O of
// staging and building.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * Parses `ldd` output. Libraries resolved through the search path (`libz.so.1 => /lib/…`) keep
 * their host path; the loader itself appears as a bare absolute path (its PT_INTERP).
 * The vDSO has no file and is skipped; a "not found" library is an error, since the image would
 * not start.
 */
export function parseLdd(output: string, binary = 'binary'): string[] {
  const libs: string[] = [];
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('linux-vdso') || line.startsWith('linux-gate')) continue;
    if (line.includes('not found')) throw new Error(`${binary} links a library that is not installed: ${line} (make setup installs the -dev packages)`);
    const arrow = /=>\s+(\/\S+)\s+\(/.exec(line);
    const bare = /^(\/\S+)\s+\(/.exec(line);
    const path = arrow?.[1] ?? bare?.[1];
    if (path) libs.push(path);
  }
  return libs;
}

/** The shared libraries (and the loader) that `binaries` need, deduplicated, sorted. The image
 *  keeps each at its host path, where the loader inside it looks by default. */
export function sharedLibraries(binaries: string[]): string[] {
  const paths = new Set<string>();
  for (const b of binaries) for (const p of parseLdd(execFileSync('ldd', [b], { encoding: 'utf8' }), b)) paths.add(p);
  return [...paths].sort();
}

// `import … from "x"`, `export … from "x"`, `import "x"`, `import("x")` (single-quoted in our code); not `import type`/`export type`
// (erased when Node strips types, so they load nothing). Also files a module reads rather than
// imports: `require.resolve('pkg/file')` (a package's file served as is, e.g. the dashboard's
// graph library) and `new URL('./dir/', import.meta.url)` (a directory of assets beside the module,
// e.g. its page; never one above it).
const IMPORT = /(?:^|[;\s])(import|export)\s+(type\s+)?(?:[^;'"]*?\sfrom\s+)?'([^']+)'|\bimport\(\s*'([^']+)'\s*\)|new URL\(\s*'(\.[^']+\.ts|\.\/[^'.][^']*\/)'\s*,\s*import\.meta\.url\)|\brequire\.resolve\(\s*'([^'.][^']*)'\s*\)/g;

/** The specifiers a TypeScript module loads at run time (relative and bare, not `node:`). */
export function runtimeImports(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(IMPORT)) {
    if (m[2]) continue; // import type / export type
    const spec = m[3] ?? m[4] ?? m[5] ?? m[6];
    if (spec && !spec.startsWith('node:')) out.push(spec);
  }
  return out;
}

/** The package name of a bare specifier: `@grpc/grpc-js/build/x` → `@grpc/grpc-js`. */
export function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/**
 * Follows the relative imports from `entries` through the checkout and returns the npm packages
 * they load, and the source files (and asset directories' files) they reach (relative to `root`).
 */
export function entryPackages(root: string, entries: string[]): { packages: string[]; files: string[] } {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const assets = new Set<string>();
  const queue = entries.map((e) => resolve(root, e));
  while (queue.length) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of runtimeImports(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec);
        if (target.endsWith('.ts') && existsSync(target)) queue.push(target);
        else if (spec.endsWith('/') && existsSync(target)) {
          for (const f of readdirSync(target, { recursive: true, withFileTypes: true })) if (f.isFile()) assets.add(join(f.parentPath, f.name));
        }
      } else {
        packages.add(packageName(spec));
      }
    }
  }
  return { packages: [...packages].sort(), files: [...seen, ...assets].map((f) => relative(root, f)).sort() };
}

/**
 * The package directories (relative to `root`, e.g. `node_modules/@grpc/grpc-js` or a nested
 * `node_modules/a/node_modules/b`) that `names`, loaded from `root`, need at run time: their
 * dependencies, and the optional and peer dependencies that are installed — resolved the way
 * Node does, from the requiring package's directory up. Declaration-only @types/* are left out.
 */
export function packageClosure(root: string, names: string[]): string[] {
  const found = new Set<string>();
  const lookup = (name: string, from: string, optional: boolean): string | undefined => {
    for (let dir = from; ; dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) return candidate;
      if (dir === root || dir === dirname(dir)) break;
    }
    if (optional) return undefined;
    throw new Error(`package ${name} (needed from ${relative(root, from) || '.'}) is not installed: run \`npm ci\``);
  };
  const visit = (dir: string | undefined): void => {
    // @types/* hold only declarations (some packages list them as dependencies): nothing loads them.
    if (!dir || found.has(dir) || relative(root, dir).includes('node_modules/@types/')) return;
    found.add(dir);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
    for (const name of Object.keys(pkg['dependencies'] ?? {})) visit(lookup(name, dir, false));
    for (const name of [...Object.keys(pkg['optionalDependencies'] ?? {}), ...Object.keys(pkg['peerDependencies'] ?? {})]) visit(lookup(name, dir, true));
  };
  for (const name of names) visit(lookup(name, root, false));
  return [...found].map((d) => relative(root, d)).sort();
}

/**
 * Whether a file of a package is copied. Node loads only JavaScript, JSON and native code from
 * node_modules (it does not strip types there), so type declarations, source maps, TypeScript
 * sources and docs stay out; so do a package's nested node_modules (copied on their own when
 * the closure needs them).
 */
export function keepPackageFile(pathInPackage: string): boolean {
  if (pathInPackage.split('/').includes('node_modules')) return false;
  return !/\.(d\.[cm]?ts|[cm]?ts|map|md|markdown)$/i.test(pathInPackage) || /^license/i.test(pathInPackage.split('/').pop()!);
}

// ztunnel runs from one bundled file, not from src/ (issue 16, its memory): esbuild joins
// src/ztunnel/main.ts, the modules it reaches and the npm packages they load into
// ZTUNNEL_ENTRY, types stripped and whitespace dropped (identifiers kept, so stack traces still
// name the functions). Node then neither strips TypeScript at start nor keeps a module record,
// wrapper and full source text per file. ztunnel's modules loaded, idle after GC (a probe, three
// runs each, warm compile cache): 74.4–75.1 MB RSS (23.6–24.2 anonymous, 50.9 file-backed) from
// src/, 64.4–64.6 MB (18.9–19.1, 45.5) bundled. The image builder (src/images/build.ts) and the
// local cluster (src/local/mesh.ts, before each ztunnel start, so it runs the checkout's code)
// both make it here; it takes ~0.1 s.
//
// The bundle sits two directories below the root, like every module under src/ that finds a file
// from its own URL (`new URL('../../proto/…', import.meta.url)`, the addon, package.json): those
// resolve the same from it. Lazy `import()`s stay lazy (esbuild defers each module's body until
// its import runs), so the start order of src/ztunnel/main.ts holds.
import { build, buildSync, type BuildOptions } from 'esbuild';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ZTUNNEL_ENTRY } from '../ztunnel/config.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function options(root: string): BuildOptions & { write: false } {
  return {
    entryPoints: [join(root, 'src/ztunnel/main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    write: false,
    outfile: join(root, ZTUNNEL_ENTRY),
    logLevel: 'error',
    // The CommonJS packages (grpc-js, protobufjs, pino) call require() for Node's built-ins and
    // each other's optional parts; an ES module has no require of its own.
    banner: { js: "import { createRequire as __meshRequire } from 'node:module'; const require = __meshRequire(import.meta.url);" },
  };
}

/** Written aside, then renamed: a ztunnel starting meanwhile reads the old file or the new one. */
function replace(out: string, contents: Uint8Array): string {
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, out);
  return out;
}

/** Bundles ztunnel into `<root>/ZTUNNEL_ENTRY` and returns its path. */
export async function bundleZtunnel(root: string = ROOT): Promise<string> {
  const result = await build(options(root));
  return replace(join(root, ZTUNNEL_ENTRY), result.outputFiles[0]!.contents);
}

/** bundleZtunnel for the image builder, which is synchronous. */
export function bundleZtunnelSync(root: string = ROOT): string {
  return replace(join(root, ZTUNNEL_ENTRY), buildSync(options(root)).outputFiles[0]!.contents);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(`${await bundleZtunnel()}\n`);

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { entryPackages, keepPackageFile, packageClosure, packageName, parseLdd, runtimeImports } from '../../src/images/contents.ts';

test('ldd output gives the libraries and the loader, not the vDSO; a missing library is an error naming it', (t) => {
  const out = [
    '\tlinux-vdso.so.1 (0x00007feb632ca000)',
    '\tlibbpf.so.1 => /lib/x86_64-linux-gnu/libbpf.so.1 (0x00007feb63233000)',
    '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007feb62dfe000)',
    '\t/lib64/ld-linux-x86-64.so.2 (0x00007feb632cc000)',
  ].join('\n');
  t.deepEqual(parseLdd(out), ['/lib/x86_64-linux-gnu/libbpf.so.1', '/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']);
  t.throws(() => parseLdd('\tlibmnl.so.0 => not found', 'mesh_native.node'), { message: /mesh_native\.node links a library that is not installed: libmnl\.so\.0/ });
});

test('runtime imports: values, re-exports, side effects, dynamic imports and entry URLs; type-only imports and node: builtins load nothing', (t) => {
  const src = [
    "import { readFileSync } from 'node:fs';",
    "import type { Foo } from './types.ts';",
    "export type { Bar } from './bar.ts';",
    "import { type X, y } from '@grpc/grpc-js';",
    "import pino from 'pino';",
    "export * from './index.ts';",
    "import 'reflect-metadata';",
    "const k = await import('@kubernetes/client-node');",
    "const MAIN = new URL('../waypoint/main.ts', import.meta.url);",
  ].join('\n');
  t.deepEqual(runtimeImports(src), ['@grpc/grpc-js', 'pino', './index.ts', 'reflect-metadata', '@kubernetes/client-node', '../waypoint/main.ts']);
  t.is(packageName('@grpc/grpc-js/build/src/x.js'), '@grpc/grpc-js');
  t.is(packageName('ipaddr.js'), 'ipaddr.js');
});

test('an image gets the packages its entry reaches and their dependencies, nested ones resolved as Node does, @types and dev packages left out', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'mesh-images-unit-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const pkg = (dir: string, deps: Record<string, string> = {}, extra: Record<string, unknown> = {}) => {
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, dir, 'package.json'), JSON.stringify({ dependencies: deps, ...extra }));
  };
  pkg('node_modules/a', { b: '1', '@types/node': '*' }, { optionalDependencies: { missing: '1' } });
  pkg('node_modules/a/node_modules/b', { c: '1' });
  pkg('node_modules/b');
  pkg('node_modules/c');
  pkg('node_modules/@types/node');
  pkg('node_modules/dev-only');
  mkdirSync(join(root, 'src/x'), { recursive: true });
  writeFileSync(join(root, 'src/x/main.ts'), "import { a } from 'a';\nimport { h } from './helper.ts';\nimport type { D } from 'dev-only';\n");
  writeFileSync(join(root, 'src/x/helper.ts'), "export const h = 1;\n");
  const { packages, files } = entryPackages(root, ['src/x/main.ts']);
  t.deepEqual(packages, ['a']);
  t.deepEqual(files, ['src/x/helper.ts', 'src/x/main.ts']);
  t.deepEqual(packageClosure(root, packages), ['node_modules/a', 'node_modules/a/node_modules/b', 'node_modules/c']);
  t.throws(() => packageClosure(root, ['nope']), { message: /package nope .* is not installed: run `npm ci`/ });
});

test('package files: JavaScript, JSON, protos, native code and licenses are kept; typings, maps, docs and nested node_modules are not', (t) => {
  for (const f of ['index.js', 'dist/x.cjs', 'package.json', 'google/protobuf/any.proto', 'build/Release/x.node', 'LICENSE', 'LICENSE.md']) t.true(keepPackageFile(f), f);
  for (const f of ['index.d.ts', 'dist/x.d.mts', 'dist/x.js.map', 'README.md', 'src/x.ts', 'node_modules/b/index.js']) t.false(keepPackageFile(f), f);
});

test('images: files a module serves rather than imports — a package file by require.resolve, an asset directory beside it — go in; a directory above it does not', (t) => {
  const src = [
    "const lib = require.resolve('cytoscape/dist/cytoscape.min.js');",
    "const STATIC = fileURLToPath(new URL('./static/', import.meta.url));",
    "const ROOT = new URL('../../', import.meta.url);",
    "const rel = require.resolve('./local.js');",
  ].join('\n');
  t.deepEqual(runtimeImports(src), ['cytoscape/dist/cytoscape.min.js', './static/']);
  const { packages, files } = entryPackages(process.cwd(), ['src/controller/main.ts']);
  t.true(packages.includes('cytoscape') && packages.includes('cytoscape-dagre'), 'the dashboard\'s graph library is in the controller image');
  t.true(files.includes('src/controller/dashboard/static/index.html'), 'and its page');
  t.false(files.some((f) => f.startsWith('node_modules/') || f === 'package.json'), 'nothing from above the module');
});

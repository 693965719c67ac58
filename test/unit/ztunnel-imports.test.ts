// A node's ztunnel loads only what it uses: the CA's certificate library (@peculiar/x509 with
// tsyringe and reflect-metadata: ~270 ms and ~20 MB of a start), the Kubernetes client,
// OpenTelemetry's SDK (loaded only when L4 spans are on) and Node's bundled undici stay out of its
// process.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';

const run = promisify(execFile);

// Imports the entry with a loader hook that records every module, and prints the npm packages
// once the process exits (main.ts exits at once: MESH_NODE_NAME is not set).
const PROBE = `
import { registerHooks } from 'node:module';
const pkgs = new Set();
registerHooks({ load(url, ctx, next) { const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(url); if (m) pkgs.add(m[1]); return next(url, ctx); } });
process.on('exit', () => {
  console.log('PACKAGES ' + JSON.stringify([...pkgs].sort()));
  console.log('DEPS ' + JSON.stringify(process.moduleLoadList.filter((m) => m.includes('internal/deps/'))));
});
await import(process.argv[1]);
`;

test('ztunnel-loads-no-ca-kubernetes-or-tracing-sdk-libraries', async (t) => {
  const entry = new URL('../../src/ztunnel/main.ts', import.meta.url).pathname;
  const env = { PATH: process.env.PATH ?? '', MESH_LOG_LEVEL: 'fatal' };
  const out = await run(process.execPath, ['--input-type=module', '-e', PROBE, entry], { env }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
  const line = out.stdout.split('\n').find((l) => l.startsWith('PACKAGES '));
  t.truthy(line, `the probe printed the packages it saw: ${out.stdout}`);
  const pkgs = JSON.parse(line!.slice('PACKAGES '.length)) as string[];
  t.true(pkgs.includes('@grpc/grpc-js'), 'the probe sees npm packages (gRPC is on the path)');
  const unwanted = pkgs.filter((p) => /^(@peculiar\/|tsyringe$|reflect-metadata$|node-forge$|@kubernetes\/|@opentelemetry\/(sdk|exporter|resources))/.test(p));
  t.deepEqual(unwanted, [], `ztunnel loaded ${unwanted.join(', ')}`);
  // Node's bundled fetch/WebSocket (undici) comes in with any ES import of node:http (it reads the
  // lazy WebSocket export): ~2 MB of ztunnel's RSS for nothing it uses (src/admin/http.ts).
  const deps = JSON.parse(out.stdout.split('\n').find((l) => l.startsWith('DEPS '))!.slice('DEPS '.length)) as string[];
  t.deepEqual(
    deps.filter((d) => d.includes('undici')),
    [],
    'ztunnel loaded undici',
  );
});

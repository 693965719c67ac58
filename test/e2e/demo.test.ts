// The README's main command, end to end as a user runs it (`npm run demo` runs demo/mesh.ts):
// it must show plaintext flows, then the same flows over mTLS with SPIFFE identities, then the
// denied ones, and leave a cluster that `meshctl dev down --purge` removes completely.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { assertNothingLeaked, requireRoot, uniquePrefix } from '../helpers/topology.ts';

const run = promisify(execFile);
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const DEMO = fileURLToPath(new URL('../../demo/mesh.ts', import.meta.url));

test('the demo: plaintext flows, then mTLS flows with SPIFFE identities, then denied flows; dev down leaves nothing', async (t) => {
  if (!(await requireRoot(t))) return;
  const prefix = uniquePrefix();
  const stateDir = mkdtempSync(`/tmp/mesh-${prefix}-demo-`);
  const env = { ...process.env, MESH_DEV_PREFIX: prefix, MESH_DEV_STATE_DIR: stateDir, MESH_LOG_LEVEL: 'warn' };
  let downed = false;
  t.teardown(async () => {
    if (!downed) await run(MESHCTL, ['dev', 'down', '--purge'], { env, timeout: 120_000 }).catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
  });

  const started = Date.now();
  const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
    const p = spawn(process.execPath, [DEMO], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    p.stdout.on('data', (d) => (text += String(d)));
    p.stderr.on('data', (d) => (text += String(d)));
    const timer = setTimeout(() => p.kill('SIGTERM'), 240_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, text });
    });
  });
  t.log(`demo: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.is(out.code, 0, out.text);
  const text = out.text;
  // Plaintext first: kernel-observed flows without identities, and the marker on the wire.
  t.regex(text, /shop\/loadgen:\d+ \(plaintext\) -> .* observed FORWARDED \(TCP plaintext/);
  t.regex(text, /card number "CARD-4242-4242-4242" is VISIBLE in plaintext/);
  // Then mTLS with both SPIFFE identities, from both ends, and nothing readable on the wire.
  t.regex(text, /\[node\d\]: shop\/frontend:\d+ \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/frontend\) -> shop\/orders:8080 \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/orders\) egress FORWARDED \(HBONE mTLS/);
  t.regex(text, /-> shop\/payments:8080 \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/payments\) ingress FORWARDED \(HBONE mTLS/);
  t.regex(text, /the card number is gone: it crosses inside mutual TLS/);
  // Then the DENY policy, seen from both ztunnels.
  t.regex(text, /shop\/frontend:\d+ \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/frontend\) -> shop\/catalog:8080 \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/catalog\) ingress DROPPED \(HBONE mTLS, policy denied/);
  t.regex(text, /every node has its agent and ztunnel connected and its config in sync/);
  t.regex(text, /meshctl dev down/);

  // The cluster stays up for the user: meshctl works against it; then dev down removes it all.
  const flows = await run(MESHCTL, ['flows', '-n', 'shop', '--last', '1', '-o', 'json'], { env });
  t.is(flows.stdout.trim().split('\n').length, 1);
  // A clean demo cluster: `meshctl analyze` finds no error (exit 0); what it prints is logged.
  const analyzed = await run(MESHCTL, ['analyze'], { env, timeout: 60_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: `${e.stdout}${e.stderr}` }),
  );
  t.log(`meshctl analyze on the demo:\n${analyzed.stdout}`);
  t.is(analyzed.code, 0, analyzed.stdout);
  t.notRegex(analyzed.stdout, /^Error \[/m);
  await run(MESHCTL, ['dev', 'down', '--purge'], { env, timeout: 120_000 });
  downed = true;
  t.deepEqual(await assertNothingLeaked(prefix), []);
});

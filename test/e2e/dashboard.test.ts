// The service map and the dashboards against the demo's shop (issue 17 §1 and §5): the demo runs
// as a user runs it (`npm run demo`: plaintext, then ambient, then a DENY policy), then
// - `meshctl dashboard` gives the controller's page, and headless Chromium (Debian's) draws it:
//   an edge for each call the shop makes, the denied one marked, a click shows its flows, and a
//   screenshot is saved in test/artifacts/;
// - a real Prometheus scrapes the ztunnels and the agents, and every query of the dashboards the
//   chart ships (daemonset/chart/dashboards/*.json) returns data.
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
const GATEWAY_API_CRDS = fileURLToPath(new URL('../../daemonset/chart/files/gateway-api-crds.yaml', import.meta.url));
const DASHBOARDS = fileURLToPath(new URL('../../daemonset/chart/dashboards', import.meta.url));

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
let prom: ReturnType<typeof spawn> | undefined;
let promPort = 0;
const forwards: ReturnType<typeof spawn>[] = [];

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
  for (const f of forwards) if (f.exitCode === null) f.kill('SIGTERM');
  if (prom && prom.exitCode === null) {
    prom.kill('SIGTERM');
    await new Promise((r) => prom!.once('exit', r));
  }
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

/** Starts Prometheus on the ztunnels and agents of both nodes; more targets join through file_sd. */
async function startPrometheus(): Promise<void> {
  const mesh = JSON.parse(readFileSync(`${stateDir}/mesh.json`, 'utf8')) as { nodes: Record<string, { ztunnelMetrics?: string; agentMetrics?: string }> };
  const nodes = Object.values(mesh.nodes);
  const ztunnels = nodes.map((n) => n.ztunnelMetrics).filter(Boolean);
  const agents = nodes.map((n) => n.agentMetrics).filter(Boolean);
  if (ztunnels.length !== 2 || agents.length !== 2) throw new Error(`mesh.json lacks metrics addresses: ${JSON.stringify(mesh.nodes)}`);
  writeFileSync(`${stateDir}/waypoints.json`, '[]');
  writeFileSync(
    `${stateDir}/prometheus.yml`,
    [
      'global: {scrape_interval: 1s}',
      'scrape_configs:',
      `- {job_name: ztunnel, static_configs: [{targets: ${JSON.stringify(ztunnels)}}]}`,
      `- {job_name: agent, static_configs: [{targets: ${JSON.stringify(agents)}}]}`,
      `- {job_name: waypoint, metrics_path: /stats/prometheus, file_sd_configs: [{files: ['${stateDir}/waypoints.json'], refresh_interval: 1s}]}`,
      '',
    ].join('\n'),
  );
  promPort = await freePort();
  prom = spawn('/usr/bin/prometheus', [`--config.file=${stateDir}/prometheus.yml`, `--storage.tsdb.path=${stateDir}/prom`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: 'ignore' });
}

test.serial('dashboard: the shop in headless Chromium — an edge per call, the denied one marked, its flows on click', async (t) => {
  if (!demoOk) return t.fail('the demo did not run');
  // Prometheus watches from now on: the denials happen while it scrapes (the dashboards test below).
  await startPrometheus();
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

interface PromResult {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(expr: string): Promise<PromResult[]> {
  const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { result: PromResult[] } };
  if (body.status !== 'success') throw new Error(`Prometheus refused ${expr}: ${body.error}`);
  return body.data!.result;
}

async function labelValues(metric: string, label: string): Promise<string[]> {
  const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/label/${label}/values?match[]=${encodeURIComponent(metric)}`);
  return ((await res.json()) as { data: string[] }).data;
}

interface DashboardJson {
  title: string;
  templating: { list: { name: string; type: string; definition?: string }[] };
  panels: { type: string; title: string; targets?: { expr: string }[] }[];
}

// The dashboards' variables as a user would pick them: the shop, every workload.
const VARIABLES: Record<string, string> = { namespace: 'shop', workload: '.*' };
const substitute = (expr: string) => expr.replace(/\$(\w+)/g, (_, v: string) => VARIABLES[v] ?? `$${v}`);

test.serial('dashboards: with a waypoint on the shop, every query of the shipped dashboards returns data from a real Prometheus', async (t) => {
  if (!demoOk || !prom) return t.fail('the demo or Prometheus did not run');
  // The shop's requests through a waypoint: the L7 series (istio_requests_total, reporter="waypoint").
  // The local cluster serves the Gateway API once its CRDs are in, as a real one does.
  const kubeconfig = (JSON.parse(readFileSync(`${stateDir}/status.json`, 'utf8')) as { kubeconfig: string }).kubeconfig;
  const kenv = { ...env, KUBECONFIG: kubeconfig };
  await run('kubectl', ['apply', '-f', GATEWAY_API_CRDS], { env: kenv });
  const applied = await run(MESHCTL, ['waypoint', 'apply', '-n', 'shop', '--enroll-namespace', '--wait', '--timeout', '120s'], { env, timeout: 180_000 }).catch((e: Error & { stdout?: string; stderr?: string }) => {
    throw new Error(`meshctl waypoint apply failed: ${e.message} ${e.stdout ?? ''} ${e.stderr ?? ''}`);
  });
  t.log(applied.stdout.trim().split('\n').at(-1));
  const { stdout: pod } = await run('kubectl', ['get', 'pod', '-n', 'shop', '-l', 'gateway.networking.k8s.io/gateway-name=waypoint', '-o', 'jsonpath={.items[0].metadata.name}'], { env: kenv });
  const pf = spawn('kubectl', ['port-forward', '-n', 'shop', `pod/${pod}`, ':15020'], { env: kenv, stdio: ['ignore', 'pipe', 'pipe'] });
  forwards.push(pf);
  let pfOut = '';
  pf.stdout!.on('data', (d: Buffer) => (pfOut += d.toString()));
  const port = await waitFor('the port-forward to the waypoint', () => /127\.0\.0\.1:(\d+)/.exec(pfOut)?.[1], 30_000);
  writeFileSync(`${stateDir}/waypoints.json`, JSON.stringify([{ targets: [`127.0.0.1:${port}`] }]));

  // The map shows the waypoint on the path of the shop's calls.
  if (browser) {
    const page = (await browser.pages()).at(-1)!;
    await page.reload({ waitUntil: 'load' });
    const via = await waitFor('an edge through the waypoint on the map', async () => {
      const ws = await page.$$eval('#edges tr', (trs) => trs.map((tr) => `${tr.dataset.source} -> ${tr.dataset.target} via ${tr.dataset.waypoint}`));
      return ws.find((w) => / via shop\/waypoint$/.test(w));
    }, 60_000);
    t.log(`on the map: ${via}`);
    await page.screenshot({ path: `${ARTIFACTS}dashboard-shop-waypoint.png`, fullPage: true });
  }

  const files = readdirSync(DASHBOARDS).filter((f) => f.endsWith('.json'));
  const exprs: { where: string; expr: string }[] = [];
  const vars: { where: string; metric: string; label: string }[] = [];
  for (const f of files) {
    const d = JSON.parse(readFileSync(`${DASHBOARDS}/${f}`, 'utf8')) as DashboardJson;
    for (const p of d.panels) for (const q of p.targets ?? []) exprs.push({ where: `${d.title} / ${p.title}`, expr: substitute(q.expr) });
    for (const v of d.templating.list.filter((x) => x.type === 'query')) {
      const m = /^label_values\((.+), (\w+)\)$/.exec(substitute(v.definition ?? ''));
      if (!m) throw new Error(`${f}: variable ${v.name} is not a label_values() query: ${v.definition}`);
      vars.push({ where: `${d.title} / $${v.name}`, metric: m[1]!, label: m[2]! });
    }
  }
  t.true(exprs.length >= 25, `${exprs.length} queries`);
  // Every query answers, with the traffic still flowing (the waypoint's series need a few scrapes).
  const empty = new Set(exprs.map((e) => e.expr));
  await waitFor(
    'every dashboard query to return data',
    async () => {
      for (const e of exprs) if (empty.has(e.expr) && (await query(e.expr)).length > 0) empty.delete(e.expr);
      return empty.size === 0 ? true : undefined;
    },
    90_000,
  ).catch(() => undefined);
  for (const e of exprs) t.false(empty.has(e.expr), `${e.where}: ${e.expr} returned no data`);
  for (const v of vars) t.true((await labelValues(v.metric, v.label)).length > 0, `${v.where}: no values of ${v.label} in ${v.metric}`);
  t.true((await labelValues('istio_tcp_connections_opened_total', 'destination_workload_namespace')).includes('shop'));
  const denials = await query('sum(rate(istio_tcp_connections_failed_total{reporter="destination", response_flags="DENY", destination_workload_namespace="shop"}[5m])) by (source_workload, destination_workload)');
  t.true(denials.some((r) => r.metric.source_workload === 'frontend' && r.metric.destination_workload === 'catalog'), `the denial panel names frontend → catalog: ${JSON.stringify(denials)}`);
  t.log(`${exprs.length} queries and ${vars.length} variables of ${files.length} dashboards answered`);

  // Istio's standard dashboards (workload, service, ztunnel): the queries their panels run, as
  // docs/dashboards.md lists them (written here from their metric and label names), with what our
  // metrics give. `true`: the panel has data; `false`: it stays empty, for the reason in the doc.
  const ISTIO: [string, string, boolean][] = [
    ['workload: TCP server traffic', 'sum(rate(istio_tcp_sent_bytes_total{reporter="destination", destination_workload_namespace="shop"}[5m])) + sum(rate(istio_tcp_received_bytes_total{reporter="destination", destination_workload_namespace="shop"}[5m]))', true],
    ['workload: TCP client traffic', 'sum(rate(istio_tcp_sent_bytes_total{reporter="source", source_workload_namespace="shop"}[5m])) + sum(rate(istio_tcp_received_bytes_total{reporter="source", source_workload_namespace="shop"}[5m]))', true],
    ['workload: bytes from incoming TCP connections by source', 'sum(rate(istio_tcp_received_bytes_total{reporter="destination", destination_workload_namespace="shop"}[5m])) by (source_workload)', true],
    ['workload: bytes on outgoing TCP connections by destination service', 'sum(rate(istio_tcp_sent_bytes_total{reporter="source", source_workload_namespace="shop"}[5m])) by (destination_service)', true],
    ['service: TCP bytes by client workload (reporter="source")', 'sum(rate(istio_tcp_received_bytes_total{reporter="source", destination_service=~"orders.shop.svc.cluster.local"}[5m])) by (source_workload)', true],
    ['service: TCP bytes by service workload (reporter="destination")', 'sum(rate(istio_tcp_received_bytes_total{reporter="destination", destination_service=~"orders.shop.svc.cluster.local"}[5m])) by (destination_workload)', false],
    ['workload/service: requests with reporter="destination"', 'sum(rate(istio_requests_total{reporter="destination"}[5m]))', false],
    ['workload/service: requests with reporter="source"', 'sum(rate(istio_requests_total{reporter="source"}[5m]))', false],
    ['workload/service: requests with reporter=~"source|waypoint"', 'sum(rate(istio_requests_total{reporter=~"source|waypoint", destination_workload_namespace="shop"}[5m])) by (destination_workload)', true],
    ['workload/service: request duration with reporter=~"source|waypoint"', 'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter=~"source|waypoint", destination_service_namespace="shop"}[5m])) by (le))', true],
    ['ztunnel: versions', 'sum(istio_build{component="ztunnel"}) by (tag)', true],
    ['ztunnel: connections opened and closed', 'sum(rate(istio_tcp_connections_opened_total[5m])) - sum(rate(istio_tcp_connections_closed_total[5m]))', true],
    ['ztunnel: memory and CPU (cAdvisor)', 'sum(container_memory_working_set_bytes{container="istio-proxy"})', false],
    ['ztunnel: DNS requests', 'sum(rate(istio_dns_requests_total[5m]))', false],
    ['ztunnel: XDS connection terminations', 'sum(rate(istio_xds_connection_terminations_total[5m]))', false],
    ['ztunnel: workload manager', 'sum(workload_manager_active_proxy_count)', false],
  ];
  for (const [panel, expr, has] of ISTIO) {
    const r = await query(expr);
    t.log(`Istio ${panel}: ${r.length > 0 ? 'data' : 'empty'}`);
    t.is(r.length > 0, has, `Istio ${panel}: ${expr}`);
  }
});

test.serial('meshctl dashboard on a cluster: port-forwards to the running controller pod and prints the URL until Ctrl-C', async (t) => {
  if (!demoOk) return t.fail('the demo did not run');
  // The local cluster's controller runs on the host, not in a pod: a stand-in pod with the chart's
  // controller labels answers on the dashboard's port, so the path through the API server's
  // port-forward is the one a real cluster takes.
  const kubeconfig = (JSON.parse(readFileSync(`${stateDir}/status.json`, 'utf8')) as { kubeconfig: string }).kubeconfig;
  const kenv = { ...env, KUBECONFIG: kubeconfig };
  const script = "require('node:http').createServer((q, s) => s.end(q.url === '/healthz' ? '{\"ok\":true}' : 'stand-in controller ' + q.url)).listen(20001)";
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'mesh-controller-standin', namespace: 'mesh-system', labels: { 'app.kubernetes.io/name': 'mesh', 'app.kubernetes.io/component': 'controller' } },
    spec: { containers: [{ name: 'controller', image: 'node:24', command: [process.execPath, '-e', script] }] },
  };
  writeFileSync(`${stateDir}/standin.json`, JSON.stringify(pod));
  await run('kubectl', ['apply', '-f', `${stateDir}/standin.json`], { env: kenv });
  await waitFor('the stand-in controller pod to run', async () => ((await run('kubectl', ['get', 'pod', '-n', 'mesh-system', 'mesh-controller-standin', '-o', 'jsonpath={.status.phase}'], { env: kenv })).stdout === 'Running' ? true : undefined), 60_000);

  // A wrong namespace is refused with what to check.
  const wrong = await run(MESHCTL, ['dashboard', '--kubeconfig', kubeconfig, '--namespace', 'nowhere'], { env }).then(() => '', (e: Error & { stderr?: string }) => e.stderr ?? e.message);
  t.regex(wrong, /no running controller pod in namespace nowhere/);

  const p = spawn(MESHCTL, ['dashboard', '--kubeconfig', kubeconfig, '--show', 'shop'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  forwards.push(p);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await waitFor('meshctl dashboard to print the URL', () => /^(http:\/\/127\.0\.0\.1:\d+\/\?namespace=shop)$/m.exec(out)?.[1], 60_000).catch((e: Error) => {
    throw new Error(`${e.message}: ${out} ${err}`);
  });
  // stderr is its own pipe: its line may be read after stdout's URL although written before it.
  await waitFor('meshctl dashboard to say where it forwards', () => (/forwarding to /.test(err) ? true : undefined), 5_000).catch(() => undefined);
  t.regex(err, /forwarding to mesh-system\/mesh-controller-standin/);
  t.is(await (await fetch(url)).text(), 'stand-in controller /?namespace=shop', 'the URL reaches the pod through the port-forward');
  p.kill('SIGINT');
  const code = await new Promise<number | null>((resolve) => p.once('exit', (c) => resolve(c)));
  t.is(code, 0, `Ctrl-C ends it cleanly: ${err}`);
  await run('kubectl', ['delete', 'pod', '-n', 'mesh-system', 'mesh-controller-standin', '--wait=false'], { env: kenv });
});

test.serial('dev down leaves nothing', async (t) => {
  if (!demoOk) return t.fail('the demo did not run');
  await browser?.close();
  browser = undefined;
  await run(MESHCTL, ['dev', 'down', '--purge'], { env, timeout: 120_000 });
  t.deepEqual(await assertNothingLeaked(prefix), []);
});


// The chart's Grafana dashboards: off by default; when on, one ConfigMap per dashboards/*.json,
// labelled for Grafana's sidecar, carrying the file unchanged; and every panel queries Prometheus.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { CHART, helm, renderChart } from '../helpers/helm.ts';

const DIR = join(CHART, 'dashboards');
const FILES = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

interface Dashboard {
  uid: string;
  title: string;
  panels: { type: string; title: string; targets?: { expr: string }[] }[];
}

test('dashboards: none unless dashboards.enabled', async (t) => {
  const docs = await renderChart();
  t.false(docs.some((d) => d.kind === 'ConfigMap' && String(d.metadata.name).startsWith('mesh-dashboard-')));
});

test('dashboards: one ConfigMap per file, labelled for the Grafana sidecar, the JSON unchanged', async (t) => {
  t.deepEqual(FILES, ['mesh-flows-datapath.json', 'mesh-workloads-services.json']);
  const docs = await renderChart({ 'dashboards.enabled': 'true', 'dashboards.annotations.grafana_folder': 'Mesh' });
  const maps = docs.filter((d) => d.kind === 'ConfigMap' && String(d.metadata.name).startsWith('mesh-dashboard-'));
  t.is(maps.length, FILES.length);
  for (const f of FILES) {
    const cm = maps.find((m) => m.data?.[f] !== undefined);
    t.truthy(cm, `a ConfigMap carries ${f}`);
    t.is(cm.metadata.labels.grafana_dashboard, '1');
    t.is(cm.metadata.annotations.grafana_folder, 'Mesh');
    t.deepEqual(JSON.parse(cm.data[f]), JSON.parse(readFileSync(join(DIR, f), 'utf8')));
  }
  const custom = await renderChart({ 'dashboards.enabled': 'true', 'dashboards.label': 'my_dashboards', 'dashboards.labelValue': 'yes' });
  t.true(custom.some((d) => d.kind === 'ConfigMap' && d.metadata.labels?.my_dashboards === 'yes'));
});

test('dashboards: the schema refuses a misspelt key', async (t) => {
  const r = await helm(['template', 'mesh', CHART, '-n', 'mesh-system', '--set', 'dashboards.enabeld=true']);
  t.not(r.code, 0);
  t.regex(r.stderr, /enabeld/);
});

test('dashboards: distinct uids, and every panel has at least one Prometheus query', (t) => {
  const uids = new Set<string>();
  for (const f of FILES) {
    const d = JSON.parse(readFileSync(join(DIR, f), 'utf8')) as Dashboard;
    t.false(uids.has(d.uid), `${f}: uid ${d.uid} is unique`);
    uids.add(d.uid);
    for (const p of d.panels.filter((x) => x.type !== 'row')) t.true((p.targets ?? []).length > 0 && p.targets!.every((q) => q.expr.length > 0), `${f}: "${p.title}" queries something`);
  }
});

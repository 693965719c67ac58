// `meshctl analyze` (issue 17 §4): its rules against a real local API server seeded with the
// problems it must find — unknown dataplane modes, a pod opted out, a policy with L7 fields and no
// waypoint, a missing waypoint, a Service without endpoints, a route to a Service that does not
// exist — plus flows (a STRICT namespace called in plaintext) and certificates (one expired, one
// retrying) as the relay and the ztunnels report them. The real meshctl binary prints each finding
// with its code and exits 1; every code is documented in docs/analyze.md.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import * as yaml from 'js-yaml';
import { analyze, CODES, type Finding, findingLine, readSnapshot, sortFindings } from '../../src/cli/analyze/index.ts';
import { loadKubeConfig } from '../../src/cli/kube.ts';
import { buildModel } from '../../src/controller/model/index.ts';
import type { Flow } from '../../src/flows/types.ts';
import { applyCrds, call, harness } from '../helpers/apiserver.ts';

const run = promisify(execFile);
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const GATEWAY_CRDS = fileURLToPath(new URL('../../daemonset/chart/files/gateway-api-crds.yaml', import.meta.url));
const DOCS = fileURLToPath(new URL('../../docs/analyze.md', import.meta.url));

function strictFlow(src: { ns: string; pod: string }): Flow {
  return {
    timeUnixNano: Date.now() * 1e6, uuid: 'x', nodeName: 'node1', verdict: 'DROPPED',
    dropReasonDesc: 'Policy denied: shop/web requires mutual TLS (PeerAuthentication STRICT, mesh-system/converted_static_strict) and the connection presented no verified identity',
    ip: { source: '10.1.0.9', destination: '10.1.0.2', ipVersion: 4, encrypted: false }, tcp: { sourcePort: 40000, destinationPort: 8080 },
    source: { namespace: src.ns, podName: src.pod, identity: '', serviceAccount: 'default', workload: src.pod, nodeName: 'node1' },
    destination: { namespace: 'shop', podName: 'web', identity: '', serviceAccount: 'web', workload: 'web', nodeName: 'node1' },
    type: 'L3_L4', trafficDirection: 'INGRESS', destinationService: '', reporter: 'ztunnel-destination', protocol: 'TCP', bytesSent: 0, bytesReceived: 0, durationMs: 0,
    responseFlags: 'DENY', summary: '', kernel: null, l7: null,
    ingressDeniedBy: [{ namespace: 'mesh-system', name: 'converted_static_strict', kind: 'PeerAuthentication' }],
  };
}

const byCode = (fs: Finding[]) => new Map(fs.map((f) => [`${f.code} ${f.kind} ${f.namespace}/${f.name}`, f]));

test('analyze finds each seeded problem in a real API server, with its code, object and fix; meshctl prints them and exits 1', async (t) => {
  const h = await harness(t);
  await applyCrds(h.server);
  // The Gateway API bundle also holds a ValidatingAdmissionPolicy: only its CRDs are wanted here.
  for (const doc of yaml.loadAll(readFileSync(GATEWAY_CRDS, 'utf8')) as { kind?: string }[]) {
    if (doc?.kind !== 'CustomResourceDefinition') continue;
    const r = await call(h.server, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', doc);
    if (r.status !== 201) throw new Error(`creating a Gateway API CRD: ${r.status} ${r.text}`);
  }
  const post = async (path: string, body: unknown) => {
    const r = await call(h.server, 'POST', path, body);
    if (r.status !== 201) throw new Error(`POST ${path}: ${r.status} ${r.text}`);
  };
  await post('/api/v1/namespaces', { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient', 'mesh.io/use-waypoint': 'waypoint' } } });
  await post('/api/v1/namespaces', { metadata: { name: 'typo', labels: { 'mesh.io/dataplane-mode': 'ambiant' } } });
  const pod = (ns: string, name: string, labels: Record<string, string>) =>
    post(`/api/v1/namespaces/${ns}/pods`, { metadata: { name, namespace: ns, labels }, spec: { nodeName: 'node1', containers: [{ name: 'main', image: 'unused' }] } });
  await pod('shop', 'web', { app: 'web' });
  await pod('shop', 'legacy', { app: 'legacy', 'mesh.io/dataplane-mode': 'none' });
  await pod('shop', 'odd', { app: 'odd', 'mesh.io/dataplane-mode': 'off' });
  await post('/api/v1/namespaces/shop/services', { metadata: { name: 'empty', namespace: 'shop' }, spec: { selector: { app: 'nothing' }, ports: [{ port: 80 }] } });
  await post('/api/v1/namespaces/shop/services', { metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } });
  await post('/apis/security.mesh.io/v1/namespaces/typo/authorizationpolicies', {
    apiVersion: 'security.mesh.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-post', namespace: 'typo' },
    spec: { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'] } }] }] },
  });
  await post('/apis/security.mesh.io/v1/namespaces/shop/peerauthentications', {
    apiVersion: 'security.mesh.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } },
  });
  await post('/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes', {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web-split', namespace: 'shop' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ backendRefs: [{ name: 'web-v2', port: 80 }] }] },
  });

  const kc = await loadKubeConfig({ kubeconfig: h.kubeconfig, stateDir: '/nonexistent' });
  const snapshot = await readSnapshot(kc);
  const now = new Date('2026-12-07T12:00:00Z');
  const findings = sortFindings(analyze({
    snapshot,
    model: buildModel(snapshot),
    flows: [strictFlow({ ns: 'legacy', pod: 'curl' }), strictFlow({ ns: 'legacy', pod: 'curl' }), strictFlow({ ns: 'shop', pod: 'legacy' })],
    certificates: [{
      node: 'node1',
      certificates: [
        { identity: 'spiffe://cluster.local/ns/shop/sa/web', state: 'ready', serial: '01', notBefore: '2026-12-06T11:00:00Z', notAfter: '2026-12-07T11:00:00Z', nextRefresh: '2026-12-06T23:00:00Z', failures: 7, lastError: 'CA unreachable' },
        { identity: 'spiffe://cluster.local/ns/shop/sa/db', state: 'refreshing', serial: '02', notBefore: '2026-12-07T00:00:00Z', notAfter: '2026-12-08T00:00:00Z', nextRefresh: '2026-12-07T12:00:00Z', failures: 2, lastError: 'deadline exceeded' },
        { identity: 'spiffe://cluster.local/ns/shop/sa/ok', state: 'ready', serial: '03', notBefore: '2026-12-07T06:00:00Z', notAfter: '2026-12-08T06:00:00Z', nextRefresh: '2026-12-07T18:00:00Z', failures: 0, lastError: undefined },
      ],
    }],
    now,
  }));
  const got = byCode(findings);
  const expect = (key: string, re: RegExp, fix: RegExp) => {
    const f = got.get(key);
    if (!f) return t.fail(`no ${key} among:\n${findings.map(findingLine).join('\n')}`);
    t.regex(f.message, re, key);
    t.regex(f.fix, fix, key);
  };
  expect('MESH0101 Namespace /typo', /mesh\.io\/dataplane-mode=ambiant is not a mode the mesh knows/, /kubectl label namespace typo mesh\.io\/dataplane-mode=ambient --overwrite/);
  expect('MESH0102 Pod shop/odd', /dataplane-mode=off is not a mode.*captured anyway/, /set the label to none/);
  expect('MESH0103 Pod shop/legacy', /opted out by its label mesh\.io\/dataplane-mode=none/, /remove the label/);
  expect('MESH0202 AuthorizationPolicy typo/deny-post', /cannot be enforced as written.*L7FieldsWithoutWaypoint.*no controller has written/, /waypoint/);
  expect('MESH0301 Gateway shop/waypoint', /does not exist: their traffic is refused/, /meshctl waypoint apply -n shop --name waypoint/);
  expect('MESH0401 Service shop/empty', /no ready endpoint: no pod matches its selector app=nothing/, /start ready pods labelled app=nothing/);
  expect('MESH0401 Service shop/web', /1 pod\(s\) match its selector app=web but none is ready/, /app=web/);
  expect('MESH0501 Namespace /shop', /requires mutual TLS \(PeerAuthentication shop\/default\).*3 connection\(s\) refused, from legacy\/curl, shop\/legacy/, /kubectl label namespace legacy mesh\.io\/dataplane-mode=ambient; remove the mesh\.io\/dataplane-mode=none label of shop\/legacy/);
  expect('MESH0601 HTTPRoute shop/web-split', /does not resolve for Service shop\/web: ResolvedRefs=False \(BackendNotFound\)/, /create the Service named in backendRefs/);
  expect('MESH0701 Certificate shop/web on node1', /expired at 2026-12-07T11:00:00Z.*7 failed attempts: CA unreachable/, /meshctl ztunnel-config certificates --node node1/);
  expect('MESH0702 Certificate shop/db on node1', /not renewing \(2 failed attempts: deadline exceeded\)/, /CA/);
  t.false([...got.keys()].some((k) => k.includes('shop/ok')), 'a healthy certificate is no finding');
  t.is(findings[0]?.severity, 'Error', 'errors first');
  t.regex(findingLine(got.get('MESH0301 Gateway shop/waypoint')!), /^Error \[MESH0301\] \(Gateway shop\/waypoint\) waypoint shop\/waypoint is used by Namespace\/shop, Service\/shop\/empty, Service\/shop\/web but does not exist.*\. Fix: meshctl waypoint apply/);

  // The real command: every finding on one line each; exit 1 for the errors; -o json the same set.
  const cli = (...args: string[]) => run(MESHCTL, ['analyze', '--kubeconfig', h.kubeconfig, '--state-dir', h.dir, ...args], { timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
  const text = await cli();
  t.is(text.code, 1, text.stderr);
  for (const line of ['Error [MESH0101] (Namespace typo)', 'Error [MESH0301] (Gateway shop/waypoint)', 'Warning [MESH0401] (Service shop/empty)', 'Info [MESH0103] (Pod shop/legacy)', 'Info [MESH0502] (Flows relay)']) {
    t.true(text.stdout.includes(line), `${line} in:\n${text.stdout}`);
  }
  const json = await cli('-o', 'json', '-n', 'shop');
  t.is(json.code, 1);
  const parsed = JSON.parse(json.stdout) as Finding[];
  t.true(parsed.every((f) => f.namespace === 'shop' || (f.kind === 'Namespace' && f.name === 'shop')), '-n keeps one namespace');
  t.true(parsed.some((f) => f.code === 'MESH0301'));
  const warnOnly = await cli('-n', 'typo', '--output-threshold', 'Error', '--failure-threshold', 'Error');
  t.is(warnOnly.code, 1);
  t.regex(warnOnly.stdout, /^Error \[MESH0101\]/m);
  t.notRegex(warnOnly.stdout, /Info \[/);
  const bad = await cli('--failure-threshold', 'Fatal');
  t.is(bad.code, 2, 'a wrong command line is a usage error');
});

test('a clean mesh has nothing to report', (t) => {
  const ns = { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } };
  const snapshot = { namespaces: [ns], pods: [], services: [], endpointSlices: [], nodes: [], gateways: [], httpRoutes: [], authorizationPolicies: [], peerAuthentications: [] };
  const findings = analyze({ snapshot, model: buildModel(snapshot), flows: [], certificates: [], now: new Date() });
  t.deepEqual(findings, []);
  // Flows and certificates that cannot be read are said, not hidden, and are no error.
  const blind = analyze({ snapshot, model: buildModel(snapshot), flows: { error: 'no relay' }, certificates: { error: 'no admin' }, now: new Date() });
  t.deepEqual(blind.map((f) => `${f.severity} ${f.code}`), ['Info MESH0502', 'Info MESH0703']);
});

test('every code is documented in docs/analyze.md with its severity and a fix', (t) => {
  const doc = readFileSync(DOCS, 'utf8');
  for (const [code, { severity, name }] of Object.entries(CODES)) {
    const section = new RegExp(`^## ${code} ${name}\\n\\n\\*\\*${severity}\\*\\*[^]*?\\n\\*\\*Fix:\\*\\*`, 'm');
    t.regex(doc, section, `${code} ${name} (${severity}) with a Fix`);
  }
  const documented = [...doc.matchAll(/^## (MESH\d{4})/gm)].map((m) => m[1]);
  t.deepEqual(documented.sort(), Object.keys(CODES).sort(), 'no stale codes in the docs');
});

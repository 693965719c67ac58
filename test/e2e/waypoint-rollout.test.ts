// Waypoints drain on a rollout (issue 15 §3): `kubectl rollout restart deployment/waypoint` while a
// client in node2 opens a new connection to Service web every 100 ms (captured by ztunnel, sent
// over HBONE to the waypoint, routed to the pod in node1). The Deployment surges (the new pod is
// ready before the old one is deleted); the old waypoint, on SIGTERM, keeps taking new tunnels
// while the ztunnels learn it is leaving, then stops listening and lets what is open finish — here
// a request that takes 15 s, started before the restart. No request fails, the slow one included,
// and the old pod exits only once it has finished.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { startMesh, waitFor } from '../helpers/mesh.ts';
import { HTTP_LOOP, loopResults } from '../helpers/scripts.ts';
import { requireRoot } from '../helpers/topology.ts';

const NODE = process.execPath;
const GATEWAY_API = fileURLToPath(new URL('../../daemonset/chart/files/gateway-api-crds.yaml', import.meta.url));
const SLOW_MS = 15_000;
/** "ok" at once; /slow after SLOW_MS. */
const SERVER = `require('node:http').createServer((q, s) => { s.on('error', () => {}); if (q.url === '/slow') setTimeout(() => s.end('slow-ok'), ${SLOW_MS}); else s.end('ok'); }).listen(8080);`;
/** One GET of /slow; prints "<status> <body>" or the error. */
const SLOW_CLIENT = `
const r = require('node:http').get({ host: process.argv[1], port: 8080, path: '/slow', agent: false, timeout: 60000 }, (s) => {
  let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => console.log('RESULT', Date.now(), s.statusCode, b));
});
r.on('timeout', () => r.destroy(new Error('timeout')));
r.on('error', (e) => console.log('RESULT', Date.now(), 'error', e.code || e.message));
`;

test('waypoint-rollout-drains: kubectl rollout restart of the waypoint under a request loop fails no request; an in-flight 15 s request completes; the old pod exits after it', async (t) => {
  if (!(await requireRoot(t))) return;
  const mesh = await startMesh(t, { ztunnel: true });
  const { core, kubectl, stateDir } = mesh;
  await kubectl('apply', '-f', GATEWAY_API);
  await core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient', 'mesh.io/use-waypoint': 'waypoint' } } } });
  const pod = (name: string, node: string, command: string[], labels: Record<string, string> = {}) =>
    core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name, labels }, spec: { nodeName: node, restartPolicy: 'Never', containers: [{ name: 'main', image: 'local', command }] } } as k8s.V1Pod });
  await pod('web', 'node1', [NODE, '-e', SERVER], { app: 'web' });
  const web = await core.createNamespacedService({ namespace: 'shop', body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 8080, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
  const vip = web.spec!.clusterIP!;
  const gw = `${stateDir}/gateway.yaml`;
  writeFileSync(gw, 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\nspec:\n  gatewayClassName: mesh-waypoint\n  listeners:\n  - {name: mesh, port: 15008, protocol: HBONE}\n');
  await kubectl('apply', '-f', gw);
  await waitFor('the waypoint Programmed', async () => ((await kubectl('get', 'gateway', '-n', 'shop', 'waypoint', '-o', 'jsonpath={.status.conditions[?(@.type=="Programmed")].status}')).stdout === 'True' ? true : undefined), 60_000);
  const waypointPods = async () =>
    (await core.listNamespacedPod({ namespace: 'shop', labelSelector: 'gateway.networking.k8s.io/gateway-name=waypoint' })).items.map((p) => ({ name: p.metadata!.name!, deleting: !!p.metadata?.deletionTimestamp, ready: p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false }));
  const [old] = await waypointPods();
  t.truthy(old);
  // The grace period covers the drain (3 s delay + 1 h deadline by default), so the kubelet never cuts it short.
  const grace = (await core.readNamespacedPod({ name: old!.name, namespace: 'shop' })).spec?.terminationGracePeriodSeconds;
  t.true((grace ?? 0) >= 3600, `grace period ${grace} s`);

  await pod('client', 'node2', [NODE, '-e', HTTP_LOOP, vip]);
  const lines = () => loopResults(`${stateDir}/logs/shop_client_main.log`, (f) => readFileSync(f, 'utf8'));
  await waitFor('requests through the waypoint', () => (lines().filter(([, r]) => r === 'ok').length >= 5 ? true : undefined), 30_000);
  const oldLog = `${stateDir}/logs/shop_${old!.name}_waypoint.log`;
  const served = (file: string) => {
    try {
      return readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('"response_code":200')).length;
    } catch {
      return 0;
    }
  };
  // Its access log (one line per request) shows the loop goes through it.
  await waitFor('the old waypoint to serve the loop', () => (served(oldLog) > 0 ? true : undefined), 10_000);
  const start = Date.now();

  // A request that outlives the old waypoint's listener, started before the restart.
  await pod('slow', 'node2', [NODE, '-e', SLOW_CLIENT, vip]);
  const slowLog = `${stateDir}/logs/shop_slow_main.log`;
  await new Promise((r) => setTimeout(r, 1000));
  const restartedAt = Date.now();
  await kubectl('rollout', 'restart', 'deployment/waypoint', '-n', 'shop');
  await kubectl('rollout', 'status', 'deployment/waypoint', '-n', 'shop', '--timeout=90s');
  t.log(`rollout restart → rollout status done in ${Date.now() - restartedAt} ms`);

  const slow = await waitFor(
    'the slow request to finish',
    () => {
      try {
        return readFileSync(slowLog, 'utf8').split('\n').find((l) => l.startsWith('RESULT '));
      } catch {
        return undefined;
      }
    },
    SLOW_MS + 30_000,
  );
  const [, endedAt, status, body] = slow.split(' ');
  t.is(`${status} ${body}`, '200 slow-ok', `the in-flight request finished: ${slow}`);
  // The old pod drained and exited, after the slow request.
  await waitFor('the old waypoint pod to be gone', async () => ((await waypointPods()).some((p) => p.name === old!.name) ? undefined : true), 60_000);
  const oldText = readFileSync(oldLog, 'utf8');
  const at = (msg: string) => {
    const line = oldText.split('\n').find((l) => l.includes(msg));
    return line ? Date.parse((JSON.parse(line) as { time: string }).time) : undefined;
  };
  const sigterm = at('"msg":"stopping"');
  const stoppedListening = at('no longer taking new tunnels');
  const drained = at('drained: every request and tunnel finished');
  t.truthy(sigterm, 'the old waypoint got SIGTERM');
  t.truthy(drained, `the old waypoint drained without resetting anything:\n${oldText.slice(-2000)}`);
  t.log(`old waypoint: SIGTERM at +${sigterm! - restartedAt} ms, stopped listening at +${stoppedListening! - restartedAt} ms, drained at +${drained! - restartedAt} ms; slow request ended at +${Number(endedAt) - restartedAt} ms`);
  t.true(stoppedListening! < Number(endedAt), 'the slow request was still in flight when the old waypoint stopped listening');
  t.true(drained! >= Number(endedAt) - 50, 'the old waypoint finished draining only after the slow request ended');

  // The new pod serves; no request of the loop failed across the whole rollout.
  await new Promise((r) => setTimeout(r, 1500));
  const end = Date.now();
  const window = lines().filter(([ts]) => ts >= start && ts <= end);
  const failed = window.filter(([, r]) => r !== 'ok');
  t.log(`${window.length} requests over ${((end - start) / 1000).toFixed(1)} s across the waypoint rollout, ${failed.length} failed`);
  t.true(window.length > (end - start) / 200, `the client kept going: ${window.length} requests`);
  t.deepEqual(failed, [], 'no request failed');
  const [now] = (await waypointPods()).filter((p) => !p.deleting);
  t.not(now?.name, old!.name);
  t.true(served(`${stateDir}/logs/shop_${now!.name}_waypoint.log`) > 0, 'the new waypoint serves the loop');
});

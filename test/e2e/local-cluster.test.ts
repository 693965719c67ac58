// The local cluster end to end: pods scheduled onto nodes made of network namespaces, a service
// reachable by pod IP, ClusterIP and DNS name from the other node, status written back, and
// nothing left on the host afterwards. Everything goes through the API server with client-node.
import { existsSync, readFileSync } from 'node:fs';
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { requireRoot } from '../helpers/topology.ts';
import { startTestCluster } from '../helpers/cluster.ts';
import { waitFor } from '../helpers/wait.ts';

const NODE = process.execPath;

const SERVER = `require('node:http').createServer((q, s) => s.end('hello from ' + process.env.POD_NAME + '\\n')).listen(8080)`;

// Tries each URL a few times (service rules follow the endpoint slice by a few ms) and prints
// one line per URL: "<url> <body or error>".
const CLIENT = `
const http = require('node:http');
const get = (u) => new Promise((res) => {
  const r = http.get(u, { timeout: 2000 }, (s) => { let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => res(b.trim())); });
  r.on('error', (e) => res('error ' + e.code)); r.on('timeout', () => r.destroy(new Error('timeout')));
});
(async () => {
  for (const u of process.argv.slice(1)) {
    let out = '';
    for (let i = 0; i < 20; i++) { out = await get(u); if (!out.startsWith('error')) break; await new Promise((r) => setTimeout(r, 250)); }
    console.log(u + ' ' + out);
  }
})();
`;

test('a pod on one node reaches a server pod on the other by pod IP, ClusterIP and service name', async (t) => {
  if (!(await requireRoot(t))) return;
  const { cluster, stateDir } = await startTestCluster(t, 2);
  const core = cluster.kc.makeApiClient(k8s.CoreV1Api);
  const ns = 'shop';
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: 'web', labels: { app: 'web' } },
      spec: {
        nodeName: 'node1',
        containers: [
          {
            name: 'web',
            image: 'ignored',
            command: [NODE, '-e', SERVER],
            env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
            ports: [{ name: 'http', containerPort: 8080 }],
            readinessProbe: { httpGet: { path: '/', port: 'http' as unknown as k8s.IntOrString }, periodSeconds: 1 },
          },
        ],
      },
    },
  });
  await core.createNamespacedService({
    namespace: ns,
    body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' as unknown as k8s.IntOrString }] } },
  });
  const web = await waitFor('web to be ready', async () => {
    const p = await core.readNamespacedPod({ name: 'web', namespace: ns });
    return p.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? p : undefined;
  });
  t.is(web.status?.phase, 'Running');
  t.regex(web.status?.podIP ?? '', /^10\.100\.0\.\d+$/, 'node1 hands out addresses from its pod CIDR');
  const svc = await core.readNamespacedService({ name: 'web', namespace: ns });
  t.regex(svc.spec?.clusterIP ?? '', /^10\.96\./);
  const slices = await cluster.kc.makeApiClient(k8s.DiscoveryV1Api).listNamespacedEndpointSlice({ namespace: ns, labelSelector: 'kubernetes.io/service-name=web' });
  t.deepEqual(slices.items.flatMap((s) => (s.endpoints ?? []).map((e) => e.addresses[0])), [web.status!.podIP]);
  t.is(slices.items[0]?.ports?.[0]?.port, 8080, 'the named target port is resolved');

  const urls = [`http://${web.status!.podIP}:8080/`, `http://${svc.spec!.clusterIP}/`, 'http://web/', `http://web.${ns}.svc.cluster.local/`];
  await core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { name: 'client' }, spec: { nodeName: 'node2', restartPolicy: 'Never', containers: [{ name: 'c', image: 'ignored', command: [NODE, '-e', CLIENT, ...urls] }] } },
  });
  const logFile = `${stateDir}/logs/${ns}_client_c.log`;
  const done = await waitFor(`client to finish (log: ${logFile})`, async () => {
    const p = await core.readNamespacedPod({ name: 'client', namespace: ns });
    return ['Succeeded', 'Failed'].includes(p.status?.phase ?? '') ? p : undefined;
  });
  t.is(done.status?.phase, 'Succeeded');
  t.regex(done.status?.podIP ?? '', /^10\.101\.0\.\d+$/);
  const log = readFileSync(logFile, 'utf8');
  for (const u of urls) t.true(log.includes(`${u} hello from web`), `${u} answered: ${log}`);

  // Deleting a pod removes its namespace; the endpoint slice empties and the ClusterIP refuses.
  const webNetns = cluster.kubelets[0]!.runtimes().find((r) => r.key === `${ns}/web`)?.netns;
  t.truthy(webNetns);
  await core.deleteNamespacedPod({ name: 'web', namespace: ns });
  await waitFor('web netns to go', async () => (existsSync(`/run/netns/${webNetns}`) ? undefined : true));
  await waitFor('the slice to empty', async () => {
    const s = await cluster.kc.makeApiClient(k8s.DiscoveryV1Api).readNamespacedEndpointSlice({ name: 'web', namespace: ns });
    return (s.endpoints ?? []).length === 0 ? true : undefined;
  });
});

// The demo's shop, shared by `npm run demo` (demo/mesh.ts) and the end-to-end tests that run the
// demo's checks (test/e2e/demo.test.ts through the demo, test/e2e/chart-mesh.test.ts against the
// chart's mesh): frontend, catalog, orders and payments calling each other over HTTP on both
// nodes, a load generator, the DENY policy, and a capture of the wire between the nodes.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import * as yaml from 'js-yaml';

export const MARKER = 'CARD-4242-4242-4242';
export const NS = 'shop';
const NODE = process.execPath;

// The shop. Every call is a new connection (no keep-alive), so capture applies to it as soon as
// the pods are enrolled — long-lived connections made before stay as they were, as in Istio.
const HTTP = `const http = require('node:http');
const call = (host, path, body) => new Promise((resolve) => {
  const r = http.request({ host, path, method: body ? 'POST' : 'GET', agent: false, timeout: 2000 }, (s) => { let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => resolve(s.statusCode + ' ' + b)); });
  r.on('error', (e) => resolve('error ' + (e.code || e.message))); r.on('timeout', () => r.destroy(new Error('timeout')));
  r.end(body);
});`;
export const APPS: Record<string, { node: string; script: string }> = {
  frontend: {
    node: 'node1',
    script: `${HTTP}
http.createServer(async (q, s) => {
  const [catalog, order] = await Promise.all([call('catalog', '/'), call('orders', '/', 'espresso ${MARKER}')]);
  s.end('catalog: ' + catalog + ' | order: ' + order + '\\n');
}).listen(8080);`,
  },
  catalog: { node: 'node2', script: `${HTTP}\nhttp.createServer((q, s) => s.end('espresso, latte')).listen(8080);` },
  orders: {
    node: 'node1',
    script: `${HTTP}
http.createServer((q, s) => { let b = ''; q.on('data', (d) => (b += d)); q.on('end', async () => s.end('order ok, payment ' + (await call('payments', '/', b)))); }).listen(8080);`,
  },
  payments: { node: 'node2', script: `${HTTP}\nhttp.createServer((q, s) => { q.resume(); q.on('end', () => s.end('paid')); }).listen(8080);` },
  loadgen: {
    node: 'node2',
    script: `${HTTP}\nsetInterval(async () => console.log(new Date().toISOString(), await call('frontend', '/')), 700);`,
  },
};

/** The shop's namespace, service accounts, pods and services (pods run `node` on the host). */
export function manifests(): string {
  const items: unknown[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } }];
  for (const [name, app] of Object.entries(APPS)) {
    items.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: NS } });
    items.push({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: NS, labels: { app: name } },
      spec: { nodeName: app.node, serviceAccountName: name, containers: [{ name: 'main', image: 'node:24', command: [NODE, '-e', app.script] }] },
    });
    if (name !== 'loadgen') {
      items.push({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: NS }, spec: { selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
    }
  }
  return items.map((i) => yaml.dump(i, { lineWidth: -1 })).join('---\n');
}

/** The catalog denies the frontend's identity. */
export const DENY = JSON.stringify({
  apiVersion: 'security.mesh.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'catalog-closed-to-frontend', namespace: NS },
  spec: { action: 'DENY', selector: { matchLabels: { app: 'catalog' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }] }] },
});

/** Captures `seconds` of TCP on node1's link into the network (the bridge between the nodes). */
export async function wire(prefix: string, dir: string, seconds: number): Promise<Buffer> {
  const file = `${dir}/capture-${Date.now()}.pcap`;
  const tshark = spawn('ip', ['netns', 'exec', `${prefix}-fabric`, 'tshark', '-q', '-i', 'f0', '-w', file, '-f', 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  // The window starts when tshark says it captures (it takes a while to start on a busy host),
  // not when it was spawned.
  let said = '';
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10_000);
    tshark.stderr.on('data', (d: Buffer) => {
      said += d.toString();
      if (said.includes('Capturing on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    tshark.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  tshark.stderr.resume();
  await sleep(seconds * 1000);
  tshark.kill('SIGTERM');
  await new Promise((r) => tshark.once('exit', r));
  try {
    return readFileSync(file);
  } catch {
    return Buffer.alloc(0);
  }
}

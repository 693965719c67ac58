// Certificates rotate where they are used: with a workload-certificate lifetime of a few seconds,
// traffic between the two nodes (a new connection every 100 ms, through both ztunnels over
// HBONE) runs for more than five lifetimes with a controller restart in the middle, and no
// request fails. The pods' HBONE servers, the HBONE client pool, the config streams (which must
// reconnect after the restart with their renewed node certificates), the CA clients and the
// flows API all have to pick up the renewed certificates for that to hold.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { CertificateClient, spiffeId } from '../../src/identity/index.ts';
import { SERVER_NAME, startMesh, waitFor } from '../helpers/mesh.ts';
import { HTTP_LOOP, HTTP_OK_SERVER, loopResults } from '../helpers/scripts.ts';
import { requireRoot } from '../helpers/topology.ts';

const run = promisify(execFile);
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const NODE = process.execPath;
const TTL_MS = 6000;

interface CertRow {
  identity: string;
  serial?: string;
  notAfter?: string;
}

test('certificates-rotate-where-used: 5+ lifetimes of cross-node traffic with a controller restart, no request failed', async (t) => {
  if (!(await requireRoot(t))) return;
  const mesh = await startMesh(t, { ztunnel: true, workloadCertTtlMs: TTL_MS });
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  const mk = (name: string, node: string, command: string[]) =>
    mesh.core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name }, spec: { nodeName: node, containers: [{ name: 'main', image: 'local', command }] } } as k8s.V1Pod });
  await mk('server', 'node1', [NODE, '-e', HTTP_OK_SERVER]);
  const server = await waitFor('server running', async () => {
    const p = await mesh.core.readNamespacedPod({ name: 'server', namespace: 'shop' });
    return p.status?.podIP && p.status.phase === 'Running' ? p : undefined;
  });
  await mk('client', 'node2', [NODE, '-e', HTTP_LOOP, server.status!.podIP!]);
  const lines = () => loopResults(`${mesh.stateDir}/logs/shop_client_main.log`, (f) => readFileSync(f, 'utf8'));
  const certs = async (node: string): Promise<CertRow[]> => {
    const { stdout } = await run(MESHCTL, ['ztunnel-config', 'certificates', '--node', node, '-o', 'json', '--state-dir', mesh.stateDir], { timeout: 30_000 });
    return JSON.parse(stdout) as CertRow[];
  };
  const serialOf = async (node: string, sa: string) => (await certs(node)).find((c) => c.identity.endsWith(`/sa/${sa}`))?.serial;

  await waitFor('the first successful request', () => (lines().some(([, r]) => r === 'ok') ? true : undefined), 20_000);
  const start = Date.now();
  const firstServer = await serialOf('node1', 'default');
  t.truthy(firstServer, 'ztunnel-config shows the server pod\'s certificate');

  // Half-way through, the controller (and with it the CA and the config stream) restarts.
  await new Promise((r) => setTimeout(r, 2.5 * TTL_MS));
  const restartAt = Date.now();
  await mesh.restartController();
  t.log(`controller restarted in ${Date.now() - restartAt} ms`);
  await new Promise((r) => setTimeout(r, Math.max(0, start + 5.5 * TTL_MS - Date.now())));
  const end = Date.now();

  const window = lines().filter(([ts]) => ts >= start && ts <= end);
  const failed = window.filter(([, r]) => r !== 'ok');
  t.log(`${window.length} requests over ${((end - start) / TTL_MS).toFixed(1)} certificate lifetimes (${TTL_MS} ms), ${failed.length} failed`);
  t.true(window.length > (end - start) / 200, `the client kept going: ${window.length} requests`);
  t.deepEqual(failed, [], 'no request failed across renewals and the controller restart');

  // The serial changed where it is shown, for the workload and for the node itself.
  const nowServer = await serialOf('node1', 'default');
  t.truthy(nowServer);
  t.not(nowServer, firstServer, 'the server pod\'s certificate was renewed');
  const rows = await certs('node1');
  const expiry = Math.max(...rows.map((c) => Date.parse(c.notAfter ?? '')));
  t.true(expiry - Date.now() <= TTL_MS + 1000, `certificates are short-lived as configured (latest notAfter in ${expiry - Date.now()} ms)`);
  // The config streams came back after the restart with renewed node certificates.
  const ztunnelLog = mesh.logs.get('ztunnel-node1') ?? '';
  t.true((ztunnelLog.match(/serving a renewed certificate/g) ?? []).length >= 3, 'the pod\'s HBONE server took renewed certificates');
  await waitFor('both nodes in sync with the new controller', () => {
    const peers = mesh.controller.relayPeers();
    return peers.length === 2 && peers.every((p) => p.configClients.length === 2 && p.configClients.every((c) => c.inSync)) ? true : undefined;
  }, 20_000);
  // The CA caps what a client asks for at what the operator configured.
  const token = await mesh.tokenFor('node1');
  const greedy = new CertificateClient({ address: `127.0.0.1:${mesh.controller.ca.port}`, caRoots: mesh.root, serverName: SERVER_NAME, token: () => token, validitySeconds: 3600 });
  const long = await greedy.fetch(spiffeId('cluster.local', 'mesh-system', 'mesh-node'));
  greedy.close();
  t.true(long.leaf.notAfter.getTime() - Date.now() <= TTL_MS + 1000, `asked for 1 h, got ${long.leaf.notAfter.getTime() - Date.now()} ms`);
  // And the flows API still answers the relay (its certificate was renewed too).
  const { stdout } = await run(MESHCTL, ['flows', '--last', '5', '-o', 'json', '--state-dir', mesh.stateDir], { timeout: 30_000 });
  t.false(/UNAVAILABLE/.test(stdout), 'both nodes\' flows reachable');
});

// The README's main command (`npm run demo`, as root): the mesh shown end to end on this host.
// It starts the local cluster with the mesh (`meshctl dev up`), deploys a small shop — frontend,
// catalog, orders and payments calling each other over HTTP on both nodes, and a load generator
// — with the real kubectl, and shows with `meshctl flows` (and tshark on the wire between the
// nodes) the traffic in plaintext; then labels the namespace ambient and shows the same flows
// with SPIFFE identities over mTLS; then applies a DENY AuthorizationPolicy and shows the denied
// flows. The cluster stays up for you to explore; `meshctl dev down` removes it.
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_STATE_DIR } from '../src/cli/endpoints.ts';
import { waitFor } from '../src/local/mesh.ts';
import { APPS, DENY, manifests, MARKER, NS, wire as capture } from './shop.ts';

const run = promisify(execFile);
const MESHCTL = fileURLToPath(new URL('../bin/meshctl', import.meta.url));
const STATE_DIR = DEFAULT_STATE_DIR;
const PREFIX = process.env.MESH_DEV_PREFIX || 'mesh';
const wire = (seconds: number) => capture(PREFIX, STATE_DIR, seconds);

const step = (s: string) => console.log(`\n▸ ${s}`);
const say = (s: string) => console.log(`  ${s}`);
const indent = (s: string) => s.trimEnd().split('\n').map((l) => `    ${l}`).join('\n');

let kubeconfig = '';

async function kubectl(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('kubectl', args, { env: { ...process.env, KUBECONFIG: kubeconfig }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`kubectl ${args.join(' ')}: ${err.trim()}`))));
    p.stdin.end(input ?? '');
  });
}

async function meshctl(...args: string[]): Promise<string> {
  return (await run(MESHCTL, args, { env: process.env, maxBuffer: 64 << 20 })).stdout;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the demo creates network namespaces and loads eBPF programs: run it as root (sudo npm run demo)');
  const started = Date.now();

  step('meshctl dev up — a two-node local cluster with the mesh: controller, and on each node the agent (eBPF) and ztunnel');
  await new Promise<void>((resolve, reject) => {
    const p = spawn(MESHCTL, ['dev', 'up'], { stdio: 'inherit' });
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`meshctl dev up failed (exit ${code})`))));
  });
  const status = JSON.parse(readFileSync(`${STATE_DIR}/status.json`, 'utf8')) as { kubeconfig: string; mesh?: boolean };
  if (!status.mesh) throw new Error(`the local cluster in ${STATE_DIR} runs without the mesh: \`meshctl dev down\` it first`);
  kubeconfig = status.kubeconfig;

  step('deploying the shop with kubectl: frontend → catalog, frontend → orders → payments, and a load generator calling the frontend');
  if ((await kubectl(['get', 'namespace', NS, '--ignore-not-found', '-o', 'name'])).trim()) {
    say(`namespace ${NS} is left from an earlier run: taking it out of the mesh and removing its policy first`);
    await kubectl(['label', 'namespace', NS, 'mesh.io/dataplane-mode-']);
    await kubectl(['delete', 'authorizationpolicies.security.mesh.io', '-n', NS, '--all']);
  }
  console.log(indent(await kubectl(['apply', '-f', '-'], manifests())));
  await waitFor('every pod running', async () => {
    const out = await kubectl(['get', 'pods', '-n', NS, '-o', 'jsonpath={range .items[*]}{.status.phase}{"\\n"}{end}']);
    const phases = out.trim().split('\n');
    return phases.length === Object.keys(APPS).length && phases.every((p) => p === 'Running') ? true : undefined;
  }, 60_000);
  console.log(indent(await kubectl(['get', 'pods', '-n', NS, '-o', 'wide'])));
  const orders = await waitFor('the first order to go through', async () => {
    const log = await meshctl('dev', 'logs', '-n', NS, 'loadgen');
    return log.includes('paid') ? log.trim().split('\n').at(-1) : undefined;
  }, 60_000);
  say(`loadgen: ${orders}`);

  step('meshctl flows -n shop — outside the mesh, the kernel sees each connection; no identities, no encryption');
  await sleep(1500);
  console.log(indent(await meshctl('flows', '-n', NS, '--last', '8', '--print-node-name')));
  const plain = await wire(3);
  say(`tshark between the nodes: the card number "${MARKER}" is ${plain.includes(MARKER) ? 'VISIBLE in plaintext' : 'not seen'} (${plain.length} bytes captured)`);

  step(`kubectl label namespace ${NS} mesh.io/dataplane-mode=ambient`);
  const labelled = Date.now();
  console.log(indent(await kubectl(['label', 'namespace', NS, 'mesh.io/dataplane-mode=ambient'])));
  await waitFor('the shop to talk over mTLS', async () => {
    const out = await meshctl('flows', '-n', NS, '--protocol', 'mtls', '--since', `${Math.ceil((Date.now() - labelled) / 1000) + 1}s`, '--to-pod', `${NS}/payments`, '-o', 'json');
    return out.trim() ? true : undefined;
  }, 60_000);
  say(`every pod captured by the eBPF datapath and served by its node's ztunnel in ${Date.now() - labelled} ms, without a restart`);
  await sleep(1500);

  step('meshctl flows -n shop — the same calls, now HBONE with both SPIFFE identities (egress from one ztunnel, ingress at the other)');
  console.log(indent(await meshctl('flows', '-n', NS, '--protocol', 'mtls', '--last', '8', '--print-node-name')));
  const meshed = await wire(2);
  say(`tshark between the nodes: the card number is ${meshed.includes(MARKER) ? 'STILL VISIBLE — something is wrong' : 'gone: it crosses inside mutual TLS to port 15008'} (${meshed.length} bytes captured)`);

  step('applying an AuthorizationPolicy: the catalog DENYs the frontend\'s identity (cluster.local/ns/shop/sa/frontend)');
  const denied = Date.now();
  console.log(indent(await kubectl(['apply', '-f', '-'], DENY)));
  await waitFor('denied flows', async () => {
    const out = await meshctl('flows', '-n', NS, '--verdict', 'DROPPED', '--since', `${Math.ceil((Date.now() - denied) / 1000) + 1}s`, '-o', 'json');
    return out.trim() ? true : undefined;
  }, 60_000);
  await sleep(1500);
  console.log(indent(await meshctl('flows', '-n', NS, '--verdict', 'DROPPED', '--last', '4', '--print-node-name')));
  const after = (await meshctl('dev', 'logs', '-n', NS, 'loadgen')).trim().split('\n').at(-1);
  say(`loadgen: ${after}`);

  step('meshctl ztunnel-config workloads -n shop — what the ztunnels know');
  console.log(indent(await meshctl('ztunnel-config', 'workloads', '-n', NS)));
  step('meshctl status');
  console.log(indent(await meshctl('status')));

  step(`done in ${((Date.now() - started) / 1000).toFixed(0)} s — the cluster stays up; try:`);
  say(`export KUBECONFIG=${kubeconfig}`);
  say(`kubectl get pods -n ${NS} -o wide`);
  say(`meshctl flows -n ${NS} --follow                  # live, Ctrl-C to stop`);
  say(`meshctl flows --to-pod ${NS}/catalog --verdict DROPPED -o table`);
  say(`kubectl delete authorizationpolicy -n ${NS} catalog-closed-to-frontend`);
  say('meshctl ztunnel-config all --node node1');
  say('meshctl dev down                                # removes everything the demo made');
}

main().catch((e: Error) => {
  console.error(`\ndemo failed: ${e.message}`);
  console.error('`meshctl dev status` and the logs in the state directory (daemon.log, logs/mesh/) say more; `meshctl dev down` cleans up.');
  process.exit(1);
});

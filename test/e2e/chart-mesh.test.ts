// The mesh installed with Helm and running from its images, as on a real cluster: `make images`,
// then `helm install mesh daemonset/chart -n mesh-system --create-namespace` onto a plain
// two-node local cluster (what `meshctl dev up --no-mesh` starts). The controller, the node pods
// (agent + ztunnel, each in its own pod netns) and the CNI installers run from the images with
// podman/runc; the node pods' host paths are each node's own (src/local/runtime/noderoot.ts).
// Then the demo's checks (demo/shop.ts) against it: the label flip enrols running pods, flows
// carry both SPIFFE identities, nothing readable crosses between the nodes, a meshed server sees
// its caller's pod IP (the agent sets the pods' sysctls through the chart's /host/proc/sys/net),
// a DENY policy is
// enforced, `meshctl status` (through a port-forward, no local state) is all green; `helm upgrade`
// to a new node image tag rolls the node pods while a client opens 50 connections/s (none may
// fail); and `helm uninstall` leaves the pods working, unenrolled, with nothing of the mesh
// left (no object the controller made either). Then the chart again with two controller replicas:
// one leader, a policy enforced, and their Leases gone with the uninstall. The tests share one
// cluster and run in order.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import test, { type ExecutionContext } from 'ava';
import { APPS, DENY, manifests, MARKER, NS, wire } from '../../demo/shop.ts';
import { IMAGES } from '../../src/images/build.ts';
import { LocalCluster } from '../../src/local/runtime/cluster.ts';
import { listContainers } from '../../src/local/runtime/oci.ts';
import { CHART, helm } from '../helpers/helm.ts';
import { assertNothingLeaked, requireRoot, uniquePrefix } from '../helpers/topology.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MESHCTL = join(ROOT, 'bin/meshctl');
const BUILD = join(ROOT, 'src/images/build.ts');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeout?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = execFile(cmd, args, { env: { ...process.env, ...opts.env }, timeout: opts.timeout ?? 60_000, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    p.stdin?.end(opts.input ?? '');
  });
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(fn()).catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const s = {
  prefix: '',
  stateDir: '',
  cluster: undefined as LocalCluster | undefined,
  core: undefined as unknown as k8s.CoreV1Api,
  env: {} as Record<string, string>,
  installed: false,
  tag: '',
  extraTags: [] as string[],
  figures: [] as string[],
};

test.after.always(async () => {
  if (s.installed) await helm(['uninstall', 'mesh', '-n', 'mesh-system', '--wait', '--timeout', '60s'], s.env).catch(() => undefined);
  await s.cluster?.stop().catch((e: Error) => console.error(`stopping the cluster: ${e.message}`));
  if (s.stateDir) rmSync(s.stateDir, { recursive: true, force: true });
  // This run's tag only (the images stay under their other tags).
  for (const ref of [...(s.tag ? IMAGES.map((i) => `${i.repository}:${s.tag}`) : []), ...s.extraTags]) await sh('podman', ['untag', ref, ref]);
  if (s.prefix) {
    const left = await assertNothingLeaked(s.prefix);
    if (left.length) throw new Error(`left on the host: ${left.join('; ')}`);
  }
});

const kubectl = (...args: string[]) => sh('kubectl', args, { env: s.env });
const kubectlIn = (input: string, ...args: string[]) => sh('kubectl', args, { env: s.env, input });
const meshctl = (...args: string[]) => sh(MESHCTL, args, { env: s.env, timeout: 30_000 });
const loadgenLog = () => {
  try {
    return readFileSync(join(s.stateDir, 'logs', `${NS}_loadgen_main.log`), 'utf8');
  } catch {
    return '';
  }
};
const meshPods = async () => (await s.core.listNamespacedPod({ namespace: 'mesh-system' })).items;
const ready = (p: k8s.V1Pod) => Boolean(p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));

/** Every mesh container's log, for a failing test's report. */
function meshLogs(): string {
  const dir = join(s.stateDir, 'logs');
  if (!existsSync(dir)) return '';
  return readdirSync(dir)
    .filter((f) => f.startsWith('mesh-system_'))
    .map((f) => `== ${f}\n${readFileSync(join(dir, f), 'utf8').slice(-2000)}`)
    .join('\n');
}

async function ok(t: ExecutionContext): Promise<boolean> {
  if (!(await requireRoot(t))) return false;
  if (!s.installed) {
    t.fail('the mesh was not installed (see the first test)');
    return false;
  }
  return true;
}

test.serial('make images, then helm install: the mesh runs from its images on both nodes', async (t) => {
  if (!(await requireRoot(t))) return;
  s.prefix = uniquePrefix();
  // Built once, under the lock every image builder on this host shares, and tagged for this run
  // too: another checkout's `make images` moves `latest`, not this tag.
  s.tag = `e2e-${s.prefix}`;
  const t0 = Date.now();
  const build = await sh('flock', ['/tmp/mesh-images.lock', process.execPath, BUILD, '--tag', s.tag], { timeout: 300_000 });
  t.is(build.code, 0, build.stderr || build.stdout);
  s.figures.push(`make images: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const spec of IMAGES) {
    const size = (await sh('podman', ['images', '--format', '{{.Size}}', `${spec.repository}:${s.tag}`])).stdout.trim().split('\n')[0];
    s.figures.push(`${spec.repository} ${size}`);
  }

  s.stateDir = mkdtempSync(`/tmp/mesh-${s.prefix}-state-`);
  const cluster = await LocalCluster.start({ stateDir: s.stateDir, nodes: 2, prefix: s.prefix });
  s.cluster = cluster;
  s.core = cluster.kc.makeApiClient(k8s.CoreV1Api);
  // meshctl finds the mesh through this kubeconfig only: its local-cluster state dir is empty.
  const meshctlState = join(s.stateDir, 'meshctl');
  mkdirSync(meshctlState);
  s.env = {
    KUBECONFIG: cluster.kubeconfigPath,
    MESH_DEV_STATE_DIR: meshctlState,
    HOME: s.stateDir,
    HELM_CACHE_HOME: `${s.stateDir}/helm/cache`,
    HELM_CONFIG_HOME: `${s.stateDir}/helm/config`,
    HELM_DATA_HOME: `${s.stateDir}/helm/data`,
  };

  const installed = Date.now();
  const images = ['controller', 'node', 'waypoint'].flatMap((c) => ['--set', `${c}.image.tag=${s.tag}`]);
  const install = await helm(['install', 'mesh', CHART, '-n', 'mesh-system', '--create-namespace', ...images], s.env);
  t.is(install.code, 0, install.stderr);
  s.installed = install.code === 0;
  const readyAt = new Map<string, number>();
  try {
    await waitFor('every mesh pod ready (a controller, a node pod and a CNI installer per node)', async () => {
      const pods = await meshPods();
      for (const p of pods) if (ready(p) && !readyAt.has(p.metadata!.name!)) readyAt.set(p.metadata!.name!, Date.now());
      return pods.length === 5 && pods.every(ready) ? true : undefined;
    }, 120_000);
  } catch (e) {
    t.log(meshLogs());
    for (const p of await meshPods()) t.log(`${p.metadata!.name} on ${p.spec!.nodeName}: ${p.status?.phase} ${JSON.stringify(p.status?.containerStatuses?.map((c) => [c.name, c.ready, c.state]))}`);
    const events = (await s.core.listNamespacedEvent({ namespace: 'mesh-system' })).items;
    t.log(events.filter((ev) => ev.type === 'Warning').map((ev) => `${ev.involvedObject.name}: ${ev.reason} ${ev.message}`).join('\n'));
    throw e;
  }
  s.figures.push(`helm install → every mesh pod ready: ${((Date.now() - installed) / 1000).toFixed(1)} s`);
  for (const [name, at] of [...readyAt].sort((a, b) => a[1] - b[1])) s.figures.push(`  ${name} ready at +${((at - installed) / 1000).toFixed(1)} s`);
  const pods = await meshPods();
  for (const p of pods) {
    for (const c of p.status!.containerStatuses!) t.regex(c.containerID ?? '', /^podman:\/\//, `${p.metadata!.name}/${c.name} runs from its image`);
  }
  const nodePods = pods.filter((p) => p.metadata!.labels!['app.kubernetes.io/component'] === 'node');
  t.deepEqual(nodePods.map((p) => p.spec!.nodeName).sort(), ['node1', 'node2']);
  // Each node has its own pins, on its own bpffs.
  for (const node of ['node1', 'node2']) t.true(existsSync(join(s.stateDir, 'nodes', node, 'root/sys/fs/bpf/mesh/maps/mesh_pods')), `${node}'s datapath is pinned on its bpffs`);
  t.log(s.figures.join('\n'));
});

test.serial('the shop runs in plaintext; the label flip enrols the running pods, and flows carry both SPIFFE identities', async (t) => {
  if (!(await ok(t))) return;
  const applied = await kubectlIn(manifests(), 'apply', '-f', '-');
  t.is(applied.code, 0, applied.stderr);
  // A server that answers with its caller's address, running before the label flip (enrolled
  // as a running pod); a later test calls it from another node.
  await s.core.createNamespacedPod({
    namespace: NS,
    body: { metadata: { name: 'whoami', labels: { app: 'whoami' } }, spec: { nodeName: 'node2', containers: [{ name: 'main', image: 'local', command: [process.execPath, '-e', WHOAMI] }] } },
  });
  await waitFor('the first order paid', () => (loadgenLog().includes('paid') ? true : undefined), 60_000);
  // Outside the mesh the card number crosses between the nodes readable (the capture works).
  const plain = await wire(s.prefix, s.stateDir, 3);
  t.true(plain.includes(MARKER), `plaintext capture (${plain.length} bytes) shows the marker`);

  const uids = new Map((await s.core.listNamespacedPod({ namespace: NS })).items.map((p) => [p.metadata!.name!, p.metadata!.uid!]));
  const labelled = Date.now();
  const label = await kubectl('label', 'namespace', NS, 'mesh.io/dataplane-mode=ambient');
  t.is(label.code, 0, label.stderr);
  const flows = await waitFor('HBONE mTLS flows to payments', async () => {
    const r = await meshctl('flows', '-n', NS, '--protocol', 'mtls', '--to-pod', `${NS}/payments`, '--since', `${Math.ceil((Date.now() - labelled) / 1000) + 1}s`, '--print-node-name');
    return r.code === 0 && r.stdout.includes('ingress FORWARDED') && r.stdout.includes('egress FORWARDED') ? r.stdout : undefined;
  }, 60_000, 1000);
  s.figures.push(`label flip → mTLS flows from both ends: ${((Date.now() - labelled) / 1000).toFixed(1)} s`);
  t.log(flows);
  t.regex(flows, /shop\/orders:\d+ \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/orders\) -> shop\/payments:8080 \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/payments\) egress FORWARDED \(HBONE mTLS/);
  t.regex(flows, /-> shop\/payments:8080 \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/payments\) ingress FORWARDED \(HBONE mTLS/);
  // Not restarted: the same pods.
  const after = (await s.core.listNamespacedPod({ namespace: NS })).items.filter((p) => p.metadata!.name! in APPS);
  t.is(after.length, Object.keys(APPS).length);
  for (const p of after) t.is(p.metadata!.uid, uids.get(p.metadata!.name!), `${p.metadata!.name} was not recreated`);
});

test.serial('nothing readable crosses between the nodes once the shop is in the mesh', async (t) => {
  if (!(await ok(t))) return;
  const since = loadgenLog().length;
  const meshed = await wire(s.prefix, s.stateDir, 3);
  t.true(meshed.length > 0, 'the capture saw traffic');
  t.false(meshed.includes(MARKER), 'the card number is not on the wire');
  t.regex(loadgenLog().slice(since), /paid/, 'orders still go through');
});

test.serial("a meshed server sees its caller's own pod IP (not 127.0.0.6), across nodes", async (t) => {
  if (!(await ok(t))) return;
  const server = await s.core.readNamespacedPod({ namespace: NS, name: 'whoami' });
  const serverIp = server.status?.podIP;
  t.truthy(serverIp, 'the whoami pod has an IP');
  const since = Date.now();
  await s.core.createNamespacedPod({
    namespace: NS,
    body: { metadata: { name: 'whoami-client' }, spec: { nodeName: 'node1', restartPolicy: 'Never', containers: [{ name: 'main', image: 'local', command: [process.execPath, '-e', WHOAMI_CLIENT, `http://${serverIp}:8080/`] }] } },
  });
  const log = join(s.stateDir, 'logs', `${NS}_whoami-client_main.log`);
  const seen = await waitFor<string>('the whoami answer', () => {
    const line = existsSync(log) ? readFileSync(log, 'utf8').split('\n').find((l) => l.startsWith('SEEN ')) : undefined;
    return line?.slice('SEEN '.length).trim();
  }, 30_000);
  const client = await s.core.readNamespacedPod({ namespace: NS, name: 'whoami-client' });
  s.figures.push(`whoami: the server saw ${seen}; the client pod's IP is ${client.status?.podIP}`);
  t.is(seen.replace(/^::ffff:/, ''), client.status?.podIP ?? '(none)', 'the server saw the client pod IP');
  // And it went through the mesh: HBONE into the server's node.
  const flows = await waitFor('the whoami flow', async () => {
    const f = await meshctl('flows', '-n', NS, '--to-pod', `${NS}/whoami`, '--protocol', 'mtls', '--since', `${Math.ceil((Date.now() - since) / 1000) + 1}s`);
    return f.code === 0 && f.stdout.includes('ingress FORWARDED') ? f.stdout : undefined;
  }, 20_000, 1000);
  t.regex(flows, /shop\/whoami-client:\d+ \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/default\) -> shop\/whoami:8080 .* ingress FORWARDED \(HBONE mTLS/);
  // No agent fell back to 127.0.0.6 for any pod.
  const agentLogs = readdirSync(join(s.stateDir, 'logs')).filter((f) => f.startsWith('mesh-system_mesh-node-') && f.endsWith('_agent.log'));
  for (const f of agentLogs) t.notRegex(readFileSync(join(s.stateDir, 'logs', f), 'utf8'), /no delivery routing/, `${f}: an enrolled pod got no delivery routing`);
});

test.serial('a DENY AuthorizationPolicy is enforced: the catalog refuses the frontend', async (t) => {
  if (!(await ok(t))) return;
  const applied = Date.now();
  const r = await kubectlIn(DENY, 'apply', '-f', '-');
  t.is(r.code, 0, r.stderr);
  const denied = await waitFor('denied flows', async () => {
    const f = await meshctl('flows', '-n', NS, '--verdict', 'DROPPED', '--since', `${Math.ceil((Date.now() - applied) / 1000) + 1}s`);
    return f.code === 0 && f.stdout.trim() ? f.stdout : undefined;
  }, 60_000, 1000);
  t.log(denied);
  t.regex(denied, /shop\/frontend:\d+ \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/frontend\) -> shop\/catalog:8080 \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/catalog\) ingress DROPPED \(HBONE mTLS, policy denied/);
  const since = loadgenLog().length;
  const line = await waitFor('a frontend answer after the policy', () => loadgenLog().slice(since).split('\n').find((l) => l.includes('catalog:')), 20_000);
  t.notRegex(line, /espresso, latte/, `the frontend got no catalog: ${line}`);
  t.regex(line, /paid/, 'orders (not denied) still go through');
});

test.serial('meshctl status is all green through a port-forward to the controller, with no local state', async (t) => {
  if (!(await ok(t))) return;
  const r = await meshctl('status');
  t.log(r.stdout + r.stderr);
  t.is(r.code, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /Controller: +port-forward to mesh-system\/mesh-controller-/);
  t.regex(r.stdout, /Connected nodes: 2\/2/);
  t.regex(r.stdout, /node1 +CONNECTED +\d+ +CONNECTED +SYNCED/);
  t.regex(r.stdout, /node2 +CONNECTED +\d+ +CONNECTED +SYNCED/);
  t.regex(r.stdout, /✔ every node has its agent and ztunnel connected and its config in sync/);
  // The same check, the installed way.
  const check = await meshctl('check', '--post-install');
  t.is(check.code, 0, check.stdout + check.stderr);
  // The ztunnels too, through a port-forward to each node pod's admin port (127.0.0.1:15000).
  const zc = await meshctl('ztunnel-config', 'workloads', '-n', NS, '-o', 'json');
  t.is(zc.code, 0, zc.stderr);
  const workloads = JSON.parse(zc.stdout) as { name: string; tunnelProtocol: string }[];
  for (const app of Object.keys(APPS)) t.true(workloads.some((w) => w.name.startsWith(app) && w.tunnelProtocol === 'HBONE'), `${app} is in the ztunnels' config: ${zc.stdout.slice(0, 300)}`);
  const one = await meshctl('ztunnel-config', 'certificates', '--node', 'node2', '-o', 'json');
  t.is(one.code, 0, one.stderr);
  t.regex(one.stdout, /spiffe:\/\/cluster\.local\/ns\/shop\/sa\//);
  // analyze reads the same: the certificates it checks (no "CertificatesNotRead").
  const an = await meshctl('analyze', '-o', 'json');
  t.notRegex(an.stdout, /MESH0703/, an.stdout + an.stderr);
});

// Answers every request with the caller's address as this pod sees it.
const WHOAMI = `require('node:http').createServer((q, s) => s.end(q.socket.remoteAddress)).listen(8080);`;
// Calls the URL until it answers (the server's node may still be setting up), prints `SEEN <body>`.
const WHOAMI_CLIENT = `const http = require('node:http');
const url = process.argv[1]; let tries = 0;
const once = () => http.get(url, { agent: false, timeout: 3000 }, (s) => { let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => console.log('SEEN ' + b)); })
  .on('error', (e) => { console.log('ERR ' + e.message); if (++tries < 20) setTimeout(once, 500); });
once();`;

// A new connection every 20 ms (no keep-alive) for `seconds`, counting answers and failures; the
// last line is `RESULT {json}`. Runs in a pod of the shop, so both ztunnels carry it.
const CONNECTION_LOOP = `const http = require('node:http');
const [url, seconds] = [process.argv[1], Number(process.argv[2])];
let sent = 0, ok = 0, failed = 0; const errors = {}; const t0 = Date.now();
const fail = (k) => { failed++; errors[k] = (errors[k] || 0) + 1; console.log('FAIL ' + new Date().toISOString() + ' ' + k); };
const timer = setInterval(() => {
  if (Date.now() - t0 > seconds * 1000) { clearInterval(timer); setTimeout(() => console.log('RESULT ' + JSON.stringify({ sent, ok, failed, errors })), 4000); return; }
  sent++;
  const r = http.get(url, { agent: false, timeout: 3000 }, (s) => { s.resume(); s.on('end', () => (s.statusCode === 200 ? ok++ : fail('http ' + s.statusCode))); });
  r.on('timeout', () => r.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
  r.on('error', (e) => fail(e.code || e.message));
}, 20);`;

// Old and new node pods overlap on each node (maxSurge 1): the old agent leaves the sockets the new
// one bound in the shared /var/run/mesh (src/agent/sockets.ts), and ztunnel hands its in-pod
// listeners over. The client pod itself is new: the node's CNI chain (the chart's plugin) enrols
// it at sandbox creation and waits for ztunnel, so its first connection is served too. Not one
// connection may fail, before or during the rollout.
test.serial('helm upgrade to a new node image tag rolls the node DaemonSet (maxSurge 1) while a client opens 50 connections/s', async (t) => {
  if (!(await ok(t))) return;
  const newTag = `${s.tag}-v2`;
  const tagged = await sh('podman', ['tag', `localhost/mesh-node:${s.tag}`, `localhost/mesh-node:${newTag}`]);
  t.is(tagged.code, 0, tagged.stderr);
  s.extraTags.push(`localhost/mesh-node:${newTag}`);
  const before = (await meshPods()).filter((p) => p.metadata!.labels!['app.kubernetes.io/component'] === 'node').map((p) => p.metadata!.name!);
  // Long enough for both nodes to roll on a loaded 2-core host (about 20 s each measured there).
  const seconds = 60;
  await s.core.createNamespacedPod({
    namespace: NS,
    body: { metadata: { name: 'conn-loop' }, spec: { nodeName: 'node1', restartPolicy: 'Never', containers: [{ name: 'main', image: 'local', command: [process.execPath, '-e', CONNECTION_LOOP, 'http://catalog/', String(seconds)] }] } },
  });
  const log = join(s.stateDir, 'logs', `${NS}_conn-loop_main.log`);
  await new Promise((r) => setTimeout(r, 3000));
  const t0 = Date.now();
  const up = await helm(['upgrade', 'mesh', CHART, '-n', 'mesh-system', '--reuse-values', '--set', `node.image.tag=${newTag}`], s.env);
  t.is(up.code, 0, up.stderr);
  const apps = s.cluster!.kc.makeApiClient(k8s.AppsV1Api);
  const rollout = await waitFor('the node DaemonSet rolled out', async () => {
    const ds = await apps.readNamespacedDaemonSet({ namespace: 'mesh-system', name: 'mesh-node' });
    const pods = (await meshPods()).filter((p) => p.metadata!.labels!['app.kubernetes.io/component'] === 'node');
    const st = ds.status;
    return st?.updatedNumberScheduled === 2 && st.numberAvailable === 2 && pods.length === 2 && pods.every((p) => ready(p) && p.spec!.containers[0]!.image!.endsWith(`:${newTag}`)) ? Date.now() - t0 : undefined;
  }, (seconds - 5) * 1000, 500).catch(async (e: Error) => {
    for (const p of await meshPods()) t.log(`${p.metadata!.name} on ${p.spec!.nodeName}: ${p.status?.phase} ${JSON.stringify(p.status?.containerStatuses?.map((c) => [c.name, c.ready, c.restartCount, c.state]))}`);
    return e;
  });
  s.figures.push(rollout instanceof Error ? `helm upgrade (node image tag): the rollout did not finish within ${seconds - 5} s` : `helm upgrade (node image tag) → both node pods replaced and ready: ${(rollout / 1000).toFixed(1)} s`);
  // What the client saw, whether or not the rollout finished.
  const line = await waitFor('the connection loop to finish', () => readFileSync(log, 'utf8').split('\n').find((l) => l.startsWith('RESULT ')), (seconds + 30) * 1000, 500);
  const r = JSON.parse(line.slice('RESULT '.length)) as { sent: number; ok: number; failed: number; errors: Record<string, number> };
  const fails = readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('FAIL '));
  s.figures.push(`connections during the upgrade: ${r.sent} opened (${(r.sent / seconds).toFixed(1)}/s), ${r.ok} answered, ${r.failed} failed ${JSON.stringify(r.errors)}`);
  const early = fails.filter((l) => Date.parse(l.split(' ')[1]!) < t0).length;
  if (fails.length) s.figures.push(`  failures from ${fails[0]!.split(' ')[1]} to ${fails.at(-1)!.split(' ')[1]}; ${early} of them before the upgrade started (${new Date(t0).toISOString()})`);
  // For a failure's report: what the node pods logged in the 5 s before each one — at warn or
  // above, a connection's error, and their lifecycle (handover, drain, pods served), not access lines.
  const nearFailures = fails.slice(0, 5).flatMap((f) => {
    const at = Date.parse(f.split(' ')[1]!);
    return readdirSync(join(s.stateDir, 'logs'))
      .filter((name) => name.startsWith('mesh-system_mesh-node-'))
      .flatMap((name) => readFileSync(join(s.stateDir, 'logs', name), 'utf8').split('\n').filter((l) => {
        const m = /"level":(\d+),"time":"([^"]+)"/.exec(l);
        return m && (Number(m[1]) >= 40 || l.includes('"error":"') || !l.includes('"component":"access"')) && Math.abs(Date.parse(m[2]!) - (at - 2500)) <= 2500;
      }).map((l) => `${name}: ${l.slice(0, 400)}`));
  });
  if (nearFailures.length) t.log(nearFailures.slice(0, 80).join('\n'));
  if (rollout instanceof Error) {
    t.log(meshLogs());
    t.log(s.figures.slice(-3).join('\n'));
    throw rollout;
  }
  t.log(s.figures.slice(-3).join('\n'));
  t.true(r.sent >= seconds * 40, `the client kept its rate (${r.sent} in ${seconds} s)`);
  t.is(r.ok + r.failed, r.sent, 'every connection was answered or failed');
  // Not one. (The one TIMEOUT every earlier run had was the client's name lookup: each service
  // change truncated every pod's /etc/hosts, and a lookup in that window fell through to DNS.)
  t.is(early, 0, `no connection failed before the upgrade: ${fails.slice(0, 10).join('; ')}`);
  t.is(r.failed, 0, `no connection failed: ${JSON.stringify(r.errors)}; ${fails.slice(0, 10).join('; ')}`);
  // The old agents stopped as for a restart — the datapath stayed for the new ones.
  for (const name of before) {
    const f = join(s.stateDir, 'logs', `mesh-system_${name}_agent.log`);
    t.regex(readFileSync(f, 'utf8'), /stopping; capture stays in place for the next agent/, `${name}'s agent took the upgrade for a restart`);
  }
  // And the mesh is whole again.
  const st = await meshctl('status');
  t.is(st.code, 0, st.stdout + st.stderr);
  await s.core.deleteNamespacedPod({ namespace: NS, name: 'conn-loop', gracePeriodSeconds: 0 }).catch(() => undefined);
});

test.serial('helm uninstall: the pods keep working, unenrolled, and nothing of the mesh is left', async (t) => {
  if (!(await ok(t))) return;
  const policy = await kubectl('delete', 'authorizationpolicies.security.mesh.io', '-n', NS, '--all');
  t.is(policy.code, 0, policy.stderr);
  const nodePods = (await meshPods()).filter((p) => p.metadata!.labels!['app.kubernetes.io/component'] === 'node').map((p) => p.metadata!.name!);
  const t0 = Date.now();
  const r = await helm(['uninstall', 'mesh', '-n', 'mesh-system', '--wait', '--timeout', '90s'], s.env);
  t.is(r.code, 0, r.stderr);
  s.installed = false;
  await waitFor('the mesh pods gone', async () => ((await meshPods()).length === 0 ? true : undefined), 90_000).catch(async (e: Error) => {
    for (const p of await meshPods()) t.log(`left: ${p.metadata!.name} on ${p.spec!.nodeName}: ${p.status?.phase}, deleting since ${p.metadata!.deletionTimestamp?.toISOString() ?? '-'} ${JSON.stringify(p.status?.containerStatuses?.map((c) => [c.name, c.ready, c.state]))}`);
    t.log(meshLogs());
    throw e;
  });
  s.figures.push(`helm uninstall → mesh pods gone: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // The agents' logs say it was an uninstall, not a restart.
  const agentLogs = nodePods.map((name) => `mesh-system_${name}_agent.log`);
  t.is(agentLogs.length, 2);
  for (const f of agentLogs) {
    const log = readFileSync(join(s.stateDir, 'logs', f), 'utf8');
    t.regex(log, /uninstalling: pods unenrolled, removing the datapath/, `${f}:\n${log.slice(-3000)}`);
  }
  // The agents unenrolled every pod and removed their pins; the installers their CNI entries.
  for (const node of ['node1', 'node2']) {
    const root = join(s.stateDir, 'nodes', node, 'root');
    const pins = join(root, 'sys/fs/bpf/mesh');
    t.deepEqual(existsSync(pins) ? readdirSync(pins) : [], [], `${node}: nothing pinned`);
    const confs = existsSync(join(root, 'etc/cni/net.d')) ? readdirSync(join(root, 'etc/cni/net.d')) : [];
    for (const f of confs) t.notRegex(readFileSync(join(root, 'etc/cni/net.d', f), 'utf8'), /mesh-cni/, `${node}: ${f} still chains the mesh plugin`);
  }
  t.deepEqual((await listContainers(s.prefix)).filter((c) => !c.includes(NS)), [], 'no mesh container left');
  // Nor any object the controller made: the trust bundle ConfigMap in every namespace, the CA's
  // root Secret, Leases (owned by the chart's ClusterRole, so the garbage collector removes them).
  // What stays is what Helm keeps by design: the CRDs (and the user's own objects of them).
  const made = await waitFor('the objects the controller made gone', async () => {
    const r = await kubectl('get', 'configmaps,secrets,leases,serviceaccounts,services,deployments', '-A', '-l', 'app.kubernetes.io/managed-by=mesh', '-o', 'name');
    const names = r.stdout.trim();
    return r.code === 0 && !names ? true : undefined;
  }, 30_000, 500).catch(async () => (await kubectl('get', 'configmaps,secrets,leases', '-A', '-o', 'name')).stdout);
  t.is(made, true, `left behind by the controller: ${String(made)}`);
  const bundles = await kubectl('get', 'configmaps', '-A', '--field-selector', 'metadata.name=mesh-ca-root-cert', '-o', 'name');
  t.is(bundles.stdout.trim(), '', 'no mesh-ca-root-cert ConfigMap in any namespace');
  const ca = await kubectl('get', 'secret', 'mesh-ca', '-n', 'mesh-system', '-o', 'name');
  t.not(ca.code, 0, 'the self-signed root Secret mesh-ca is gone');
  const crds = await kubectl('get', 'crds', '-o', 'name');
  t.regex(crds.stdout, /authorizationpolicies\.security\.mesh\.io/, "the CRDs stay (Helm never deletes a chart's crds/)");
  // The shop still works, now in plaintext again (the marker is back on the wire).
  const since = loadgenLog().length;
  const line = await waitFor('an order after the uninstall', () => loadgenLog().slice(since).split('\n').find((l) => l.includes('paid')), 30_000);
  t.regex(line, /catalog: 200 espresso, latte/);
  const plain = await wire(s.prefix, s.stateDir, 3);
  t.true(plain.includes(MARKER), 'the shop talks directly (plaintext) again');
  t.log(s.figures.join('\n'));
});
test.serial('helm install with controller.replicas=2: the replicas elect one leader, and a policy still applies; the uninstall takes their Leases too', async (t) => {
  if (!(await requireRoot(t))) return;
  if (!s.cluster) {
    t.fail('no cluster (see the first test)');
    return;
  }
  const images = ['controller', 'node', 'waypoint'].flatMap((c) => ['--set', `${c}.image.tag=${s.tag}`]);
  const t0 = Date.now();
  const install = await helm(['install', 'mesh', CHART, '-n', 'mesh-system', ...images, '--set', 'controller.replicas=2'], s.env);
  t.is(install.code, 0, install.stderr);
  s.installed = install.code === 0;
  if (!s.installed) return;
  const controllers = async () => (await meshPods()).filter((p) => p.metadata!.labels!['app.kubernetes.io/component'] === 'controller');
  await waitFor('two controllers, a node pod and a CNI installer per node, all ready', async () => {
    const pods = await meshPods();
    return pods.length === 6 && pods.every(ready) ? true : undefined;
  }, 120_000).catch(async (e: Error) => {
    t.log(meshLogs());
    throw e;
  });
  s.figures.push(`helm install (controller.replicas=2) → every mesh pod ready: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const names = (await controllers()).map((p) => p.metadata!.name!);
  t.is(names.length, 2);
  // Exactly one leads: the Lease names it, and only its log says it became the leader.
  const coord = s.cluster.kc.makeApiClient(k8s.CoordinationV1Api);
  const holder = await waitFor('the Lease held', async () => {
    const lease = await coord.readNamespacedLease({ namespace: 'mesh-system', name: 'mesh-controller' });
    return lease.spec?.holderIdentity || undefined;
  }, 30_000);
  const leader = names.filter((n) => holder.startsWith(`${n}_`));
  t.is(leader.length, 1, `the Lease's holder ${holder} is one of ${names.join(', ')}`);
  const leaders = names.filter((n) => /"msg":"became the leader"/.test(readFileSync(join(s.stateDir, 'logs', `mesh-system_${n}_controller.log`), 'utf8')));
  t.deepEqual(leaders, leader, 'only the holder became the leader');
  s.figures.push(`leader: ${leader[0]} of ${names.join(', ')}`);
  // A policy applies: the DENY is enforced again (the shop is still labelled ambient).
  const applied = Date.now();
  const r = await kubectlIn(DENY, 'apply', '-f', '-');
  t.is(r.code, 0, r.stderr);
  const denied = await waitFor('denied flows under the two replicas', async () => {
    const f = await meshctl('flows', '-n', NS, '--verdict', 'DROPPED', '--since', `${Math.ceil((Date.now() - applied) / 1000) + 1}s`);
    return f.code === 0 && /ingress DROPPED \(HBONE mTLS, policy denied/.test(f.stdout) ? f.stdout : undefined;
  }, 90_000, 1000);
  t.regex(denied, /shop\/frontend:\d+ .* -> shop\/catalog:8080 .* ingress DROPPED \(HBONE mTLS, policy denied, Policy denied: denied by DENY policy shop\/catalog-closed-to-frontend/);
  s.figures.push(`  DENY applied → enforced: ${((Date.now() - applied) / 1000).toFixed(1)} s`);
  // Uninstall: the Leases (owned by the chart's ClusterRole) go with the rest.
  const del = await kubectl('delete', 'authorizationpolicies.security.mesh.io', '-n', NS, '--all');
  t.is(del.code, 0, del.stderr);
  const un = await helm(['uninstall', 'mesh', '-n', 'mesh-system', '--wait', '--timeout', '90s'], s.env);
  t.is(un.code, 0, un.stderr);
  s.installed = false;
  await waitFor('the mesh pods gone', async () => ((await meshPods()).length === 0 ? true : undefined), 90_000);
  const leases = await waitFor('the Leases gone', async () => {
    const l = await kubectl('get', 'leases', '-n', 'mesh-system', '-o', 'name');
    return l.code === 0 && !l.stdout.trim() ? true : undefined;
  }, 30_000).catch(async () => (await kubectl('get', 'leases', '-n', 'mesh-system', '-o', 'name')).stdout);
  t.is(leases, true, `Leases left: ${String(leases)}`);
  t.log(s.figures.slice(-3).join('\n'));
});

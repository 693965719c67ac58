// `meshctl dev`: the local cluster — a Kubernetes API server plus nodes and pods made of network
// namespaces on this host — for trying the mesh where no Kubernetes can run.
import { spawn } from 'node:child_process';
import { devImageCommand } from './dev-image.ts';
import { devRolloutCommand } from './dev-rollout.ts';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, watch } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { type DaemonStatus, pidPath, statusPath } from '../../local/daemon-state.ts';

const DEFAULT_STATE_DIR = process.env.MESH_DEV_STATE_DIR || '/var/lib/mesh/dev';
// Starts every namespace the cluster makes; MESH_DEV_PREFIX lets tests run one beside a user's.
const PREFIX = process.env.MESH_DEV_PREFIX || 'mesh';
const DAEMON = new URL('../../local/daemon.ts', import.meta.url).pathname;
const UP_TIMEOUT_MS = 120_000;

function stateDirOption(): Option {
  return new Option('--state-dir <dir>', 'where the cluster keeps its objects, logs and kubeconfig (env MESH_DEV_STATE_DIR)').default(DEFAULT_STATE_DIR);
}

function readStatus(stateDir: string): DaemonStatus | undefined {
  try {
    return JSON.parse(readFileSync(statusPath(stateDir), 'utf8')) as DaemonStatus;
  } catch {
    return undefined;
  }
}

/** The daemon's PID if it is alive and really our daemon (PIDs get reused). */
function runningDaemon(stateDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidPath(stateDir), 'utf8').trim());
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.includes('daemon.ts') && cmd.includes(stateDir) ? pid : undefined;
  } catch {
    return undefined;
  }
}

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

async function up(opts: { nodes: string; stateDir: string; mesh: boolean; workloadCertTtl?: string; tracingEndpoint?: string; tracingSampling?: string; controllerReplicas?: string }): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the local cluster creates network namespaces and cgroups: run `meshctl dev up` as root');
  const nodes = Number(opts.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 16) throw new Error(`--nodes must be a whole number from 1 to 16, got '${opts.nodes}'`);
  let ttlMs: number | undefined;
  if (opts.workloadCertTtl !== undefined) {
    const { parseDuration } = await import('../../common/settings.ts');
    ttlMs = parseDuration(opts.workloadCertTtl);
    if (ttlMs === undefined || ttlMs < 1000) throw new Error(`--workload-cert-ttl must be a duration of at least 1s, such as 30s, 10m or 24h; got '${opts.workloadCertTtl}'`);
    if (!opts.mesh) throw new Error('--workload-cert-ttl sets the mesh CA\'s certificate lifetime: it has no effect with --no-mesh');
  }
  const tracing: string[] = [];
  if (opts.tracingEndpoint !== undefined || opts.tracingSampling !== undefined) {
    if (!opts.mesh) throw new Error('--tracing-endpoint and --tracing-sampling configure the mesh\'s waypoints: they have no effect with --no-mesh');
    if (opts.tracingEndpoint === undefined) throw new Error('--tracing-sampling needs --tracing-endpoint: where the spans go');
    // The waypoints' own schema checks the values, so a bad one fails here and not in every pod.
    const { TRACING_SETTINGS } = await import('../../common/shared-settings.ts');
    const flag = (e: Error, name: string) => new Error(e.message.replace(/^MESH_TRACING_\w+/, name));
    try {
      TRACING_SETTINGS.tracingEndpoint.read(opts.tracingEndpoint, {}, 'meshctl dev up');
    } catch (e) {
      throw flag(e as Error, '--tracing-endpoint');
    }
    try {
      TRACING_SETTINGS.tracingSampling.read(opts.tracingSampling, {}, 'meshctl dev up');
    } catch (e) {
      throw flag(e as Error, '--tracing-sampling');
    }
    tracing.push('--tracing-endpoint', opts.tracingEndpoint, '--tracing-sampling', opts.tracingSampling ?? '1');
  }
  const replicas = opts.controllerReplicas === undefined ? undefined : Number(opts.controllerReplicas);
  if (replicas !== undefined) {
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) throw new Error(`--controller-replicas must be a whole number from 1 to 5, got '${opts.controllerReplicas}'`);
    if (!opts.mesh) throw new Error('--controller-replicas runs the mesh\'s controller as replicas: it has no effect with --no-mesh');
  }
  const running = runningDaemon(opts.stateDir);
  if (running) {
    const st = readStatus(opts.stateDir);
    say(`the local cluster is already running (pid ${running}, ${st?.phase ?? 'unknown'}); \`meshctl dev status\` shows it`);
    return;
  }
  mkdirSync(opts.stateDir, { recursive: true });
  rmSync(statusPath(opts.stateDir), { force: true });
  const logFile = join(opts.stateDir, 'daemon.log');
  const out = openSync(logFile, 'a');
  const args = ['--state-dir', opts.stateDir, '--nodes', String(nodes), '--prefix', PREFIX, ...(opts.mesh ? [] : ['--no-mesh']), ...(ttlMs ? ['--workload-cert-ttl-ms', String(ttlMs)] : []), ...tracing, ...(replicas ? ['--controller-replicas', String(replicas)] : [])];
  const child = spawn(process.execPath, [DAEMON, ...args], {
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...process.env, MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'info' },
  });
  closeSync(out);
  child.unref();
  say(`starting a local cluster with ${nodes} node${nodes === 1 ? '' : 's'}${opts.mesh ? ' and the mesh' : ''} (daemon pid ${child.pid}, log ${logFile})`);
  const shown = new Set<string>();
  const deadline = Date.now() + UP_TIMEOUT_MS;
  for (;;) {
    const st = readStatus(opts.stateDir);
    for (const p of st?.progress ?? []) {
      if (!shown.has(p)) {
        shown.add(p);
        say(`  • ${p}`);
      }
    }
    if (st?.phase === 'ready') break;
    if (st?.phase === 'failed' || child.exitCode !== null) {
      throw new Error(`the local cluster failed to start: ${st?.message ?? 'the daemon exited'} (see ${logFile})`);
    }
    if (Date.now() > deadline) throw new Error(`the local cluster did not become ready within ${UP_TIMEOUT_MS / 1000}s (see ${logFile})`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const st = readStatus(opts.stateDir)!;
  say(`\nready: API server ${st.server}`);
  say(`  export KUBECONFIG=${st.kubeconfig}`);
  say('  kubectl get nodes -o wide');
  say('  meshctl dev status');
  if (st.mesh) {
    say('  kubectl label namespace default mesh.io/dataplane-mode=ambient   # put a namespace in the mesh');
    say('  meshctl status          # controller, agents, ztunnels, config in sync');
    say('  meshctl flows --follow  # every connection, with SPIFFE identities and mTLS');
    say('  meshctl ztunnel-config workloads');
  }
  say('  meshctl dev down        # removes every namespace, cgroup and process it made');
}

async function status(opts: { stateDir: string; output: string }): Promise<void> {
  const pid = runningDaemon(opts.stateDir);
  const st = readStatus(opts.stateDir);
  if (!pid || !st?.kubeconfig) {
    say(`no local cluster is running (state dir ${opts.stateDir}); start one with \`meshctl dev up\``);
    process.exitCode = 1;
    return;
  }
  // Loaded here, not at start: every other meshctl command starts faster without it.
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(st.kubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const [nodes, pods] = await Promise.all([core.listNode(), core.listPodForAllNamespaces()]);
  if (opts.output === 'json') {
    say(JSON.stringify({ daemon: { pid, server: st.server, kubeconfig: st.kubeconfig }, nodes: nodes.items, pods: pods.items }, null, 2));
    return;
  }
  say(`local cluster: daemon pid ${pid}, API server ${st.server}`);
  say(`kubeconfig:    ${st.kubeconfig}\n`);
  const rows = (header: string[], body: string[][]) => {
    const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
    for (const r of [header, ...body]) say(r.map((c, i) => (c ?? '').padEnd(widths[i]!)).join('   ').trimEnd());
  };
  rows(
    ['NODE', 'STATUS', 'INTERNAL-IP', 'POD-CIDR'],
    nodes.items.map((n) => [
      n.metadata?.name ?? '',
      n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? 'Ready' : 'NotReady',
      n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address ?? '',
      (n.spec?.podCIDRs ?? [n.spec?.podCIDR ?? '']).join(','),
    ]),
  );
  say('');
  rows(
    ['NAMESPACE', 'POD', 'NODE', 'STATUS', 'IP'],
    pods.items.map((p) => [p.metadata?.namespace ?? '', p.metadata?.name ?? '', p.spec?.nodeName ?? '', p.status?.phase ?? 'Pending', p.status?.podIP ?? '']),
  );
}

async function down(opts: { stateDir: string; purge: boolean }): Promise<void> {
  const pid = runningDaemon(opts.stateDir);
  if (pid) {
    say(`stopping the local cluster (pid ${pid})`);
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 60_000;
    while (runningDaemon(opts.stateDir) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (runningDaemon(opts.stateDir)) {
      say('the daemon did not stop within 60s; killing it');
      process.kill(pid, 'SIGKILL');
    }
    const st = readStatus(opts.stateDir);
    if (st) say(`  • ${st.message}`);
  } else {
    say('no local cluster daemon is running');
  }
  // Whatever a crashed daemon may have left: mesh processes and pins, namespaces, cgroups,
  // processes, /etc/netns entries.
  const [{ sweepLocalMesh }, { sweepLocalCluster }, { cgroupParentFor }] = await Promise.all([
    import('../../local/mesh.ts'),
    import('../../local/sweep.ts'),
    import('../../local/runtime/cluster.ts'),
  ]);
  const removed = [...(await sweepLocalMesh(opts.stateDir)), ...(await sweepLocalCluster(PREFIX, cgroupParentFor(PREFIX)))];
  for (const r of removed) say(`  • removed ${r}`);
  if (opts.purge && existsSync(opts.stateDir)) {
    rmSync(opts.stateDir, { recursive: true, force: true });
    say(`  • removed ${opts.stateDir} (objects, logs, kubeconfig)`);
  } else if (existsSync(opts.stateDir)) {
    say(`kept ${opts.stateDir} (the API server's objects; \`meshctl dev down --purge\` removes it)`);
  }
}

async function logs(pod: string, opts: { stateDir: string; namespace: string; container?: string; follow: boolean }): Promise<void> {
  const st = readStatus(opts.stateDir);
  let container = opts.container;
  if (!container && st?.kubeconfig && existsSync(st.kubeconfig)) {
    const k8s = await import('@kubernetes/client-node');
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(st.kubeconfig);
    const p = await kc.makeApiClient(k8s.CoreV1Api).readNamespacedPod({ name: pod, namespace: opts.namespace });
    const names = (p.spec?.containers ?? []).map((c) => c.name);
    if (names.length > 1) throw new Error(`pod ${opts.namespace}/${pod} has several containers (${names.join(', ')}): choose one with -c`);
    container = names[0];
  }
  if (!container) throw new Error(`cannot tell pod ${opts.namespace}/${pod}'s container: give it with -c`);
  const { containerLogPath } = await import('../../local/runtime/kubelet.ts');
  const file = containerLogPath(join(opts.stateDir, 'logs'), opts.namespace, pod, container);
  if (!existsSync(file)) throw new Error(`no logs for ${opts.namespace}/${pod} container ${container} (${file})`);
  process.stdout.write(readFileSync(file));
  if (!opts.follow) return;
  let offset = statSync(file).size;
  await new Promise<void>(() => {
    watch(file, () => {
      const size = statSync(file).size;
      if (size <= offset) return;
      const fd = openSync(file, 'r');
      const buf = Buffer.alloc(size - offset);
      readSync(fd, buf, 0, buf.length, offset);
      closeSync(fd);
      offset = size;
      process.stdout.write(buf);
    });
  });
}

export function devCommand(): Command {
  const dev = new Command('dev')
    .description('run a local cluster on this host: an API server, and nodes and pods made of network namespaces')
    .addHelpText(
      'after',
      `
Examples:
  sudo meshctl dev up                  # start it (needs root: it makes namespaces and cgroups)
  meshctl dev status                   # its nodes and pods
  export KUBECONFIG=/var/lib/mesh/dev/kubeconfig && kubectl get pods -A
  meshctl ztunnel-config workloads     # what the ztunnels on its nodes know
  sudo meshctl dev down                # stop it and remove everything it made
`,
    );
  dev
    .command('up')
    .description('start the local cluster in the background and wait until it is ready')
    .option('--nodes <n>', 'how many nodes', '2')
    .option('--no-mesh', 'the cluster only: no controller, agents or ztunnels')
    .option('--workload-cert-ttl <duration>', 'lifetime of workload and node certificates (the controller\'s MESH_WORKLOAD_CERT_TTL; default 24h); short ones show rotation at work')
    .option('--tracing-endpoint <url>', 'OTLP/HTTP (protobuf) endpoint the waypoints export a span per request to, e.g. http://otel-collector.observability:4318/v1/traces (MESH_TRACING_OTLP_ENDPOINT)')
    .option('--tracing-sampling <percent>', 'percentage of new traces recorded (MESH_TRACING_SAMPLING; default 1); a caller\'s sampled flag always wins')
    .option('--controller-replicas <n>', 'run the controller as n replica processes behind a Service, electing a leader on a Lease (default: one controller inside the daemon)')
    .addOption(stateDirOption())
    .addHelpText('after', '\nExamples:\n  sudo meshctl dev up              # two nodes and the mesh, state in /var/lib/mesh/dev\n  sudo meshctl dev up --nodes 3\n  sudo meshctl dev up --no-mesh    # a plain cluster\n  sudo meshctl dev up --workload-cert-ttl 30s   # certificates renewed every 15 s (meshctl ztunnel-config certificates)\n  sudo meshctl dev up --tracing-endpoint http://otel-collector.observability:4318/v1/traces --tracing-sampling 100\n  sudo meshctl dev up --controller-replicas 2   # then: meshctl dev rollout controller\n  sudo meshctl dev up --state-dir /tmp/mesh-dev\n')
    .action(up);
  dev
    .command('status')
    .description('show the local cluster\'s nodes and pods')
    .addOption(stateDirOption())
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .addHelpText('after', '\nExamples:\n  meshctl dev status\n  meshctl dev status -o json | jq \'.pods[].metadata.name\'\n')
    .action(status);
  dev
    .command('down')
    .description('stop the local cluster and remove every namespace, cgroup and process it made')
    .addOption(stateDirOption())
    .option('--purge', 'also remove the state directory (the API server\'s objects, logs and kubeconfig)', false)
    .addHelpText('after', '\nExamples:\n  sudo meshctl dev down           # keeps the API server\'s objects for the next `dev up`\n  sudo meshctl dev down --purge   # removes the state directory too\n')
    .action(down);
  dev
    .command('logs')
    .description('print a pod\'s container log')
    .argument('<pod>', 'pod name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('-c, --container <name>', 'container (needed when the pod has several)')
    .option('-f, --follow', 'keep printing as the log grows', false)
    .addOption(stateDirOption())
    .addHelpText('after', '\nExamples:\n  meshctl dev logs web-5f6c9-abcde -n shop\n  meshctl dev logs web-5f6c9-abcde -n shop -c app -f\n')
    .action(logs);
  dev.addCommand(devImageCommand());
  dev.addCommand(devRolloutCommand());
  return dev;
}

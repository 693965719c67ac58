// `meshctl check`: reads what the datapath depends on from this host — without loading, attaching
// or mounting anything that outlives the command — and prints one verdict per check.
import { Command, Option } from 'commander';
import { type CheckResult, runChecks } from '../checks.ts';
import { gatherHostFacts, listDir } from '../host-facts.ts';
import { renderChecks } from '../output.ts';
import { checkCniConfDir, parseDuration } from '../precheck.ts';
import type { NodeInfo, ServerStatus } from '../../flows/types.ts';
import { DEFAULT_STATE_DIR } from '../endpoints.ts';
import { relayAccess } from '../relay.ts';
import { meshHealth } from '../health.ts';

export { gatherHostFacts } from '../host-facts.ts';

// The agent's default (src/agent/config.ts, MESH_BPFFS_DIR): check where the agent will pin.
const DEFAULT_BPFFS_DIR = '/sys/fs/bpf/mesh';

// The waypoint check lists namespaces, pods, services and endpoint slices: seconds on a large
// cluster, never this long unless the API server is stuck.
const API_TIMEOUT_MS = 15_000;


export interface CheckOptions {
  output: 'human' | 'json';
  bpffsDir: string;
  postInstall?: boolean;
  stateDir: string;
  server?: string;
  kubeconfig?: string;
  context?: string;
  preInstall?: boolean;
  namespace: string;
  nodeImage: string;
  timeout: string;
  cniConfDir?: string;
}

export function checkCommand(): Command {
  return new Command('check')
    .summary('check whether this host can run the mesh datapath')
    .description(
      'Checks whether this host can run the mesh datapath: kernel version, BTF, cgroup v2, bpffs, ' +
        'capabilities, eBPF program types, ring buffers, and socket load balancers that would hide ' +
        'service addresses from the mesh. With --post-install, checks the running mesh instead: the controller, ' +
        "every node's agent, ztunnel and config, and every waypoint in use (a namespace, service or pod whose " +
        'waypoint is missing, not Programmed or without a ready endpoint has its traffic refused). ' +
        'With --pre-install, checks a cluster before installing the chart: Kubernetes version, the RBAC to create what it installs, ' +
        'an existing install, Istio or Cilium in the way, and these host checks plus the CNI conf dir on every node, run in a ' +
        'short-lived privileged pod (--node-image) that is deleted afterwards. Exits 1 when any check fails.',
    )
    .addOption(
      new Option('-o, --output <format>', 'output format').choices(['human', 'json']).default('human'),
    )
    .addOption(
      new Option('--bpffs-dir <dir>', "the agent's bpffs directory (MESH_BPFFS_DIR)").default(
        process.env.MESH_BPFFS_DIR || DEFAULT_BPFFS_DIR,
      ),
    )
    .option('--post-install', 'check the installed mesh instead: controller, and every node\'s agent, ztunnel and config')
    .addOption(new Option('--state-dir <dir>', "with --post-install: the local cluster's state directory (env MESH_DEV_STATE_DIR)").default(DEFAULT_STATE_DIR))
    .option('--server <host:port>', "with --post-install: the controller's relay (default: from mesh.json)")
    .option('--kubeconfig <file>', "with --post-install or --pre-install: kubeconfig of the cluster (default: $KUBECONFIG, ~/.kube/config, else the local cluster's)")
    .option('--context <name>', 'with --post-install or --pre-install: kubeconfig context to use')
    .option('--pre-install', 'check the cluster before installing: Kubernetes version, RBAC to install the chart, existing installs and other meshes, and each node through a short-lived privileged pod')
    .addOption(new Option('--namespace <ns>', 'with --pre-install: the namespace the chart installs into').default('mesh-system'))
    .addOption(new Option('--node-image <image>', 'with --pre-install: the image of the node pods').default('localhost/mesh-node:latest'))
    .addOption(new Option('--timeout <duration>', 'with --pre-install: how long a node pod may take (e.g. 60s, 2m)').default('60s'))
    .option('--cni-conf-dir <dir>', 'also check that this CNI config directory has a primary conflist (the node pods pass it)')
    .addHelpText(
      'after',
      `
Examples:
  meshctl check                                # one verdict per check, with the fix for each failure
  meshctl check --post-install                 # is the running mesh healthy?
  meshctl check --pre-install --context prod   # can this cluster take the chart? (also runs the host checks on every node)
  meshctl check -o json | jq '.[] | select(.status != "ok")'
  meshctl check --bpffs-dir /sys/fs/bpf/mesh   # check where the agent will pin its maps
  sudo meshctl check                           # as root, capability and bpftool checks see what the agent will
`,
    )
    .action(async (opts: CheckOptions) => {
      const results = opts.preInstall
        ? await preInstallChecks(opts)
        : opts.postInstall
          ? await postInstall(opts)
          : [...runChecks(gatherHostFacts(opts.bpffsDir)), ...(opts.cniConfDir ? [checkCniConfDir(opts.cniConfDir, listDir(opts.cniConfDir))] : [])];
      if (opts.output === 'json') {
        process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
      } else {
        process.stdout.write(renderChecks(results, process.stdout, opts.preInstall ? 'cluster' : opts.postInstall ? 'mesh' : 'host'));
      }
      process.exitCode = exitCodeOf(results);
    });
}

async function preInstallChecks(opts: CheckOptions): Promise<CheckResult[]> {
  const [{ loadKubeConfig }, { preInstall }] = await Promise.all([import('../kube.ts'), import('../precheck-cluster.ts')]);
  const timeoutMs = parseDuration(opts.timeout);
  const kc = await loadKubeConfig(opts);
  return preInstall(kc, { namespace: opts.namespace, nodeImage: opts.nodeImage, timeoutMs, cniConfDir: opts.cniConfDir ?? '/etc/cni/net.d' });
}

async function postInstall(opts: CheckOptions): Promise<CheckResult[]> {
  const [components, waypoints] = await Promise.all([componentHealth(opts), waypointHealth(opts)]);
  return [...components, ...waypoints];
}

/**
 * Every waypoint that something uses and that cannot take its traffic, with the users refused
 * because of it — read from the API server, judged by the controller's model.
 */
async function waypointHealth(opts: CheckOptions): Promise<CheckResult[]> {
  const [{ loadKubeConfig }, { readWaypointView }, { waypointChecks }] = await Promise.all([import('../kube.ts'), import('../cluster.ts'), import('../waypoint.ts')]);
  let timer: NodeJS.Timeout | undefined;
  try {
    // Without --server the components were found through the state directory: ask the same cluster.
    const kc = await loadKubeConfig({ ...opts, preferLocal: !opts.server && !opts.kubeconfig });
    // An API server that accepts the connection and never answers must not hang the check.
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the API server at ${kc.getCurrentCluster()?.server ?? '?'} did not answer within ${API_TIMEOUT_MS / 1000}s`)), API_TIMEOUT_MS);
    });
    const view = await Promise.race([readWaypointView(kc), timeout]);
    return waypointChecks(view.model.waypoints, view.gatewayApi);
  } catch (e) {
    return [{ name: 'waypoints', status: 'warn', detail: `not checked: ${(e as Error).message}`, fix: 'pass --kubeconfig (or set KUBECONFIG) for the cluster the mesh runs on' }];
  } finally {
    clearTimeout(timer);
  }
}

async function componentHealth(opts: CheckOptions): Promise<CheckResult[]> {
  let access;
  try {
    access = await relayAccess({ ...opts, ...(opts.server ? { server: opts.server } : {}) });
  } catch (e) {
    return [{ name: 'controller', status: 'fail', detail: (e as Error).message, fix: 'start the local cluster with `meshctl dev up`, install the chart, or pass --server host:port' }];
  }
  const relay = access.address;
  const { credentials } = await import('@grpc/grpc-js');
  const { observerClient, unary } = await import('../../flows/server.ts');
  const client = observerClient(relay, credentials.createInsecure());
  try {
    const st = await unary<ServerStatus>((o, cb) => client.ServerStatus({}, o, cb), 8000).catch((e: Error) => e);
    const nodes = st instanceof Error ? [] : (await unary<{ nodes: NodeInfo[] }>((o, cb) => client.GetNodes({}, o, cb), 8000)).nodes;
    return meshHealth(access.via === '--server' ? relay : `${relay} (${access.via})`, st, nodes);
  } finally {
    client.close();
    access.close();
  }
}

/** 0 when nothing failed (warnings included), 1 otherwise. */
export function exitCodeOf(results: readonly CheckResult[]): number {
  return results.some((r) => r.status === 'fail') ? 1 : 0;
}

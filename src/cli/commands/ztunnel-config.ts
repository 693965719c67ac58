// `meshctl ztunnel-config`: what the ztunnels know — workloads, services, policies, certificates
// and live connections — read from each one's admin /config_dump, as istioctl ztunnel-config
// shows Istio's. The addresses come from --admin, the local cluster's mesh.json, or port-forwards
// to the node pods of a cluster installed with the chart (src/cli/ztunnels.ts).
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_STATE_DIR } from '../endpoints.ts';
import { type Target, ZtunnelConfigError, ztunnelAccess } from '../ztunnels.ts';
import {
  type Filters,
  type MergedDump,
  mergeDumps,
  type NodeDump,
  type OutputFormat,
  parseDump,
  renderAll,
  renderSection,
  type Section,
} from '../ztunnel-config-format.ts';

// A ztunnel answers from memory; a dump that takes longer than this is not coming.
const FETCH_TIMEOUT_MS = 5_000;

interface CommonOptions {
  stateDir: string;
  node?: string;
  admin?: string;
  kubeconfig?: string;
  context?: string;
  output: OutputFormat;
  namespace?: string;
}

interface AllOptions extends CommonOptions {
  workloadNode?: string;
  address?: string;
  direction?: 'inbound' | 'outbound';
  raw?: boolean;
}

function describe(t: Target): string {
  return t.node === undefined ? `ztunnel admin at ${t.admin}` : `node ${t.node}'s ztunnel admin at ${t.admin}`;
}

/** GET /config_dump from one ztunnel. */
export async function fetchDump(t: Target): Promise<NodeDump> {
  const url = `http://${t.admin}/config_dump`;
  let res: Response;
  let body: string;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    body = await res.text();
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why = e.name === 'TimeoutError' ? `no answer within ${FETCH_TIMEOUT_MS / 1000}s` : (e.cause?.code ?? e.cause?.message ?? e.message);
    throw new ZtunnelConfigError(
      'MESH_ERR_ZTUNNEL_ADMIN_UNREACHABLE',
      t.pod
        ? `cannot reach ${describe(t)} (${why}) through a port-forward to ${t.pod}:15000: is its ztunnel container running (\`kubectl -n mesh-system describe pod\`)?`
        : `cannot reach ${describe(t)} (${why}): is the ztunnel running? \`meshctl dev status\` shows the local cluster; ` +
          'on a Kubernetes cluster, leave out --admin and meshctl port-forwards to each node pod itself (or `kubectl port-forward -n mesh-system <node pod> 15000`, then --admin 127.0.0.1:15000)',
      { cause: err },
    );
  }
  if (res.status !== 200) {
    throw new ZtunnelConfigError('MESH_ERR_ZTUNNEL_ADMIN_STATUS', `${describe(t)} answered ${res.status} to GET /config_dump: ${body.trim().slice(0, 300)}`);
  }
  try {
    return { node: t.node, dump: parseDump(JSON.parse(body)) };
  } catch (err) {
    throw new ZtunnelConfigError(
      'MESH_ERR_ZTUNNEL_DUMP_INVALID',
      `${describe(t)} did not answer with a ztunnel config dump (${(err as Error).message}): is ${t.admin} a ztunnel admin port (15000)?`,
      { cause: err },
    );
  }
}

/**
 * Every target's dump, merged. A node that fails is reported on stderr and makes the exit code 1,
 * but the others are still shown: one broken ztunnel should not hide the rest of the mesh.
 */
async function gather(o: CommonOptions): Promise<MergedDump> {
  const access = await ztunnelAccess(o);
  let results: PromiseSettledResult<NodeDump>[];
  try {
    results = await Promise.allSettled(access.serving.map(fetchDump));
  } finally {
    access.close();
  }
  const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
  if (ok.length === 0) {
    for (const e of failed.slice(1)) process.stderr.write(`meshctl: ${e.message}\n`);
    throw failed[0]!;
  }
  for (const e of failed) process.stderr.write(`meshctl: ${e.message} (showing the other nodes)\n`);
  if (failed.length) process.exitCode = 1;
  return mergeDumps(ok);
}

function filters(o: AllOptions): Filters {
  return { namespace: o.namespace, workloadNode: o.workloadNode, address: o.address, direction: o.direction, raw: o.raw };
}

function adminAddress(value: string): string {
  const v = value.replace(/^http:\/\//, '').replace(/\/+$/, '');
  if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):\d{1,5}$/.test(v)) {
    throw new InvalidArgumentError('expected host:port, e.g. 127.0.0.1:15000 or [::1]:15000');
  }
  return v;
}

function commonOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--state-dir <dir>', "the local cluster's state directory, where mesh.json records the ztunnels (env MESH_DEV_STATE_DIR)").default(DEFAULT_STATE_DIR))
    .addOption(new Option('--node <name>', "show this node's ztunnel only (default: every node, merged)"))
    .addOption(new Option('--admin <host:port>', 'ask the ztunnel admin server at this address instead (e.g. after kubectl port-forward)').argParser(adminAddress))
    .addOption(new Option('--kubeconfig <file>', "without a local cluster: the cluster whose node pods to ask (default: $KUBECONFIG, ~/.kube/config)"))
    .addOption(new Option('--context <name>', 'kubeconfig context to use'))
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .addOption(new Option('-n, --namespace <namespace>', 'only entries in this namespace'));
}

const NAMESPACE_NOTE = '--namespace filters workloads, services and policies by their namespace, certificates by their identity\'s, and connections by the local workload\'s.';

interface SectionSpec {
  name: Section;
  aliases: string[];
  summary: string;
  columns: string;
  extra?: (cmd: Command) => Command;
  examples: string[];
}

const workloadOptions = (cmd: Command) =>
  cmd
    .addOption(new Option('--workload-node <name>', 'only workloads scheduled on this node'))
    .addOption(new Option('--address <ip>', 'only the workload with this address'));

const connectionOptions = (cmd: Command) =>
  cmd
    .addOption(new Option('--direction <direction>', 'only connections in this direction').choices(['inbound', 'outbound']))
    .addOption(new Option('--raw', 'show addresses as they are, not as workload and service names'));

const SPECS: SectionSpec[] = [
  {
    name: 'workloads',
    aliases: ['workload'],
    summary: 'the workloads ztunnel knows: pods, their addresses, nodes, waypoints and protocols',
    columns: 'NAMESPACE, POD NAME, ADDRESS, NODE, WAYPOINT (None, or "(missing)" when no service has the waypoint\'s hostname: that traffic is refused), PROTOCOL (HBONE, or TCP for pods outside the mesh)',
    extra: workloadOptions,
    examples: ['meshctl ztunnel-config workloads', 'meshctl ztunnel-config workloads -n shop --workload-node node1', 'meshctl ztunnel-config workloads --address 10.244.1.7 -o yaml'],
  },
  {
    name: 'services',
    aliases: ['service'],
    summary: 'the services ztunnel load-balances: VIPs, waypoints and endpoints',
    columns: 'NAMESPACE, SERVICE NAME, SERVICE VIP, WAYPOINT, ENDPOINTS (healthy/total workloads backing the service)',
    examples: ['meshctl ztunnel-config services', 'meshctl ztunnel-config services -n shop -o json'],
  },
  {
    name: 'policies',
    aliases: ['policy'],
    summary: 'the authorization policies ztunnel enforces (PeerAuthentication STRICT included)',
    columns: 'NAMESPACE, POLICY NAME, ACTION (ALLOW or DENY; "(dry run)" when only logged), SCOPE (GLOBAL, NAMESPACE or WORKLOAD_SELECTOR)',
    examples: ['meshctl ztunnel-config policies', 'meshctl ztunnel-config policies -n shop -o yaml'],
  },
  {
    name: 'certificates',
    aliases: ['certificate', 'certs', 'secret'],
    summary: "the workload certificates each ztunnel holds, and whether they are valid",
    columns:
      'CERTIFICATE NAME (the SPIFFE identity), TYPE, STATUS (fetching, ready, refreshing, failed), VALID CERT (ready and within its validity now), SERIAL NUMBER, NOT AFTER, NOT BEFORE; NODE first when several ztunnels are shown',
    examples: ['meshctl ztunnel-config certificates', 'meshctl ztunnel-config certificates --node node2', 'meshctl ztunnel-config certificates -n shop -o json'],
  },
  {
    name: 'connections',
    aliases: ['connection'],
    summary: "the connections each ztunnel is carrying right now",
    columns:
      'WORKLOAD (the local pod), DIRECTION, LOCAL, REMOTE, REMOTE TARGET (the destination the app dialled), PROTOCOL; NODE first when several ztunnels are shown. ' +
      'Addresses are shown as name.namespace (pods) or service hostnames unless --raw. ' +
      'REMOTE of an outbound connection to a service VIP, and PROTOCOL of an inbound one, are "-": the dump does not record them.',
    extra: connectionOptions,
    examples: ['meshctl ztunnel-config connections', 'meshctl ztunnel-config connections --direction inbound -n shop', 'meshctl ztunnel-config connections --node node1 --raw'],
  },
];

const SOURCE_NOTE = `Each ztunnel is asked at its admin server (GET /config_dump, port 15000). By
default every node in <state dir>/mesh.json (the local cluster) is asked, and
their workloads, services and policies are merged; without a local cluster,
every mesh node pod in mesh-system of the kubeconfig's cluster is asked through
a port-forward (as istioctl does). --node asks one node's ztunnel; --admin asks
the address given.`;

function sectionCommand(spec: SectionSpec): Command {
  const cmd = new Command(spec.name).aliases(spec.aliases).summary(spec.summary).description(`Shows ${spec.summary}.\n\nColumns: ${spec.columns}.`);
  commonOptions(cmd);
  spec.extra?.(cmd);
  return cmd
    .addHelpText('after', `\n${SOURCE_NOTE}\n\nExamples:\n${spec.examples.map((e) => `  ${e}`).join('\n')}\n`)
    .action(async (opts: AllOptions) => {
      const merged = await gather(opts);
      process.stdout.write(renderSection(spec.name, merged, filters(opts), opts.output));
    });
}

function allCommand(): Command {
  const cmd = new Command('all')
    .summary('every section: workloads, services, policies, certificates and connections')
    .description(`Shows every section — workloads, services, policies, certificates and connections — each under a heading (one object keyed by section with -o json|yaml). ${NAMESPACE_NOTE}`);
  commonOptions(cmd);
  workloadOptions(cmd);
  connectionOptions(cmd);
  return cmd
    .addHelpText(
      'after',
      `\n${SOURCE_NOTE}\n\nExamples:\n  meshctl ztunnel-config all\n  meshctl ztunnel-config all -n shop --node node1\n  meshctl ztunnel-config all -o json | jq '.workloads | length'\n`,
    )
    .action(async (opts: AllOptions) => {
      const merged = await gather(opts);
      process.stdout.write(renderAll(merged, filters(opts), opts.output));
    });
}

export function ztunnelConfigCommand(): Command {
  const zc = new Command('ztunnel-config')
    .alias('zc')
    .summary("show what the node proxies (ztunnels) know: workloads, services, policies, certificates, connections")
    .description(
      "Shows ztunnel's view of the mesh, read from its admin server's /config_dump — the same " +
        `sections and columns as istioctl ztunnel-config. ${NAMESPACE_NOTE}`,
    );
  for (const spec of SPECS) zc.addCommand(sectionCommand(spec));
  zc.addCommand(allCommand());
  return zc.addHelpText(
    'after',
    `\n${SOURCE_NOTE}\n\nExamples:\n` +
      '  meshctl ztunnel-config workloads                  # every workload, as the ztunnels see it\n' +
      '  meshctl ztunnel-config services -n shop           # VIPs, waypoints and healthy/total endpoints\n' +
      '  meshctl ztunnel-config certificates --node node1  # node1\'s workload certificates\n' +
      '  meshctl zc connections --direction inbound        # live inbound connections\n' +
      '  meshctl ztunnel-config all -o yaml                # everything, for a bug report\n',
  );
}

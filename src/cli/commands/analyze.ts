// `meshctl analyze`: checks the whole cluster the way istioctl analyze does and prints one line per
// finding — code, severity, object, what is wrong and the fix (docs/analyze.md lists every code).
// Reads the cluster through the kubeconfig (the local cluster's when there is no other), the
// flows the controller's relay keeps, and the ztunnels' certificates from their admin servers.
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_STATE_DIR } from '../endpoints.ts';
import { loadKubeConfig } from '../kube.ts';
import { parseTime } from './flows.ts';

const OUTPUTS = ['log', 'json', 'yaml'] as const;
const SEVERITY_CHOICES = ['Error', 'Warning', 'Info'] as const;

export interface AnalyzeOptions {
  kubeconfig?: string;
  context?: string;
  stateDir: string;
  namespace?: string;
  allNamespaces?: boolean;
  server?: string;
  admin: string[];
  since?: string;
  output: (typeof OUTPUTS)[number];
  failureThreshold: (typeof SEVERITY_CHOICES)[number];
  outputThreshold: (typeof SEVERITY_CHOICES)[number];
}

const collectAddress = (v: string, prev: string[]) => {
  if (!/^[^\s:]+:\d{1,5}$/.test(v) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(v)) throw new InvalidArgumentError(`${v} is not host:port`);
  return [...prev, v];
};

async function run(o: AnalyzeOptions): Promise<void> {
  const { gather, analyze, sortFindings, findingLine, atLeast } = await import('../analyze/index.ts');
  // Flows and certificates come from the local cluster's mesh.json unless --server says otherwise:
  // then its kubeconfig goes first, so that all three describe the same cluster (as check --post-install).
  const kc = await loadKubeConfig({ kubeconfig: o.kubeconfig, context: o.context, stateDir: o.stateDir, preferLocal: !o.server && !o.kubeconfig });
  const input = await gather(kc, { stateDir: o.stateDir, server: o.server, admin: o.admin, sinceNs: o.since ? parseTime(o.since) : undefined });
  const all = sortFindings(analyze(input));
  // A Namespace finding is about the namespace itself: -n NS keeps it too.
  const inScope = o.namespace && !o.allNamespaces ? all.filter((f) => f.namespace === o.namespace || (f.kind === 'Namespace' && f.name === o.namespace)) : all;
  const shown = inScope.filter((f) => atLeast(f, o.outputThreshold));
  if (o.output === 'json') process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
  else if (o.output === 'yaml') {
    const yaml = await import('js-yaml');
    process.stdout.write(shown.length ? yaml.dump(shown, { lineWidth: -1 }) : '[]\n');
  } else if (shown.length === 0) {
    const where = o.namespace && !o.allNamespaces ? `namespace: ${o.namespace}` : `${input.snapshot.namespaces.length} namespaces`;
    process.stdout.write(`✔ No validation issues found when analyzing ${where}.\n`);
  } else for (const f of shown) process.stdout.write(`${findingLine(f)}\n`);
  // istioctl analyze: non-zero when a finding reaches the failure threshold (Error by default).
  if (inScope.some((f) => atLeast(f, o.failureThreshold))) process.exitCode = 1;
}

export function analyzeCommand(): Command {
  return new Command('analyze')
    .description('check the cluster for mesh problems, as istioctl analyze does: one line per finding, with its code, object and fix (docs/analyze.md)')
    .addOption(new Option('--kubeconfig <file>', "kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, else the local cluster's)"))
    .addOption(new Option('--context <name>', 'kubeconfig context to use (default: its current context)'))
    .addOption(new Option('--state-dir <dir>', "the local cluster's state directory: its kubeconfig is the last resort, and its mesh.json names the relay and the ztunnels (env MESH_DEV_STATE_DIR)").default(DEFAULT_STATE_DIR))
    .option('-n, --namespace <ns>', 'only findings about objects in this namespace')
    .option('-A, --all-namespaces', 'findings in every namespace (the default)')
    .option('--server <host:port>', "the controller's flow relay, for STRICT namespaces still called in plaintext (default: from mesh.json; on a cluster, kubectl -n mesh-system port-forward deploy/mesh-controller 4245)")
    .option('--admin <host:port>', "a ztunnel's admin server, for its certificates (repeatable; default: every node in mesh.json)", collectAddress, [])
    .option('--since <time>', 'only flows since a time or a duration ago (30s, 5m, 2h; default: every flow the relay keeps)')
    .addOption(new Option('-o, --output <format>', 'log (one line per finding), json or yaml').choices([...OUTPUTS]).default('log'))
    .addOption(new Option('--failure-threshold <severity>', 'exit 1 when a finding is at least this severe').choices([...SEVERITY_CHOICES]).default('Error'))
    .addOption(new Option('--output-threshold <severity>', 'show findings at least this severe').choices([...SEVERITY_CHOICES]).default('Info'))
    .addHelpText(
      'after',
      `
Examples:
  meshctl analyze                       # the whole cluster (the local one when there is no kubeconfig)
  meshctl analyze -n shop -o json
  meshctl analyze --output-threshold Warning --failure-threshold Warning

Exit status: 0 when no finding reaches --failure-threshold (Error), 1 when one does or the cluster
could not be read, 2 for a wrong command line.`,
    )
    .action(async (o: AnalyzeOptions) => run(o));
}

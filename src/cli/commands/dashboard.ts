// `meshctl dashboard`: the controller's service map in the browser. On the local cluster the
// controller runs on this host and mesh.json says where its page is; on a cluster the page
// listens on the controller pod's loopback (it is plaintext and has no login), so meshctl
// port-forwards to the pod, as `istioctl dashboard kiali` and `cilium hubble ui` do, and prints
// the URL until Ctrl-C.
import { type ChildProcess, spawn } from 'node:child_process';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_STATE_DIR, loadEndpoints } from '../endpoints.ts';
import { KubeCommandError, loadKubeConfig } from '../kube.ts';

/** The controller's dashboard port in the chart (MESH_DASHBOARD_PORT's default). */
const CONTROLLER_DASHBOARD_PORT = 20001;
const CONTROLLER_SELECTOR = 'app.kubernetes.io/name=mesh,app.kubernetes.io/component=controller';

interface DashboardOptions {
  stateDir: string;
  kubeconfig?: string;
  context?: string;
  namespace: string;
  port: number;
  address: string;
  browser: boolean;
  show?: string;
}

const portArg = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`${v} is not a port (0-65535; 0 picks a free one)`);
  return n;
};

/** The page's URL, with the namespace to show first. */
function withNamespace(url: string, ns: string | undefined): string {
  return ns ? `${url}?namespace=${encodeURIComponent(ns)}` : url;
}

async function reachable(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(new URL('/healthz', url), { signal: AbortSignal.timeout(3000) });
    return res.ok ? undefined : `it answered ${res.status}`;
  } catch (e) {
    return (e as Error).message;
  }
}

function openBrowser(url: string): void {
  // xdg-open is the desktop's own choice of browser; without a desktop the URL printed is enough.
  const p = spawn('xdg-open', [url], { stdio: 'ignore', detached: true });
  p.on('error', () => process.stderr.write(`(no browser could be opened: open ${url} yourself)\n`));
  p.unref();
}

/** The local cluster's dashboard, if mesh.json names one (and no kubeconfig was asked for). */
function localUrl(o: DashboardOptions): string | undefined {
  if (o.kubeconfig || o.context) return undefined;
  try {
    return loadEndpoints(o.stateDir).dashboard;
  } catch {
    return undefined;
  }
}

/** A Running controller pod to forward to. */
async function controllerPod(o: DashboardOptions): Promise<{ pod: string; kubeconfigArgs: string[] }> {
  const kc = await loadKubeConfig({ kubeconfig: o.kubeconfig, context: o.context, stateDir: o.stateDir });
  const { CoreV1Api } = await import('@kubernetes/client-node');
  const pods = await kc
    .makeApiClient(CoreV1Api)
    .listNamespacedPod({ namespace: o.namespace, labelSelector: CONTROLLER_SELECTOR })
    .catch((e: Error) => {
      throw new KubeCommandError('MESH_ERR_KUBE_API', `listing the controller's pods in ${o.namespace}: ${e.message} — is the cluster reachable, and the mesh installed there?`, { cause: e });
    });
  const running = pods.items.find((p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp);
  if (!running?.metadata?.name) {
    const seen = pods.items.map((p) => `${p.metadata?.name} (${p.status?.phase})`).join(', ');
    throw new KubeCommandError('MESH_ERR_KUBE_API', `no running controller pod in namespace ${o.namespace} (label ${CONTROLLER_SELECTOR})${seen ? `: ${seen}` : ''} — is the chart installed (helm status mesh -n ${o.namespace}), or is it in another namespace (--namespace)?`);
  }
  // kubectl uses the same cluster as the listing: the file loadKubeConfig chose and its context.
  return { pod: running.metadata.name, kubeconfigArgs: [...(o.kubeconfig ? ['--kubeconfig', o.kubeconfig] : []), '--context', kc.getCurrentContext()] };
}

/**
 * kubectl port-forward to the pod: kubectl is on any machine that runs meshctl against a cluster
 * and speaks every API server's port-forward protocol (SPDY, or the WebSocket tunnel of 1.31+).
 * Resolves with the local URL once kubectl says it forwards.
 */
function portForward(o: DashboardOptions, pod: string, kubeconfigArgs: string[]): Promise<{ url: string; child: ChildProcess }> {
  const args = [...kubeconfigArgs, 'port-forward', '-n', o.namespace, '--address', o.address, `pod/${pod}`, `${o.port || ''}:${CONTROLLER_DASHBOARD_PORT}`];
  const child = spawn('kubectl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`kubectl port-forward to ${o.namespace}/${pod} did not start within 30 s: ${err.trim() || out.trim()}`));
    }, 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run kubectl for the port-forward: ${e.message} — install kubectl, or run this where it is on PATH`));
    });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /Forwarding from (\S+):(\d+) ->/.exec(out);
      if (m) {
        clearTimeout(timer);
        const host = m[1]!.startsWith('[') ? m[1]! : m[1]!.includes(':') ? `[${m[1]}]` : m[1]!;
        resolve({ url: `http://${host}:${m[2]}/`, child });
      }
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kubectl port-forward to ${o.namespace}/${pod} exited (${code}): ${err.trim()}`));
    });
  });
}

async function dashboard(o: DashboardOptions): Promise<void> {
  const local = localUrl(o);
  if (local) {
    const why = await reachable(local);
    if (why) throw new Error(`the local cluster's dashboard at ${local} does not answer (${why}): is the mesh up (\`meshctl dev status\`)?`);
    const url = withNamespace(local, o.show);
    process.stdout.write(`${url}\n`);
    if (o.browser) openBrowser(url);
    return;
  }
  const { pod, kubeconfigArgs } = await controllerPod(o);
  const { url: base, child } = await portForward(o, pod, kubeconfigArgs);
  const why = await reachable(base);
  if (why) {
    child.kill('SIGTERM');
    throw new Error(`port-forwarded to ${o.namespace}/${pod}:${CONTROLLER_DASHBOARD_PORT}, but the dashboard does not answer (${why}): does the controller run with MESH_DASHBOARD_PORT=${CONTROLLER_DASHBOARD_PORT}?`);
  }
  const url = withNamespace(base, o.show);
  process.stdout.write(`${url}\n`);
  process.stderr.write(`forwarding to ${o.namespace}/${pod}; Ctrl-C to stop\n`);
  if (o.browser) openBrowser(url);
  await new Promise<void>((resolve, reject) => {
    const stop = () => child.kill('SIGTERM');
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    child.once('exit', (code, signal) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (signal === 'SIGTERM' || code === 0) resolve();
      else reject(new Error(`kubectl port-forward ended (exit ${code}): the controller pod may have restarted; run meshctl dashboard again`));
    });
  });
}

export function dashboardCommand(): Command {
  return new Command('dashboard')
    .description("open the service map: workloads and services with the calls between them (rates, errors, p99, mTLS, policy denials, waypoints), live from the controller's flows")
    .addOption(new Option('--state-dir <dir>', "the local cluster's state directory, where mesh.json records the dashboard (env MESH_DEV_STATE_DIR)").default(DEFAULT_STATE_DIR))
    .option('--kubeconfig <file>', 'use this cluster (port-forward to its controller) instead of the local cluster')
    .option('--context <name>', 'kubeconfig context to use (port-forward to its controller)')
    .option('--namespace <ns>', "the controller's namespace", 'mesh-system')
    .option('-p, --port <port>', 'local port of the port-forward (default: a free one)', portArg, 0)
    .option('--address <ip>', 'local address of the port-forward', '127.0.0.1')
    .option('--show <namespace>', 'show this namespace first')
    .option('--browser', 'also open the URL in the desktop browser (xdg-open)', false)
    .addHelpText(
      'after',
      `
Examples:
  meshctl dashboard                       # the local cluster's map (meshctl dev up): prints its URL
  meshctl dashboard --show shop --browser
  meshctl dashboard --context prod -p 20001   # a cluster: port-forwards to the controller until Ctrl-C`,
    )
    .action(async (o: DashboardOptions) => dashboard(o));
}

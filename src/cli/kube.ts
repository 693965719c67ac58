// How meshctl reaches the Kubernetes API: which kubeconfig, and how API failures become errors
// that say what to do. client-node is imported lazily by the callers that need it, so commands
// that never talk to the API (check, flows, ztunnel-config) start without it.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import { statusPath, type DaemonStatus } from '../local/daemon-state.ts';

export type KubeErrorCode =
  | 'MESH_ERR_NO_KUBECONFIG'
  | 'MESH_ERR_KUBE_API'
  | 'MESH_ERR_GATEWAY_API_MISSING'
  | 'MESH_ERR_NAMESPACE_NOT_FOUND'
  | 'MESH_ERR_WAYPOINT_NOT_FOUND'
  | 'MESH_ERR_WAYPOINT_CONFLICT'
  | 'MESH_ERR_WAYPOINT_TIMEOUT';

/** A failure of a meshctl command that talks to the Kubernetes API, with what to check. */
export class KubeCommandError extends Error {
  readonly code: KubeErrorCode;
  override name = 'KubeCommandError';

  constructor(code: KubeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Where the Gateway API CRDs come from; said in every error about their absence. */
export const GATEWAY_API_INSTALL =
  'install the Gateway API CRDs: kubectl apply -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.3.0/standard-install.yaml ' +
  '(on the local cluster: kubectl apply -f daemonset/chart/files/gateway-api-crds.yaml)';

export interface KubeconfigOptions {
  kubeconfig?: string;
  context?: string;
  /** The local cluster's state directory: its kubeconfig is the last resort. */
  stateDir: string;
  /**
   * Try the local cluster's kubeconfig before $KUBECONFIG and ~/.kube/config: for answers that
   * must come from the same cluster as what was read from the state directory's mesh.json.
   */
  preferLocal?: boolean;
}

/**
 * The kubeconfig kubectl would use (--kubeconfig, then $KUBECONFIG, then ~/.kube/config), and
 * when there is none, the local cluster's (`meshctl dev up` writes one into its state directory).
 */
export async function loadKubeConfig(o: KubeconfigOptions): Promise<k8s.KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  const file = kubeconfigPath(o);
  if (!file) {
    throw new KubeCommandError(
      'MESH_ERR_NO_KUBECONFIG',
      `no kubeconfig: pass --kubeconfig, set KUBECONFIG, or start the local cluster with \`meshctl dev up\` (looked in ~/.kube/config and ${o.stateDir})`,
    );
  }
  try {
    kc.loadFromFile(file);
  } catch (err) {
    throw new KubeCommandError('MESH_ERR_NO_KUBECONFIG', `cannot read kubeconfig ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (o.context) {
    if (!kc.getContextObject(o.context)) throw new KubeCommandError('MESH_ERR_NO_KUBECONFIG', `kubeconfig ${file} has no context "${o.context}" (it has: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'})`);
    kc.setCurrentContext(o.context);
  }
  return kc;
}

function kubeconfigPath(o: KubeconfigOptions): string | undefined {
  if (o.kubeconfig) return o.kubeconfig;
  const local = localKubeconfig(o.stateDir);
  if (o.preferLocal && local) return local;
  // KUBECONFIG may list several files; kubectl merges them, we take the first that exists.
  const fromEnv = (process.env.KUBECONFIG ?? '').split(':').filter(Boolean);
  if (fromEnv.length) return fromEnv.find((f) => existsSync(f)) ?? fromEnv[0];
  const home = join(homedir(), '.kube', 'config');
  if (existsSync(home)) return home;
  return local;
}

/** The local cluster's kubeconfig: the daemon's status names it; a cluster started in-process writes <state dir>/kubeconfig. */
function localKubeconfig(stateDir: string): string | undefined {
  try {
    const st = JSON.parse(readFileSync(statusPath(stateDir), 'utf8')) as DaemonStatus;
    if (st.kubeconfig && existsSync(st.kubeconfig)) return st.kubeconfig;
  } catch {
    // No daemon status: look for the file itself.
  }
  const file = join(stateDir, 'kubeconfig');
  return existsSync(file) ? file : undefined;
}

/** The namespace of the kubeconfig's current context, "default" when it names none (kubectl's rule). */
export function contextNamespace(kc: k8s.KubeConfig): string {
  return kc.getContextObject(kc.getCurrentContext())?.namespace || 'default';
}

/** The HTTP status of a client-node error, or undefined when the request got no answer. */
export function httpStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** The Status message the API server sent with an error, else the error's own message. */
export function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.trim() || (err as Error).message;
    }
  }
  const msg = (parsed as { message?: unknown } | undefined)?.message;
  if (typeof msg === 'string' && msg) return msg;
  const e = err as Error & { cause?: { code?: string } };
  return e.cause?.code ? `${e.message} (${e.cause.code})` : e.message;
}

/** Wraps an unexpected API failure: what was being done, where, and what the server said. */
export function apiError(what: string, kc: k8s.KubeConfig, err: unknown): KubeCommandError {
  if (err instanceof KubeCommandError) return err;
  const server = kc.getCurrentCluster()?.server ?? 'the API server';
  const status = httpStatus(err);
  const hint =
    status === undefined
      ? ` — is the cluster up and is ${server} reachable? (\`kubectl cluster-info\`)`
      : status === 401 || status === 403
        ? ' — check your kubeconfig\'s credentials and RBAC (`kubectl auth can-i`)'
        : '';
  return new KubeCommandError('MESH_ERR_KUBE_API', `${what} failed${status ? ` (HTTP ${status})` : ''}: ${apiMessage(err)}${hint}`, { cause: err });
}

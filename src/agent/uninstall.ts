// Uninstall or restart? When the agent gets SIGTERM it must decide whether to leave the datapath
// in place (a restart or an upgrade: the next agent adopts the pins, pods stay captured and fail
// closed meanwhile) or take it all out (`helm uninstall`: pods must keep working, unenrolled, with
// nothing of the mesh left on the node). Like istio-cni, which asks the API server about its own
// DaemonSet before it removes its CNI config, the agent asks about the node DaemonSet
// (MESH_NODE_DAEMONSET) with its pod's service-account token:
//   - present and not being deleted           → restart: keep everything;
//   - 404, or a deletionTimestamp              → uninstall;
//   - 401 (the account or its token is gone) or 403 (its Role is gone): only an uninstall removes
//     those, and helm removes them in the same breath as the DaemonSet → uninstall;
//   - no answer (API down, timeout)            → keep: fail closed; the operator removes the pins
//     (`rm -r /sys/fs/bpf/mesh` on the node) if that was an uninstall.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';

/** Where the kubelet puts the pod's service-account credentials (the chart mounts them there). */
export const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const TIMEOUT_MS = 3000;

export type ShutdownKind = { uninstall: true; why: string } | { uninstall: false; why: string };

/** Decides from the API server's answer about the DaemonSet (status and body). */
export function judge(status: number | undefined, body: string, daemonSet: string): ShutdownKind {
  if (status === 200) {
    let deleting = false;
    try {
      deleting = Boolean((JSON.parse(body) as { metadata?: { deletionTimestamp?: string } }).metadata?.deletionTimestamp);
    } catch {
      // not JSON: treat as present
    }
    return deleting ? { uninstall: true, why: `DaemonSet ${daemonSet} is being deleted` } : { uninstall: false, why: `DaemonSet ${daemonSet} is still there (a restart or an upgrade)` };
  }
  if (status === 404) return { uninstall: true, why: `DaemonSet ${daemonSet} is gone` };
  if (status === 401 || status === 403) return { uninstall: true, why: `the API server refused the node account (${status}): its ServiceAccount or Role was removed, as helm uninstall does` };
  return { uninstall: false, why: `could not tell (${status ?? 'no answer'}${body ? `: ${body.slice(0, 200)}` : ''}); keeping the datapath (fail closed)` };
}

/** Asks the API server (in-cluster credentials) about `namespace/name`. */
export function shutdownKind(namespace: string, name: string, env: NodeJS.ProcessEnv = process.env, saDir = SA_DIR): Promise<ShutdownKind> {
  const daemonSet = `${namespace}/${name}`;
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '443';
  let token: string;
  let ca: Buffer;
  try {
    token = readFileSync(`${saDir}/token`, 'utf8').trim();
    ca = readFileSync(`${saDir}/ca.crt`);
  } catch (e) {
    return Promise.resolve({ uninstall: false, why: `no service-account credentials in ${saDir} (${(e as Error).message}); keeping the datapath` });
  }
  if (!host) return Promise.resolve({ uninstall: false, why: 'KUBERNETES_SERVICE_HOST is not set; keeping the datapath' });
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${port}/apis/apps/v1/namespaces/${namespace}/daemonsets/${name}`;
  return new Promise((resolve) => {
    const req = request(url, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, ca, timeout: TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(judge(res.statusCode, body, daemonSet)));
      res.on('error', () => resolve(judge(undefined, '', daemonSet)));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (e) => resolve(judge(undefined, e.message, daemonSet)));
    req.end();
  });
}

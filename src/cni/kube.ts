// A minimal Kubernetes client for the CNI plugin: two GETs per mesh pod, over node:https with the
// kubeconfig the installer wrote. Not @kubernetes/client-node on purpose: the plugin is a fresh
// process per pod, and loading client-node costs more than the whole pass-through path.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import * as yaml from 'js-yaml';
import { CniError, CODES } from './protocol.ts';

export interface KubeTarget {
  server: string;
  ca?: Buffer;
  token?: string;
  tokenFile?: string;
  cert?: Buffer;
  key?: Buffer;
  insecure: boolean;
}

interface Kubeconfig {
  'current-context'?: string;
  contexts?: { name: string; context: { cluster: string; user: string } }[];
  clusters?: { name: string; cluster: Record<string, string | boolean> }[];
  users?: { name: string; user: Record<string, string> }[];
}

/** The current context's server and credentials. */
export function readKubeconfig(path: string): KubeTarget {
  let kc: Kubeconfig;
  try {
    kc = yaml.load(readFileSync(path, 'utf8')) as Kubeconfig;
  } catch (e) {
    throw new CniError(CODES.INVALID_CONFIG, `cannot read the kubeconfig ${path}: ${(e as Error).message} — the mesh CNI installer writes it; is it running on this node?`);
  }
  const ctx = kc.contexts?.find((c) => c.name === kc['current-context']) ?? kc.contexts?.[0];
  const cluster = kc.clusters?.find((c) => c.name === ctx?.context.cluster)?.cluster;
  const user = kc.users?.find((u) => u.name === ctx?.context.user)?.user ?? {};
  if (!cluster || typeof cluster['server'] !== 'string') throw new CniError(CODES.INVALID_CONFIG, `the kubeconfig ${path} names no cluster server`);
  const b64 = (v: unknown) => (typeof v === 'string' ? Buffer.from(v, 'base64') : undefined);
  const file = (v: unknown) => (typeof v === 'string' ? readFileSync(v) : undefined);
  const out: KubeTarget = { server: cluster['server'].replace(/\/$/, ''), insecure: cluster['insecure-skip-tls-verify'] === true };
  const ca = b64(cluster['certificate-authority-data']) ?? file(cluster['certificate-authority']);
  if (ca) out.ca = ca;
  if (user['token']) out.token = user['token'];
  if (user['tokenFile']) out.tokenFile = user['tokenFile'];
  const cert = b64(user['client-certificate-data']) ?? file(user['client-certificate']);
  const key = b64(user['client-key-data']) ?? file(user['client-key']);
  if (cert && key) Object.assign(out, { cert, key });
  return out;
}

/** GET `path` as JSON; undefined on 404. */
export function kubeGet<T>(target: KubeTarget, path: string, timeoutMs: number): Promise<T | undefined> {
  // A token file is re-read on each call: the installer rewrites it as the token rotates.
  const token = target.tokenFile ? readFileSync(target.tokenFile, 'utf8').trim() : target.token;
  return new Promise((resolve, reject) => {
    const req = request(
      `${target.server}${path}`,
      {
        method: 'GET',
        headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        ...(target.ca ? { ca: target.ca } : {}),
        ...(target.cert ? { cert: target.cert, key: target.key } : {}),
        rejectUnauthorized: !target.insecure,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          if (res.statusCode === 404) return resolve(undefined);
          if (res.statusCode !== 200) {
            const msg = (() => {
              try {
                return (JSON.parse(body) as { message?: string }).message ?? body;
              } catch {
                return body;
              }
            })();
            const hint = res.statusCode === 401 || res.statusCode === 403 ? " — check the CNI kubeconfig's token and the mesh-cni ClusterRole (get pods, namespaces)" : '';
            return reject(new CniError(CODES.KUBE_API, `GET ${path}: ${res.statusCode} ${msg}${hint}`));
          }
          try {
            resolve(JSON.parse(body) as T);
          } catch (e) {
            reject(new CniError(CODES.KUBE_API, `GET ${path}: not JSON: ${(e as Error).message}`));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) => reject(e instanceof CniError ? e : new CniError(CODES.KUBE_API, `GET ${target.server}${path}: ${e.message} — is the API server reachable from the node?`)));
    req.end();
  });
}

// What the CA needs from Kubernetes, as small interfaces: unit tests pass an in-memory fake, the
// controller passes kubeCaBackend() (or its informer caches, for the pod lookups).
import * as k8s from '@kubernetes/client-node';
import { logger } from '../../common/log.ts';
import { CaError } from './errors.ts';
import { installOwner } from '../owner.ts';

const log = logger('ca');

export interface SecretStore {
  /** The Secret's data, base64-decoded; undefined when it does not exist. */
  readSecret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** Creates the Secret; 'exists' when another writer was first (409), so the caller re-reads. */
  createSecret(namespace: string, name: string, data: Record<string, string>): Promise<'created' | 'exists'>;
}

export interface ConfigMapStore {
  readConfigMap(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** Creates the ConfigMap, or replaces its data and labels if it exists. */
  writeConfigMap(namespace: string, name: string, data: Record<string, string>, labels: Record<string, string>): Promise<void>;
}

export interface NamespaceSource {
  listNamespaces(): Promise<string[]>;
  /** Calls `onAdded` for each namespace created from now on; returns a function that stops. */
  watchNamespaces(onAdded: (namespace: string) => void): () => void;
}

/** The outcome of a TokenReview (authentication.k8s.io/v1), as the API server reports it. */
export interface TokenReviewResult {
  authenticated: boolean;
  error?: string;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
}

export interface TokenReviewer {
  reviewToken(token: string, audiences?: readonly string[]): Promise<TokenReviewResult>;
}

export interface PodInfo {
  namespace: string;
  name: string;
  uid: string;
  nodeName: string | undefined;
  serviceAccountName: string;
  phase: string | undefined;
}

export interface PodLookup {
  getPod(namespace: string, name: string): Promise<PodInfo | undefined>;
  /** Pods scheduled on `nodeName` (any namespace). */
  podsOnNode(nodeName: string): Promise<PodInfo[]>;
}

export type CaKube = SecretStore & ConfigMapStore & NamespaceSource & TokenReviewer & PodLookup;

export function podInfo(p: k8s.V1Pod): PodInfo {
  return {
    namespace: p.metadata?.namespace ?? '',
    name: p.metadata?.name ?? '',
    uid: p.metadata?.uid ?? '',
    nodeName: p.spec?.nodeName || undefined,
    serviceAccountName: p.spec?.serviceAccountName || 'default',
    phase: p.status?.phase,
  };
}

function statusOf(e: unknown): number | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'number' ? e.code : undefined;
}

function kubeError(what: string, e: unknown): CaError {
  const code = statusOf(e);
  const hint = code === 403 ? ' — does the controller\'s ClusterRole allow it?' : '';
  return new CaError('MESH_ERR_CA_KUBE', `${what} failed${code ? ` (HTTP ${code})` : ''}: ${(e as Error)?.message ?? String(e)}${hint}`, e);
}

const decode = (d: Record<string, string> | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(d ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

/** CaKube over the Kubernetes API with @kubernetes/client-node 2.x. */
export function kubeCaBackend(kc: k8s.KubeConfig): CaKube {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const authn = kc.makeApiClient(k8s.AuthenticationV1Api);
  return {
    async readSecret(namespace, name) {
      try {
        return decode((await core.readNamespacedSecret({ name, namespace })).data);
      } catch (e) {
        if (statusOf(e) === 404) return undefined;
        throw kubeError(`reading Secret ${namespace}/${name}`, e);
      }
    },
    async createSecret(namespace, name, data) {
      try {
        await core.createNamespacedSecret({
          namespace,
          body: { metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'mesh' }, ...installOwner() }, type: 'Opaque', stringData: data },
        });
        return 'created';
      } catch (e) {
        if (statusOf(e) === 409) return 'exists';
        throw kubeError(`creating Secret ${namespace}/${name}`, e);
      }
    },
    async readConfigMap(namespace, name) {
      try {
        return (await core.readNamespacedConfigMap({ name, namespace })).data ?? {};
      } catch (e) {
        if (statusOf(e) === 404) return undefined;
        throw kubeError(`reading ConfigMap ${namespace}/${name}`, e);
      }
    },
    async writeConfigMap(namespace, name, data, labels) {
      const body: k8s.V1ConfigMap = { metadata: { name, namespace, labels, ...installOwner() }, data };
      try {
        await core.replaceNamespacedConfigMap({ name, namespace, body });
      } catch (e) {
        if (statusOf(e) !== 404) throw kubeError(`writing ConfigMap ${namespace}/${name}`, e);
        try {
          await core.createNamespacedConfigMap({ namespace, body });
        } catch (e2) {
          if (statusOf(e2) === 409) return this.writeConfigMap(namespace, name, data, labels);
          throw kubeError(`creating ConfigMap ${namespace}/${name}`, e2);
        }
      }
    },
    async listNamespaces() {
      try {
        return (await core.listNamespace()).items.map((n) => n.metadata?.name ?? '').filter(Boolean);
      } catch (e) {
        throw kubeError('listing namespaces', e);
      }
    },
    watchNamespaces(onAdded) {
      // client-node's informer stops for good on any error but 410 (REFERENCE.md): restart it.
      let stopped = false;
      const informer = k8s.makeInformer(kc, '/api/v1/namespaces', () => core.listNamespace());
      informer.on('add', (ns) => ns.metadata?.name && onAdded(ns.metadata.name));
      informer.on('error', (err) => {
        if (stopped) return;
        log.warn({ err: (err as Error)?.message ?? String(err) }, 'namespace watch failed; restarting in 5 s');
        setTimeout(() => void (!stopped && informer.start().catch(() => undefined)), 5000).unref();
      });
      void informer.start().catch((err) => log.warn({ err: (err as Error).message }, 'namespace watch did not start'));
      return () => {
        stopped = true;
        void informer.stop();
      };
    },
    async reviewToken(token, audiences) {
      try {
        const r = await authn.createTokenReview({
          body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, ...(audiences?.length ? { audiences: [...audiences] } : {}) } },
        });
        const s = r.status ?? {};
        return { authenticated: s.authenticated === true, error: s.error, user: s.user, audiences: s.audiences };
      } catch (e) {
        throw kubeError('TokenReview', e);
      }
    },
    async getPod(namespace, name) {
      try {
        return podInfo(await core.readNamespacedPod({ name, namespace }));
      } catch (e) {
        if (statusOf(e) === 404) return undefined;
        throw kubeError(`reading Pod ${namespace}/${name}`, e);
      }
    },
    async podsOnNode(nodeName) {
      try {
        return (await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${nodeName}` })).items.map(podInfo);
      } catch (e) {
        throw kubeError(`listing pods on node ${nodeName}`, e);
      }
    },
  };
}

// Puts the trust bundle in every namespace as ConfigMap mesh-ca-root-cert (key root-cert.pem), as
// istiod does with istio-ca-root-cert: workloads and nodes mount it to verify peers and the CA.
// New namespaces get it when they appear; a periodic pass repairs edited or deleted copies.
import { logger } from '../../common/log.ts';
import { joinPem } from '../../tls/index.ts';
import type { ConfigMapStore, NamespaceSource } from './kube.ts';

const log = logger('ca');

export const ROOT_CONFIGMAP = 'mesh-ca-root-cert';
export const ROOT_CONFIGMAP_KEY = 'root-cert.pem';
export const ROOT_CONFIGMAP_LABELS = Object.freeze({ 'mesh.io/ca-root': 'true', 'app.kubernetes.io/managed-by': 'mesh' });

export interface PublisherOptions {
  readonly configMapName?: string;
  /** How often every namespace is checked again (default 5 min; 0 turns it off). */
  readonly resyncMs?: number;
}

export class RootCertPublisher {
  private readonly kube: ConfigMapStore & NamespaceSource;
  private readonly name: string;
  private readonly resyncMs: number;
  private bundle: string;
  private stopWatch: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(kube: ConfigMapStore & NamespaceSource, roots: readonly string[], opts: PublisherOptions = {}) {
    this.kube = kube;
    this.bundle = joinPem(roots);
    this.name = opts.configMapName ?? ROOT_CONFIGMAP;
    this.resyncMs = opts.resyncMs ?? 300_000;
  }

  /** Publishes to every namespace, then follows new ones. */
  async start(): Promise<void> {
    this.stopWatch = this.kube.watchNamespaces((ns) => void this.publishTo(ns).catch((e) => this.failed(ns, e)));
    await this.publishAll();
    if (this.resyncMs > 0) {
      this.timer = setInterval(() => void this.publishAll().catch((e) => log.warn({ err: (e as Error).message }, 'root bundle resync failed')), this.resyncMs);
      this.timer.unref();
    }
  }

  stop(): void {
    this.stopWatch?.();
    this.stopWatch = undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A new trust bundle (a root added or retired): rewrite every copy. */
  async update(roots: readonly string[]): Promise<void> {
    this.bundle = joinPem(roots);
    await this.publishAll();
  }

  async publishAll(): Promise<void> {
    const namespaces = await this.kube.listNamespaces();
    const results = await Promise.allSettled(namespaces.map((ns) => this.publishTo(ns)));
    results.forEach((r, i) => r.status === 'rejected' && this.failed(namespaces[i]!, r.reason));
  }

  /** Writes the ConfigMap in `namespace` unless it already holds the current bundle. */
  async publishTo(namespace: string): Promise<void> {
    const current = await this.kube.readConfigMap(namespace, this.name);
    if (current?.[ROOT_CONFIGMAP_KEY] === this.bundle) return;
    await this.kube.writeConfigMap(namespace, this.name, { [ROOT_CONFIGMAP_KEY]: this.bundle }, { ...ROOT_CONFIGMAP_LABELS });
    log.debug({ namespace }, 'published the root bundle');
  }

  private failed(namespace: string, e: unknown): void {
    log.warn({ namespace, configMap: this.name, err: (e as Error)?.message ?? String(e) }, 'could not publish the root bundle');
  }
}

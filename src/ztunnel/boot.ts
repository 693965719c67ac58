// What a (re)started ztunnel sets going before the rest of its modules load (main.ts imports
// ztunnel.ts only after this has begun): the node certificate's request to the CA, the ZDS
// connection to the agent, and the certificate of each pod the agent names. Module loading is
// most of a restart's CPU (ARCHITECTURE.md, "Crash"); the CA's work — TokenReview, node check,
// signature — and the network round trips overlap it instead of following it.
//
// Only this module's imports (the identity client: grpc-js, the CA contract, key and CSR) come
// before. Nothing here serves traffic: the pods' listeners and the config stream are ztunnel.ts's,
// and outbound still waits for the config (fail closed). ZDS messages that arrive before ztunnel
// takes them (adopt) wait in order; their acknowledgements wait for ztunnel's handling.
import { logger } from '../common/log.ts';
import {
  CertificateClient,
  formatSpiffeId,
  RotatingCertificates,
  SecretManager,
  type SpiffeId,
  spiffeId,
  type WorkloadCertificate,
} from '../identity/index.ts';
import type { ZdsPod } from '../zds/protocol.ts';
import type { ZtunnelConfig } from './context.ts';
import { type ZdsHandlers, ZdsClient } from './zds-client.ts';

const log = logger('ztunnel');

type Queued = { type: 'snapshot'; pods: ZdsPod[] } | { type: 'add'; pod: ZdsPod; done: Deferred } | { type: 'del'; uid: string; done: Deferred };
interface Deferred {
  resolve(): void;
  reject(e: Error): void;
}

export class ZtunnelBoot {
  readonly cfg: ZtunnelConfig;
  readonly secrets: SecretManager;
  readonly ca: CertificateClient;
  /** The CA client trusts the mounted bundle plus the roots the CA hands out as they rotate. */
  readonly caRoots: RotatingCertificates;
  readonly zds: ZdsClient;
  readonly ownIdentity: SpiffeId;
  /** The node certificate, requested at once (the config stream presents it). */
  readonly own: Promise<WorkloadCertificate>;
  private markSent!: () => void;
  private readonly sent = new Promise<void>((resolve) => (this.markSent = resolve));
  private handlers: ZdsHandlers | undefined;
  private readonly queue: Queued[] = [];
  /** Identities fetched ahead for pods in the queue. */
  private readonly ahead = new Map<string, SpiffeId>();

  private constructor(cfg: ZtunnelConfig) {
    this.cfg = cfg;
    const own = spiffeId(cfg.trustDomain, cfg.namespace, cfg.serviceAccount);
    const ownKey = formatSpiffeId(own);
    this.secrets = new SecretManager({ provider: { fetch: (id) => this.ca.fetch(id, formatSpiffeId(id) === ownKey ? { onSent: () => this.markSent() } : {}) } });
    this.caRoots = new RotatingCertificates(this.secrets, undefined, cfg.caRoots);
    // Connects now: the TLS handshake with the CA overlaps the key and CSR.
    this.ca = new CertificateClient({ address: cfg.caAddress, credentials: this.caRoots.channelCredentials(), serverName: cfg.serverName, token: cfg.token });
    this.ownIdentity = own;
    this.own = this.secrets.fetchCertificate(this.ownIdentity);
    // A failure is the caller's (Ztunnel.start awaits it); the manager retries meanwhile.
    this.own.catch(() => undefined);
    this.zds = new ZdsClient(cfg.zdsSocket, {
      snapshot: (pods) => (this.handlers ? this.handlers.snapshot(pods) : this.hold({ type: 'snapshot', pods })),
      add: (pod) => (this.handlers ? this.handlers.add(pod) : new Promise<void>((resolve, reject) => this.hold({ type: 'add', pod, done: { resolve, reject } }))),
      del: (uid) => (this.handlers ? this.handlers.del(uid) : new Promise<void>((resolve, reject) => this.hold({ type: 'del', uid, done: { resolve, reject } }))),
    });
  }

  static start(cfg: ZtunnelConfig): ZtunnelBoot {
    const b = new ZtunnelBoot(cfg);
    b.zds.start();
    log.info({ uptimeMs: Math.round(process.uptime() * 1000) }, 'requesting the node certificate');
    return b;
  }

  /**
   * Resolves once the node certificate's request has left for the CA (the channel connected and
   * the call made), or after `maxMs`, or when it failed. main.ts waits for this before it loads
   * the proxy's modules: loading blocks the event loop for tens of ms, and the TLS handshake
   * with the CA, the key and the CSR each need turns of it — the request would otherwise leave
   * only once loading is over, and the CA's work would follow it instead of overlapping it.
   */
  async requestSent(maxMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const sent = Promise.all([this.sent, this.ca.connected(maxMs)]);
    await Promise.race([sent, this.own.then(() => undefined, () => undefined), new Promise<void>((r) => (timer = setTimeout(r, maxMs)))]);
    clearTimeout(timer);
    // One more turn: the request's frames reach the socket.
    await new Promise((r) => setImmediate(r));
  }

  /** The identity ztunnel.ts will ask for a pod that came with who it is (a provisional workload). */
  private identityOfPod(p: ZdsPod): SpiffeId | undefined {
    return p.workload ? spiffeId(this.cfg.trustDomain, p.workload.namespace, p.workload.serviceAccount || 'default') : undefined;
  }

  private hold(m: Queued): void {
    this.queue.push(m);
    const pods = m.type === 'snapshot' ? m.pods : m.type === 'add' ? [m.pod] : [];
    for (const p of pods) {
      const id = this.identityOfPod(p);
      if (!id || this.ahead.has(formatSpiffeId(id))) continue;
      this.ahead.set(formatSpiffeId(id), id);
      // Awaited by the pod's addPod, which asks the manager for the same identity.
      this.secrets.fetchCertificate(id).catch(() => undefined);
    }
  }

  /** ztunnel takes the ZDS messages from here on: those that waited are handled first, in order. */
  adopt(handlers: ZdsHandlers): void {
    const wanted = new Set<string>();
    for (const m of this.queue) {
      if (m.type === 'snapshot') {
        wanted.clear();
        for (const p of m.pods) wanted.add(p.uid);
        handlers.snapshot(m.pods);
      } else if (m.type === 'add') {
        wanted.add(m.pod.uid);
        handlers.add(m.pod).then(m.done.resolve, m.done.reject);
      } else {
        wanted.delete(m.uid);
        handlers.del(m.uid).then(m.done.resolve, m.done.reject);
      }
    }
    // A pod removed before ztunnel took over: its identity is not renewed for nothing.
    const kept = new Set<string>();
    for (const m of this.queue) {
      const pods = m.type === 'snapshot' ? m.pods : m.type === 'add' ? [m.pod] : [];
      for (const p of pods) {
        const id = wanted.has(p.uid) ? this.identityOfPod(p) : undefined;
        if (id) kept.add(formatSpiffeId(id));
      }
    }
    for (const [key, id] of this.ahead) if (!kept.has(key) && key !== formatSpiffeId(this.ownIdentity)) this.secrets.forget(id);
    this.queue.length = 0;
    this.ahead.clear();
    this.handlers = handlers;
  }
}

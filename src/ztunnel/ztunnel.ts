// ztunnel: the node's L4 proxy, and its composition root (istio/ztunnel's app). It learns the
// enrolled pods of its node from the agent (ZDS), opens listeners inside each, and hands their
// connections to the proxy paths: outbound.ts (over HBONE when the destination is in the mesh,
// plain TCP otherwise), inbound.ts (HBONE terminated, admitted, delivered to the app) and
// inbound-passthrough.ts (plaintext from outside the mesh), which share the connection manager.
// Here: the pods, their certificates as they renew, the config stream, admin views.
import net from 'node:net';
import { logger } from '../common/log.ts';
import { ZtunnelMaps } from '../datapath/index.ts';
import { HbonePool, HboneServer } from '../hbone/index.ts';
import { type CertificateClient, formatSpiffeId, parseSpiffeId, RotatingCertificates, type SecretManager, type SpiffeId, spiffeId, type WorkloadCertificate } from '../identity/index.ts';
import { type MeshTypes, MeshState } from '../state/index.ts';
import type { MtlsCredentials } from '../tls/index.ts';
import { AUTHORIZATION, ConfigClient, SERVICE, WORKLOAD, type Workload } from '../xds/index.ts';
import type { ZdsPod } from '../zds/protocol.ts';
import type { ConfigDump, Readiness } from '../admin/index.ts';
import { ConnectionManager } from './connection-manager.ts';
import { Drain, type DrainOutcome } from './drain.ts';
import type { InboundPolicy, ProxyContext, ZtunnelConfig } from './context.ts';
import { inboundHbone } from './inbound.ts';
import { plaintextInbound } from './inbound-passthrough.ts';
import { outbound } from './outbound.ts';
import { PodProxy } from './pod.ts';
import { AccessLog, Telemetry } from './telemetry/index.ts';
import type { ZtunnelBoot } from './boot.ts';
import type { ZdsClient } from './zds-client.ts';

export type { InboundPolicy, ZtunnelConfig } from './context.ts';

/** How long a new ztunnel taking over a pod waits for its config before it opens the pod's listeners anyway. */
const HANDOVER_SYNC_WAIT_MS = 30_000;

const log = logger('ztunnel');

export class Ztunnel {
  readonly state = new MeshState();
  readonly telemetry = new Telemetry({ accessLog: new AccessLog() });
  private readonly connections = new ConnectionManager();
  private readonly cfg: ZtunnelConfig;
  private readonly maps: ZtunnelMaps;
  private readonly secrets: SecretManager;
  private readonly ca: CertificateClient;
  private readonly caRoots: RotatingCertificates;
  private own: RotatingCertificates | undefined;
  private readonly policy: InboundPolicy;
  private config: ConfigClient<MeshTypes> | undefined;
  private readonly pods = new Map<string, { proxy: PodProxy; pool: HbonePool; hbone: HboneServer; identity: SpiffeId; serial: string }>();
  /** ztunnel's own (node) identity: renewed for as long as it runs. */
  private ownIdentity: SpiffeId | undefined;
  private readonly zds: ZdsClient;
  private readonly ctx: ProxyContext;
  /** The pods the agent asked this ztunnel to serve: ready only once each is served. */
  private readonly wanted = new Set<string>();
  private readonly drainer: Drain;
  private markSynced!: () => void;
  private readonly synced = new Promise<void>((resolve) => (this.markSynced = resolve));

  private constructor(boot: ZtunnelBoot, policy: InboundPolicy) {
    const cfg = boot.cfg;
    this.cfg = cfg;
    this.policy = policy;
    this.maps = new ZtunnelMaps(cfg.bpffsDir);
    // The CA client, its certificates and the ZDS connection began before this module loaded (boot.ts).
    this.secrets = boot.secrets;
    this.caRoots = boot.caRoots;
    this.ca = boot.ca;
    this.drainer = new Drain(this.connections, this.telemetry.metrics.registry);
    this.zds = boot.zds;
    this.telemetry.onClose = (r) => this.zds.report(r);
    this.ctx = {
      cfg,
      state: this.state,
      telemetry: this.telemetry,
      secrets: this.secrets,
      maps: this.maps,
      connections: this.connections,
      policy,
      configSynced: () => this.config?.isReady() ?? false,
      whenSynced: (ms) => {
        if (this.config?.isReady()) return Promise.resolve(true);
        let timer: NodeJS.Timeout | undefined;
        return Promise.race([
          this.synced.then(() => true),
          new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
        ]).finally(() => clearTimeout(timer));
      },
      workloadOf: (pod) => this.state.workloadByPodUid(pod.uid) ?? pod.provisional,
      identityOf: (w) => this.identityOf(w),
    };
    // Every pod's HBONE server presents its workload's current certificate: renewed at half-life
    // (and a new trust bundle) reach the next handshake, not only the next restart.
    this.secrets.on('certificate', (identity, cert) => this.renewed(formatSpiffeId(identity), cert));
    this.secrets.on('trustBundle', () => {
      // Once per identity, not per pod: each update builds a new TLS context for each of its pods.
      for (const id of new Set([...this.pods.values()].map((p) => formatSpiffeId(p.identity)))) {
        const cert = this.secrets.cached(parseSpiffeId(id));
        if (cert) this.renewed(id, cert);
      }
    });
    // Last: the handlers use everything above, and the pods that waited are handled at once.
    boot.adopt({
      snapshot: (pods) => {
        const keep = new Set(pods.map((p) => p.uid));
        this.wanted.clear();
        for (const uid of keep) this.wanted.add(uid);
        for (const uid of this.pods.keys()) if (!keep.has(uid)) void this.removePod(uid);
      },
      add: (p) => {
        this.wanted.add(p.uid);
        return this.addPod(p);
      },
      del: (uid) => {
        this.wanted.delete(uid);
        return this.removePod(uid);
      },
    });
  }

  /** What a pod's HBONE server presents and trusts: its current certificate, and the CA's current
   * bundle (a root the CA retired stops being trusted), else the one that came with it. */
  private hboneCredentials(cert: WorkloadCertificate): MtlsCredentials {
    const bundle = this.secrets.trustBundle;
    return { key: cert.key, certChain: cert.certChain, roots: bundle.length ? bundle : cert.roots };
  }

  private renewed(identity: string, cert: WorkloadCertificate): void {
    let pods = 0;
    for (const p of this.pods.values()) {
      if (formatSpiffeId(p.identity) !== identity || p.serial === cert.leaf.serial) continue;
      p.hbone.updateCredentials(this.hboneCredentials(cert));
      p.serial = cert.leaf.serial;
      pods++;
    }
    if (pods) log.info({ identity, serial: cert.leaf.serial, notAfter: cert.leaf.notAfter, pods }, 'serving a renewed certificate');
  }

  /**
   * Takes over what `boot` began (ZtunnelBoot.start: the node certificate, ZDS, the pods'
   * certificates) and serves: the pods first — the agent tells who each pod is (ZDS), so their
   * listeners open while the config stream is still connecting; after a restart, capture is
   * served again sooner — and the config stream once the node certificate is in.
   */
  static async start(boot: ZtunnelBoot, policy: InboundPolicy): Promise<Ztunnel> {
    const cfg = boot.cfg;
    const z = new Ztunnel(boot, policy);
    const ownId = boot.ownIdentity;
    z.ownIdentity = ownId;
    // The node certificate, renewed at half-life like any other: the config stream presents the
    // current one on every (re)connect. The stream starts before the certificate is in: its
    // channel resolves and connects, and its TLS handshake waits for the certificate (grpc-js's
    // certificate-provider credentials).
    z.own = new RotatingCertificates(z.secrets, ownId, cfg.caRoots);
    z.config = new ConfigClient<MeshTypes>({
      address: cfg.xdsAddress,
      credentials: z.own.channelCredentials(),
      node: { id: `ztunnel~${cfg.nodeName}`, name: cfg.nodeName, cluster: '' },
      types: [WORKLOAD, SERVICE, AUTHORIZATION],
      channelOptions: { 'grpc.ssl_target_name_override': cfg.serverName },
    });
    const apply = (type: keyof MeshTypes) => {
      z.state.replace(type, [...z.config!.entries(type)].map(([k, e]) => [k, e.value] as [string, never]), z.config!.isReady(type));
      // Services too: a waypoint is judged by its Service and endpoints.
      z.connections.recheck();
    };
    z.config.on('change', (ev: { type: string }) => apply(ev.type as keyof MeshTypes));
    // 'ready' follows the response that completed a type (which may have changed nothing: no
    // policies at all); only then is the type complete in the state.
    z.config.on('ready', (type: string) => apply(type as keyof MeshTypes));
    z.config.start();
    await boot.own;
    log.info({ uptimeMs: Math.round(process.uptime() * 1000) }, 'node certificate');
    await z.config.ready(30_000);
    for (const t of [WORKLOAD, SERVICE, AUTHORIZATION] as const) z.state.replace(t, [...z.config.entries(t)].map(([k, e]) => [k, e.value] as [string, never]), z.config.isReady(t));
    z.markSynced();
    log.info({ node: cfg.nodeName }, 'ztunnel ready');
    return z;
  }

  /** Per Workload object (replaced, never mutated, when it changes): spiffeId() validates each
   * part with regular expressions, ~1% of ztunnel's time under connection churn (issue 16). */
  private readonly identities = new WeakMap<Workload, SpiffeId>();

  private identityOf(w: Workload): SpiffeId {
    let id = this.identities.get(w);
    if (!id) this.identities.set(w, (id = spiffeId(w.trustDomain || this.cfg.trustDomain, w.namespace, w.serviceAccount || 'default')));
    return id;
  }

  private async addPod(p: ZdsPod): Promise<void> {
    log.debug({ uid: p.uid, netns: p.netnsPath }, 'ZDS add');
    const existing = this.pods.get(p.uid);
    if (existing && existing.proxy.netnsCookie === BigInt(p.netnsCookie)) {
      existing.proxy.transparent = (p.transparent ?? false) && this.maps.canDeliverFromClient;
      return;
    }
    if (!p.netnsPath) throw new Error(`the agent has not located pod ${p.uid}'s network namespace yet; it sends the pod again once it has`);
    if (existing) await this.removePod(p.uid);
    // The workload may reach us over the config stream a moment after the agent enrolled it; a
    // pod enrolled at sandbox creation comes with who it is, and is served at once.
    let w = this.state.workloadByPodUid(p.uid) ?? (p.workload ? this.provisional(p) : undefined);
    for (let i = 0; !w && i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      w = this.state.workloadByPodUid(p.uid);
    }
    if (!w) throw new Error(`pod ${p.uid} is not among the workloads the controller sent`);
    const identity = this.identityOf(w);
    log.debug({ uid: p.uid, identity: formatSpiffeId(identity) }, 'fetching the workload certificate');
    const cert = await this.secrets.fetchCertificate(identity);
    log.debug({ uid: p.uid }, 'opening listeners in the pod');
    const proxy = new PodProxy({ uid: p.uid, netnsPath: p.netnsPath, netnsCookie: BigInt(p.netnsCookie), addresses: p.addresses, maps: this.maps, mark: this.cfg.mark, provisional: this.state.workloadByPodUid(p.uid) ? undefined : w, transparent: p.transparent });
    const hbone = new HboneServer({
      credentials: this.hboneCredentials(cert),
      trustDomains: [this.cfg.trustDomain],
      handler: (t) => {
        // Held from the CONNECT on: a drain waits for the tunnel; its deadline resets it.
        this.connections.hold(t.stream, () => t.abort());
        return inboundHbone(this.ctx, proxy, t);
      },
    });
    const pool = new HbonePool({ connectFromNetns: (dst) => proxy.dialSocket(net.isIPv6(dst.host) ? 6 : 4) });
    const held = (c: net.Socket) => this.connections.hold(c, () => c.resetAndDestroy());
    // A handover: another ztunnel serves this pod now, and goes on serving it until this one is
    // ready. The outbound listener shares its port (SO_REUSEPORT), so once open it takes a share
    // of the pod's new connections — open it only when the config has synced, or each of those
    // waits for the config (seconds, on a loaded node, past a client's timeout). After a crash
    // nothing serves the pod: open at once, and hold what arrives until the config does.
    if (this.maps.socketRegistered(BigInt(p.netnsCookie), 'inbound') && !this.ctx.configSynced()) {
      log.debug({ uid: p.uid }, 'another ztunnel serves the pod: opening its listeners once the config has synced');
      await this.ctx.whenSynced(HANDOVER_SYNC_WAIT_MS);
    }
    await proxy.open(
      {
        outbound: (pod, c) => {
          held(c);
          void outbound(this.ctx, pod, c, pool);
        },
        plaintextInbound: (pod, c) => {
          held(c);
          void plaintextInbound(this.ctx, pod, c);
        },
      },
      hbone,
    );
    // Stopped while the listeners opened: a newer ztunnel serves this pod.
    if (this.drainer.draining) proxy.stopAccepting();
    this.pods.set(p.uid, { proxy, pool, hbone, identity, serial: cert.leaf.serial });
    // A renewal that landed while the listeners were opening reached no HBONE server: catch up.
    const latest = this.secrets.cached(identity);
    if (latest && latest.leaf.serial !== cert.leaf.serial) this.renewed(formatSpiffeId(identity), latest);
    log.info({ pod: `${w.namespace}/${w.name}`, identity: formatSpiffeId(identity) }, 'serving pod');
  }

  /** The pod as ZDS describes it, until the config stream brings its Workload. */
  private provisional(p: ZdsPod): Workload {
    const i = p.workload!;
    return {
      uid: '', name: i.name, namespace: i.namespace, addresses: [], hostname: '', network: '', trustDomain: this.cfg.trustDomain,
      serviceAccount: i.serviceAccount, node: this.cfg.nodeName, tunnelProtocol: 'HBONE', waypoint: null, canonicalName: i.name,
      canonicalRevision: '', workloadType: 'POD', workloadName: i.name, status: 'HEALTHY', services: {}, authorizationPolicies: [], clusterId: '', podUid: p.uid,
    };
  }

  private async removePod(uid: string): Promise<void> {
    const entry = this.pods.get(uid);
    if (!entry) return;
    this.pods.delete(uid);
    // The identity's last pod left the node: stop renewing it (the CA would refuse it anyway).
    const id = formatSpiffeId(entry.identity);
    const own = this.ownIdentity && formatSpiffeId(this.ownIdentity) === id;
    if (!own && ![...this.pods.values()].some((p) => formatSpiffeId(p.identity) === id)) this.secrets.forget(entry.identity);
    void entry.pool.close(1000);
    await entry.proxy.close();
  }

  /** For /config_dump: what this ztunnel knows and serves. */
  configDump(): ConfigDump {
    return {
      workloads: [...this.state.workloads.values()],
      services: [...this.state.services.values()],
      policies: [...this.state.authorizations.values()],
      certificates: this.secrets.status(),
      connections: this.connections.list(),
      drain: this.drainer.status(),
      pods: [...this.pods.values()].map((p) => ({ uid: p.proxy.uid, netns: p.proxy.netnsPath, addresses: p.proxy.addresses })),
    };
  }

  /** Resolves once every pod the agent named is served, or after `timeoutMs`. */
  async podsServed(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until && [...this.wanted].some((uid) => !this.pods.has(uid))) await new Promise((r) => setTimeout(r, 5));
  }

  readiness(): Readiness {
    if (this.drainer.draining) return { ready: false, reason: `draining (${this.connections.open} connections left)` };
    if (!this.config?.isReady()) return { ready: false, reason: 'the config stream has not synced' };
    if (!this.zds.connected) return { ready: false, reason: 'not connected to the node agent (ZDS)' };
    // A rollout stops the old ztunnel once the new one is ready: only when the new one has taken
    // every pod over (its sockets in the sockmap, its listeners open).
    const waiting = [...this.wanted].filter((uid) => !this.pods.has(uid)).length;
    if (waiting) return { ready: false, reason: `opening listeners in ${waiting} of ${this.wanted.size} pods` };
    return { ready: true };
  }

  /**
   * Handover: a newer ztunnel has taken this node's pods over (SIGTERM, as a DaemonSet rollout or
   * `meshctl dev rollout ztunnel` sends it once the new one is ready). Stops accepting in every
   * pod and serves the established connections until they end, or until `timeoutMs` (0: no
   * limit) passes and the rest are reset. Then close() and exit.
   */
  drain(timeoutMs: number): Promise<DrainOutcome> {
    if (!this.drainer.draining) {
      this.zds.ignorePods();
      for (const p of this.pods.values()) p.proxy.stopAccepting();
    }
    return this.drainer.run(timeoutMs);
  }

  async close(): Promise<void> {
    this.zds.close();
    for (const uid of [...this.pods.keys()]) await this.removePod(uid);
    await this.config?.close();
    this.own?.close();
    this.caRoots.close();
    this.secrets.close();
    this.ca.close();
    this.maps.close();
    await this.telemetry.accessLog?.flush(); // the access log is buffered (see AccessLog)
  }
}

// ztunnel: the node's L4 proxy. It learns the enrolled pods of its node from the agent (ZDS),
// opens listeners inside each, and carries their traffic: outbound over HBONE (HTTP/2 CONNECT
// over mutual TLS with the source workload's certificate) when the destination is in the mesh,
// plain TCP otherwise; inbound HBONE terminated, authorized (L4) and delivered to the app.
import net from 'node:net';
import { createInterface } from 'node:readline';
import { HBONE_PORT, ZTUNNEL_PORTS } from '../common/constants.ts';
import { logger } from '../common/log.ts';
import { ZtunnelMaps } from '../datapath/index.ts';
import { CertificateClient, formatSpiffeId, parseSpiffeId as spiffeIdOf, RotatingCertificates, SecretManager, type SpiffeId, spiffeId, type WorkloadCertificate } from '../identity/index.ts';
import type { MtlsCredentials } from '../tls/index.ts';
import { AUTHORIZATION, ConfigClient, SERVICE, WORKLOAD, type Workload } from '../xds/index.ts';
import type { ZdsAck, ZdsMessage, ZdsPod, ZdsReport } from '../zds/protocol.ts';
import { HboneDeniedError, HbonePool, HboneServer, type HboneTunnel, splice } from './hbone/index.ts';
import { PodProxy } from './pod.ts';
import type { ConfigDump, Readiness } from './admin/index.ts';
import { AccessLog, type ConnectionRecord, formatAddr, Telemetry, type TrackedConnection } from './telemetry/index.ts';
import { type Destination, type MeshTypes, MeshState } from './state.ts';

const log = logger('ztunnel');
/** Flow records wait in the ZDS socket's buffer up to this much; beyond it they are counted lost. */
const FLOW_BACKLOG_BYTES = 4 << 20;
/** How long ztunnel waits for the application to accept a connection it delivers. */
const DELIVERY_TIMEOUT_MS = 10_000;

export interface ZtunnelConfig {
  nodeName: string;
  xdsAddress: string;
  caAddress: string;
  serverName: string;
  trustDomain: string;
  caRoots: string;
  token: () => string | Promise<string>;
  bpffsDir: string;
  zdsSocket: string;
  /** SO_MARK on every socket ztunnel opens in a pod (listeners, dials, HBONE outer connections,
   * deliveries from 127.0.0.6): the mark the datapath was loaded with (MESH_MARK), or the capture
   * programs would take ztunnel's own connections for the app's. */
  mark: number;
  /** ztunnel's own identity on the config stream (the node DaemonSet's). */
  namespace: string;
  serviceAccount: string;
}

/** Decides an inbound connection at the destination: undefined allows, a string is the reason to deny. */
export type InboundPolicy = (conn: { srcIp: string; srcIdentity: SpiffeId | undefined; dst: Workload; dstIp: string; dstPort: number }, state: MeshState) => string | undefined;

function strip(a: string | undefined): string {
  return (a ?? '').replace(/^::ffff:/, '');
}

export class Ztunnel {
  readonly state = new MeshState();
  readonly telemetry = new Telemetry({ accessLog: new AccessLog() });
  private readonly live = new Set<{ direction: string; src: string; dst: string; pod: string; since: string }>();
  // Inbound connections with what authorized them, re-checked whenever policies or workloads change.
  private readonly authorized = new Map<object, { recheck: () => string | undefined; kill: (reason: string) => void }>();
  private zdsConnected = false;
  private flowsLost = 0;
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
  private zds: net.Socket | undefined;
  private closed = false;

  private constructor(cfg: ZtunnelConfig, policy: InboundPolicy) {
    this.cfg = cfg;
    this.policy = policy;
    this.maps = new ZtunnelMaps(cfg.bpffsDir);
    // The CA client trusts the mounted bundle plus the roots the CA hands out as they rotate.
    this.secrets = new SecretManager({ provider: { fetch: (id) => this.ca.fetch(id) } });
    this.caRoots = new RotatingCertificates(this.secrets, undefined, cfg.caRoots);
    this.ca = new CertificateClient({ address: cfg.caAddress, credentials: this.caRoots.channelCredentials(), serverName: cfg.serverName, token: cfg.token });
    this.telemetry.onClose = (r) => this.reportFlow(r);
    // Every pod's HBONE server presents its workload's current certificate: renewed at half-life
    // (and a new trust bundle) reach the next handshake, not only the next restart.
    this.secrets.on('certificate', (identity, cert) => this.renewed(formatSpiffeId(identity), cert));
    this.secrets.on('trustBundle', () => {
      // Once per identity, not per pod: each update builds a new TLS context for each of its pods.
      for (const id of new Set([...this.pods.values()].map((p) => formatSpiffeId(p.identity)))) {
        const cert = this.secrets.cached(spiffeIdOf(id));
        if (cert) this.renewed(id, cert);
      }
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

  static async start(cfg: ZtunnelConfig, policy: InboundPolicy): Promise<Ztunnel> {
    const z = new Ztunnel(cfg, policy);
    // The node's pods first: the agent tells who each pod is (ZDS), so their listeners open while
    // the config stream is still connecting — after a restart, capture is served again sooner.
    z.connectZds();
    const ownId = spiffeId(cfg.trustDomain, cfg.namespace, cfg.serviceAccount);
    z.ownIdentity = ownId;
    await z.secrets.fetchCertificate(ownId);
    // The node certificate, renewed at half-life like any other: the config stream presents the
    // current one on every (re)connect.
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
      z.recheckLive();
    };
    z.config.on('change', (ev: { type: string }) => apply(ev.type as keyof MeshTypes));
    // 'ready' follows the response that completed a type (which may have changed nothing: no
    // policies at all); only then is the type complete in the state.
    z.config.on('ready', (type: string) => apply(type as keyof MeshTypes));
    z.config.start();
    await z.config.ready(30_000);
    for (const t of [WORKLOAD, SERVICE, AUTHORIZATION] as const) z.state.replace(t, [...z.config.entries(t)].map(([k, e]) => [k, e.value] as [string, never]), z.config.isReady(t));
    log.info({ node: cfg.nodeName }, 'ztunnel ready');
    return z;
  }

  private identityOf(w: Workload): SpiffeId {
    return spiffeId(w.trustDomain || this.cfg.trustDomain, w.namespace, w.serviceAccount || 'default');
  }

  // ---- ZDS: which pods to serve ----

  /** Hands a completed connection to the agent's flows; counted as lost when it cannot. */
  private reportFlow(record: ConnectionRecord): void {
    const sock = this.zds;
    if (!this.zdsConnected || !sock || sock.writableLength > FLOW_BACKLOG_BYTES) {
      this.flowsLost++;
      return;
    }
    // Records of one event-loop turn (all the I/O callbacks of a poll) go out in one write
    // (writev), not one syscall each.
    if (!sock.writableCorked) {
      sock.cork();
      setImmediate(() => sock.uncork());
    }
    if (this.flowsLost > 0) {
      sock.write(`${JSON.stringify({ type: 'lost', count: this.flowsLost } satisfies ZdsReport)}\n`);
      this.flowsLost = 0;
    }
    sock.write(`${JSON.stringify({ type: 'flow', record } satisfies ZdsReport)}\n`);
  }

  private connectZds(): void {
    if (this.closed) return;
    const sock = net.connect(this.cfg.zdsSocket);
    this.zds = sock;
    sock.on('connect', () => {
      this.zdsConnected = true;
      if (this.flowsLost > 0) {
        sock.write(`${JSON.stringify({ type: 'lost', count: this.flowsLost } satisfies ZdsReport)}\n`);
        this.flowsLost = 0;
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.zdsConnected = false;
      if (!this.closed) setTimeout(() => this.connectZds(), 500);
    });
    createInterface({ input: sock }).on('line', (line) => {
      let msg: ZdsMessage;
      try {
        msg = JSON.parse(line) as ZdsMessage;
      } catch {
        return;
      }
      const ack = (uid: string, error?: string) => sock.write(`${JSON.stringify({ type: 'ack', uid, ok: !error, ...(error ? { error } : {}) } satisfies ZdsAck)}\n`);
      if (msg.type === 'snapshot') {
        const keep = new Set(msg.pods.map((p) => p.uid));
        for (const uid of this.pods.keys()) if (!keep.has(uid)) void this.removePod(uid);
        for (const p of msg.pods) void this.addPod(p).then(() => ack(p.uid), (e: Error) => ack(p.uid, e.message));
      } else if (msg.type === 'add') {
        const p = msg.pod;
        void this.addPod(p).then(() => ack(p.uid), (e: Error) => ack(p.uid, e.message));
      } else if (msg.type === 'del') {
        void this.removePod(msg.uid).then(() => ack(msg.uid));
      }
    });
  }

  private async addPod(p: ZdsPod): Promise<void> {
    log.debug({ uid: p.uid, netns: p.netnsPath }, 'ZDS add');
    const existing = this.pods.get(p.uid);
    if (existing && existing.proxy.netnsCookie === BigInt(p.netnsCookie)) {
      existing.proxy.transparent = (p.transparent ?? false) && this.maps.canDeliverFromClient;
      return;
    }
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
      handler: (t) => this.inboundHbone(proxy, t),
    });
    const pool = new HbonePool({ connectFromNetns: (dst) => proxy.dialSocket(net.isIPv6(dst.host) ? 6 : 4) });
    await proxy.open({ outbound: (pod, c) => void this.outbound(pod, c), plaintextInbound: (pod, c) => void this.plaintextInbound(pod, c) }, hbone);
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

  /** The pod's Workload from the config stream, or what ZDS said about it while that is on its way. */
  private workloadOf(pod: PodProxy): Workload | undefined {
    return this.state.workloadByPodUid(pod.uid) ?? pod.provisional;
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

  /** Counts bytes as they flow both ways and closes the record when both sides are done. */
  private track(tracked: TrackedConnection, clientSide: net.Socket | NodeJS.ReadableStream, serverSide: NodeJS.ReadableStream, info: { direction: string; src: string; dst: string; pod: string }): (error?: Error) => void {
    const entry = { ...info, since: new Date().toISOString() };
    this.live.add(entry);
    clientSide.on('data', (b: Buffer) => tracked.addReceived(b.length));
    serverSide.on('data', (b: Buffer) => tracked.addSent(b.length));
    let done = false;
    return (error?: Error) => {
      if (done) return;
      done = true;
      this.live.delete(entry);
      tracked.close(error ? { error } : {});
    };
  }

  /** Closes live inbound connections that the current policies no longer allow. */
  private recheckLive(): void {
    for (const [key, c] of this.authorized) {
      const deny = c.recheck();
      if (!deny) continue;
      this.authorized.delete(key);
      log.info({ reason: deny }, 'closing a live connection the policy no longer allows');
      c.kill(deny);
    }
  }

  /** For /config_dump: what this ztunnel knows and serves. */
  configDump(): ConfigDump {
    return {
      workloads: [...this.state.workloads.values()],
      services: [...this.state.services.values()],
      policies: [...this.state.authorizations.values()],
      certificates: this.secrets.status(),
      connections: [...this.live],
      pods: [...this.pods.values()].map((p) => ({ uid: p.proxy.uid, netns: p.proxy.netnsPath, addresses: p.proxy.addresses })),
    };
  }

  readiness(): Readiness {
    if (!this.config?.isReady()) return { ready: false, reason: 'the config stream has not synced' };
    if (!this.zdsConnected) return { ready: false, reason: 'not connected to the node agent (ZDS)' };
    return { ready: true };
  }

  // ---- outbound ----

  private async outbound(pod: PodProxy, conn: net.Socket): Promise<void> {
    conn.on('error', () => {});
    const orig = this.maps.takeOrigDst(pod.netnsCookie, strip(conn.remoteAddress), conn.remotePort ?? 0);
    if (!orig) {
      log.warn({ peer: `${conn.remoteAddress}:${conn.remotePort}` }, 'no original destination recorded for an outbound connection; closing');
      conn.destroy();
      return;
    }
    // Without the full config, an unknown destination may be a mesh pod: passing it through in
    // plaintext would leak. Refuse until the config stream has synced (fail closed).
    if (!this.config?.isReady()) {
      log.info({ dst: `${orig.address}:${orig.port}` }, 'outbound refused: the config stream has not synced yet');
      conn.resetAndDestroy();
      return;
    }
    const dst = this.state.resolve(orig.address, orig.port);
    if ('error' in dst) {
      log.info({ dst: `${orig.address}:${orig.port}`, err: dst.error }, 'outbound refused');
      conn.destroy();
      return;
    }
    const src = this.workloadOf(pod);
    const entry = this.pods.get(pod.uid);
    const hbone = dst.workload?.tunnelProtocol === 'HBONE' && src !== undefined && entry !== undefined;
    const tracked = this.telemetry.connectionOpened({
      reporter: 'source',
      source: src,
      // Over HBONE the source proves this identity with the certificate ztunnel presents for it.
      sourceIdentity: hbone && src ? this.identityOf(src) : undefined,
      destination: dst.workload,
      destinationService: dst.service,
      mtls: hbone,
      // The app connected to 127.0.0.1:15001, so its socket's address is loopback; the pod's IP
      // is what the connection stands for (and what the app would have used).
      src: { ip: pod.addresses[0] ?? strip(conn.remoteAddress), port: conn.remotePort ?? 0 },
      dst: { ip: orig.address, port: orig.port },
      hboneAddr: hbone ? `${dst.ip}:${dst.port}` : undefined,
      sockCookie: orig.sockCookie,
    });
    const info = { direction: 'outbound', src: `${pod.addresses[0]}`, dst: `${orig.address}:${orig.port}`, pod: pod.uid };
    const viaWaypoint = this.waypointRefusal(dst);
    if (viaWaypoint) {
      log.info({ dst: `${orig.address}:${orig.port}`, reason: viaWaypoint }, 'outbound refused: the destination uses a waypoint');
      tracked.close({ flags: 'DENY', error: viaWaypoint });
      conn.resetAndDestroy();
      return;
    }
    try {
      if (hbone && src && entry && dst.workload) {
        const cert = await this.secrets.fetchCertificate(this.identityOf(src));
        const stream = await entry.pool.connect({
          source: { identity: cert.identity, key: cert.key, certChain: cert.certChain, roots: cert.roots, notAfter: cert.leaf.notAfter },
          dstAddr: { host: dst.ip, port: HBONE_PORT },
          expectedIdentities: [formatSpiffeId(this.identityOf(dst.workload))],
          authority: { host: dst.ip, port: dst.port },
          forwardedFor: { host: pod.addresses[0] ?? strip(conn.localAddress) },
          baggage: { 'k8s.namespace.name': src.namespace, 'k8s.pod.name': src.name, 'service.name': src.canonicalName || src.name },
        });
        const done = this.track(tracked, conn, stream, info);
        done((await splice(conn, stream)).error);
      } else {
        const up = new net.Socket({ fd: pod.dialSocket(net.isIPv6(dst.ip) ? 6 : 4), readable: true, writable: true });
        up.setNoDelay(true);
        up.connect({ host: dst.ip, port: dst.port });
        const done = this.track(tracked, conn, up, info);
        done((await splice(conn, up)).error);
      }
    } catch (e) {
      log.info({ dst: `${dst.ip}:${dst.port}`, err: (e as Error).message }, 'outbound connection failed');
      // A 401 from the destination is its policy speaking: a denial, not a connect failure.
      tracked.close({ flags: e instanceof HboneDeniedError ? 'DENY' : 'CONNECT', error: e as Error });
      conn.destroy();
    }
  }

  /**
   * Why a connection to `dst` may not go straight to it: the Service it was reached by, the
   * workload, or a Service the workload backs on that port, uses a waypoint. A missing or unready
   * waypoint fails closed — never a bypass (Istio's ztunnel sends straight to the pod then).
   * Routing through a ready waypoint is the waypoint milestone's work; until then that is refused
   * too, rather than skipping the waypoint's policy.
   */
  private waypointRefusal(dst: Destination): string | undefined {
    const uses = [
      ...(dst.service?.waypoint ? [{ via: `service ${dst.service.namespace}/${dst.service.hostname}`, address: dst.service.waypoint }] : []),
      ...(dst.workload ? this.state.waypointsOf(dst.workload, dst.port) : []),
    ];
    for (const { via, address } of uses) {
      const st = this.state.waypoint(address, this.cfg.trustDomain);
      return st.problem
        ? `${via} uses ${st.problem}: refused until it is ready (fail closed)`
        : `${via} uses waypoint ${st.hostname}, and this ztunnel does not route through waypoints yet: refused (fail closed)`;
    }
    return undefined;
  }

  /**
   * Whether an inbound connection may reach the app, at the destination: a workload behind a
   * waypoint (its own, or a Service's on that port) accepts only that waypoint's identities, so
   * dialling the pod directly cannot skip it (with the waypoint missing: nothing); then the L4
   * policies. Both inbound paths and their re-checks on config changes ask this one question.
   */
  private admitInbound(c: { srcIp: string; srcIdentity: SpiffeId | undefined; dst: Workload; dstIp: string; dstPort: number }): string | undefined {
    for (const { via, address } of this.state.waypointsOf(c.dst, c.dstPort)) {
      const st = this.state.waypoint(address, this.cfg.trustDomain);
      if (st.problem) return `${via} uses ${st.problem}: refused until it is ready (fail closed)`;
      if (!c.srcIdentity || !st.identities.includes(formatSpiffeId(c.srcIdentity))) {
        return `${via} is behind waypoint ${st.hostname} and accepts connections only from it (${st.identities.join(', ')}); the peer is ${c.srcIdentity ? formatSpiffeId(c.srcIdentity) : 'unauthenticated'}`;
      }
    }
    return this.policy(c, this.state);
  }

  // ---- inbound ----

  /**
   * Connects to the app inside the pod. From the client's own address when the pod has delivery
   * routing (the app sees who called it, as without the mesh); otherwise, or for a client of the
   * other address family, from 127.0.0.6 (::1), which sk_lookup leaves alone.
   */
  private deliver(pod: PodProxy, ip: string, port: number, client: string, clientPort?: number): Promise<net.Socket> {
    const v6 = net.isIPv6(ip);
    let fd: number | undefined;
    let forget: (() => void) | undefined;
    if (pod.transparent && net.isIP(client) && net.isIPv6(client) === v6) {
      try {
        ({ fd, forget } = pod.deliverySocket(client, { ip, port }, clientPort));
      } catch (e) {
        log.warn({ pod: pod.uid, client, err: (e as Error).message }, 'cannot deliver from the client\'s address; using 127.0.0.6');
      }
    }
    fd ??= pod.dialSocket(v6 ? 6 : 4, v6 ? '::1' : '127.0.0.6');
    const sock = new net.Socket({ fd, readable: true, writable: true });
    sock.setNoDelay(true); // what we relay was already segmented by the client; Nagle only delays it
    // The tuple stays named until the socket closes: while it exists (and in TIME_WAIT) the kernel
    // matches the tuple to it before sk_lookup runs, so nothing from outside can use the name, and
    // a handshake that ends late (SYN cookies) still finds it.
    if (forget) sock.once('close', forget);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => sock.destroy(new Error(`no answer from the application within ${DELIVERY_TIMEOUT_MS} ms`)), DELIVERY_TIMEOUT_MS);
      sock.once('connect', () => {
        clearTimeout(timer);
        resolve(sock);
      });
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      sock.connect({ host: ip, port });
    });
  }

  private async inboundHbone(pod: PodProxy, t: HboneTunnel) {
    const dst = this.state.workloadByPodUid(pod.uid);
    if (!dst || !pod.addresses.includes(t.target.host)) return { status: 400 as const, reason: `${t.target.host} is not an address of this pod` };
    if (ZTUNNEL_PORTS.has(t.target.port)) return { status: 400 as const, reason: `port ${t.target.port} is one of ztunnel's own: not a destination` };
    // The outer connection is made inside the source pod's netns, so its peer address is the
    // source pod's IP; `forwarded` is the client's claim and is not trusted for policy.
    const srcIp = t.peerAddress.host.replace(/^::ffff:/, '');
    const tracked = this.telemetry.connectionOpened({
      reporter: 'destination',
      source: this.state.workloadByIp(srcIp),
      sourceIdentity: t.peerIdentity,
      destination: dst,
      mtls: true,
      src: { ip: srcIp, port: t.forwardedFor?.port ?? t.peerAddress.port },
      dst: { ip: t.target.host, port: t.target.port },
      hboneAddr: `${t.target.host}:${t.target.port}`,
      outer: { src: formatAddr(srcIp, t.peerAddress.port), dst: formatAddr(t.target.host, HBONE_PORT) },
    });
    const deny = this.admitInbound({ srcIp, srcIdentity: t.peerIdentity, dst, dstIp: t.target.host, dstPort: t.target.port });
    if (deny) {
      tracked.close({ flags: 'DENY', error: deny });
      return { status: 401 as const, reason: deny };
    }
    try {
      const upstream = await this.deliver(pod, t.target.host, t.target.port, srcIp);
      const done = this.track(tracked, t.stream, upstream, { direction: 'inbound', src: srcIp, dst: `${t.target.host}:${t.target.port}`, pod: pod.uid });
      const key = {};
      this.authorized.set(key, {
        recheck: () => {
          const now = this.state.workloadByPodUid(pod.uid);
          return now ? this.admitInbound({ srcIp, srcIdentity: t.peerIdentity, dst: now, dstIp: t.target.host, dstPort: t.target.port }) : 'the workload left the mesh';
        },
        kill: (reason) => {
          t.abort();
          upstream.destroy();
          done(new Error(`closed by policy: ${reason}`));
        },
      });
      upstream.once('close', () => {
        this.authorized.delete(key);
        done();
      });
      return { status: 200 as const, upstream };
    } catch (e) {
      tracked.close({ flags: 'CONNECT', error: e as Error });
      return { status: 503 as const, reason: `the application at ${t.target.host}:${t.target.port} is unreachable: ${(e as Error).message}` };
    }
  }

  private async plaintextInbound(pod: PodProxy, conn: net.Socket): Promise<void> {
    conn.on('error', () => {});
    const dst = this.state.workloadByPodUid(pod.uid);
    const dstIp = strip(conn.localAddress);
    const dstPort = conn.localPort ?? 0;
    const srcIp = strip(conn.remoteAddress);
    const tracked = this.telemetry.connectionOpened({
      reporter: 'destination',
      source: this.state.workloadByIp(srcIp),
      destination: dst,
      mtls: false,
      src: { ip: srcIp, port: conn.remotePort ?? 0 },
      dst: { ip: dstIp, port: dstPort },
      outer: { src: formatAddr(srcIp, conn.remotePort ?? 0), dst: formatAddr(dstIp, dstPort) },
    });
    // Delivering to one of ztunnel's own ports would come back to ztunnel (the delivery is made
    // inside the pod, where sk_lookup does not steer): a loop of connections. Refuse it.
    const deny = ZTUNNEL_PORTS.has(dstPort)
      ? `port ${dstPort} is one of ztunnel's own: not a destination`
      : dst
        ? this.admitInbound({ srcIp, srcIdentity: undefined, dst, dstIp, dstPort })
        : 'unknown destination workload';
    if (deny) {
      log.info({ src: srcIp, dst: `${dstIp}:${dstPort}`, reason: deny }, 'plaintext connection denied');
      tracked.close({ flags: 'DENY', error: deny });
      conn.destroy();
      return;
    }
    try {
      const upstream = await this.deliver(pod, dstIp, dstPort, srcIp, conn.remotePort);
      const done = this.track(tracked, conn, upstream, { direction: 'inbound', src: srcIp, dst: `${dstIp}:${dstPort}`, pod: pod.uid });
      const key = {};
      this.authorized.set(key, {
        recheck: () => {
          const now = this.state.workloadByPodUid(pod.uid);
          return now ? this.admitInbound({ srcIp, srcIdentity: undefined, dst: now, dstIp, dstPort }) : 'the workload left the mesh';
        },
        kill: (reason) => {
          conn.destroy();
          upstream.destroy();
          done(new Error(`closed by policy: ${reason}`));
        },
      });
      const result = await splice(conn, upstream);
      this.authorized.delete(key);
      done(result.error);
    } catch (e) {
      tracked.close({ flags: 'CONNECT', error: e as Error });
      conn.destroy();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.zds?.destroy();
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

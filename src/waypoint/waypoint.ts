// The waypoint: the L7 proxy of the services and workloads that use it (a Gateway of class
// mesh-waypoint, deployed by the controller), and its composition root. It holds its own
// identity (its service account's, from the CA with its pod-bound token), follows the config
// stream for workloads, services, routes and L7 policies, terminates HBONE from the clients'
// ztunnels on 15008, and hands each tunnel's bytes to the L7 proxy (proxy.ts), which routes every
// request to an endpoint over HBONE again — with the waypoint's identity, so the destination's
// ztunnel admits it (the workload behind a waypoint accepts only its waypoint).
//
// It fails closed: until it has its certificate and a complete config it is not ready (the
// Gateway is not Programmed, so clients' ztunnels refuse instead of bypassing it); a lost config
// stream keeps the last good config.
import net from 'node:net';
import { logger } from '../common/log.ts';
import { LineBatch, LOG_BATCH } from '../common/line-batch.ts';
import { HbonePool, HboneServer, type HboneTunnel } from '../hbone/index.ts';
import { CertificateClient, formatSpiffeId, RotatingCertificates, SecretManager, type SpiffeId, spiffeId, type WorkloadCertificate } from '../identity/index.ts';
import { MeshState, type MeshTypes } from '../state/index.ts';
import type { MtlsCredentials } from '../tls/index.ts';
import { AUTHORIZATION, ConfigClient, L7_AUTHORIZATION, type L7Authorization, ROUTE, type Route, SERVICE, WORKLOAD } from '../xds/index.ts';
import type { Registry } from 'prom-client';
import { type MeshTracer, propagatingTracer } from '../tracing/index.ts';
import { L7FlowSender, type L7Record } from '../flows/l7.ts';
import { L7Authorizer } from './authz.ts';
import { L7Proxy } from './proxy.ts';
import { ServiceResilience } from './resilience.ts';
import { type L7Flow, RequestTelemetry } from './telemetry.ts';

const log = logger('waypoint');

export interface WaypointConfig {
  name: string;
  namespace: string;
  serviceAccount: string;
  podName: string;
  nodeName: string;
  trustDomain: string;
  xdsAddress: string;
  caAddress: string;
  serverName: string;
  caRoots: string;
  token: () => string | Promise<string>;
  listenHost: string;
  hbonePort: number;
  /** The node agent's L7 flows socket; undefined: no L7 flows. */
  l7FlowsSocket?: string | undefined;
  /** Spans and trace context (default: propagate only). */
  tracer?: MeshTracer;
}

type WaypointTypes = MeshTypes & { [ROUTE]: Route; [L7_AUTHORIZATION]: L7Authorization };
const TYPES = [WORKLOAD, SERVICE, ROUTE, L7_AUTHORIZATION] as const;

export class Waypoint {
  readonly state = new MeshState();
  readonly routes = new Map<string, Route>();
  readonly policies = new Map<string, L7Authorization>();
  readonly flows: L7Flow[] = [];
  readonly telemetry: RequestTelemetry;
  private readonly cfg: WaypointConfig;
  private readonly identity: SpiffeId;
  private readonly secrets: SecretManager;
  private readonly ca: CertificateClient;
  private readonly caRoots: RotatingCertificates;
  private own: RotatingCertificates | undefined;
  private config: ConfigClient<WaypointTypes> | undefined;
  private hbone: HboneServer | undefined;
  private readonly pool = new HbonePool();
  private readonly authorizer = new L7Authorizer();
  private readonly resilience = new Map<string, ServiceResilience>();
  private readonly proxy: L7Proxy;
  private serial = '';
  private readonly l7Flows: L7FlowSender | undefined;
  /**
   * The access log's lines reach stdout joined, ~8 KiB at a time or 250 ms after the first line
   * of a quiet spell, as ztunnel's do: a write per request (synchronous, to a pipe) was 9% of the
   * waypoint's CPU at 1,000 rps (issue 16).
   */
  private readonly accessLog = new LineBatch((text) => process.stdout.write(text), LOG_BATCH);
  /** Set from SIGTERM on (drain()): not ready, so that no new client picks it. */
  private draining = false;

  private constructor(cfg: WaypointConfig, registry: Registry) {
    this.cfg = cfg;
    this.identity = spiffeId(cfg.trustDomain, cfg.namespace, cfg.serviceAccount);
    this.secrets = new SecretManager({ provider: { fetch: (id) => this.ca.fetch(id) } });
    this.caRoots = new RotatingCertificates(this.secrets, undefined, cfg.caRoots);
    this.ca = new CertificateClient({ address: cfg.caAddress, credentials: this.caRoots.channelCredentials(), serverName: cfg.serverName, token: cfg.token });
    this.l7Flows = cfg.l7FlowsSocket ? new L7FlowSender(cfg.l7FlowsSocket) : undefined;
    this.telemetry = new RequestTelemetry({
      registry,
      lookup: this.state,
      waypoint: { namespace: cfg.namespace, name: cfg.name },
      accessLog: (line) => this.accessLog.push(`${line}\n`),
      onFlow: (f) => {
        this.flows.push(f);
        // Trimmed in halves, not per request: config_dump shows the last 200.
        if (this.flows.length > 2048) this.flows.splice(0, 1024);
        this.l7Flows?.send(l7Record(f));
      },
    });
    this.proxy = new L7Proxy({
      state: this.state,
      routes: (service) => this.routes.get(service),
      upstream: { connect: (target) => this.connectUpstream(target) },
      authorize: (req, targets) => this.authorizer.decide(req, targets),
      resilience: (service) => this.resilienceOf(service),
      telemetry: this.telemetry,
      tracer: cfg.tracer ?? propagatingTracer(),
      gatewayKey: `Gateway/${cfg.namespace}/${cfg.name}`,
      trustDomain: cfg.trustDomain,
      // Until every type has arrived, an authorizer without policies would allow everything.
      ready: () => this.config?.isReady() ?? false,
    });
    // The HBONE server presents the current certificate: a renewal reaches the next handshake.
    this.secrets.on('certificate', (id: SpiffeId, cert: WorkloadCertificate) => {
      if (formatSpiffeId(id) === formatSpiffeId(this.identity) && cert.leaf.serial !== this.serial) {
        this.serial = cert.leaf.serial;
        this.hbone?.updateCredentials(this.credentials(cert));
        log.info({ serial: cert.leaf.serial, notAfter: cert.leaf.notAfter }, 'serving a renewed certificate');
      }
    });
  }

  static async start(cfg: WaypointConfig, registry: Registry): Promise<Waypoint> {
    const w = new Waypoint(cfg, registry);
    const cert = await w.secrets.fetchCertificate(w.identity);
    w.serial = cert.leaf.serial;
    log.info({ identity: formatSpiffeId(w.identity), notAfter: cert.leaf.notAfter }, 'holding the waypoint identity');
    w.own = new RotatingCertificates(w.secrets, w.identity, cfg.caRoots);
    w.config = new ConfigClient<WaypointTypes>({
      address: cfg.xdsAddress,
      credentials: w.own.channelCredentials(),
      node: { id: `waypoint~${cfg.namespace}/${cfg.name}~${cfg.podName}`, name: cfg.nodeName, cluster: '' },
      types: TYPES,
      channelOptions: { 'grpc.ssl_target_name_override': cfg.serverName },
    });
    w.config.on('change', (ev: { type: string }) => w.apply(ev.type));
    w.config.on('ready', (type: string) => w.apply(type));
    w.config.start();
    await w.config.ready(30_000);
    for (const t of TYPES) w.apply(t);
    // The waypoint does not enforce L4 Authorizations (ztunnel does); its state's set is empty and complete.
    w.state.replace(AUTHORIZATION, [], true);
    w.hbone = new HboneServer({ credentials: w.credentials(cert), trustDomains: [cfg.trustDomain], handler: (t) => w.inbound(t) });
    await w.hbone.listen({ host: cfg.listenHost, port: cfg.hbonePort });
    log.info({ hbone: `${cfg.listenHost}:${cfg.hbonePort}`, gateway: `${cfg.namespace}/${cfg.name}` }, 'waypoint ready');
    return w;
  }

  private credentials(cert: WorkloadCertificate): MtlsCredentials {
    const bundle = this.secrets.trustBundle;
    return { key: cert.key, certChain: cert.certChain, roots: bundle.length ? bundle : cert.roots };
  }

  private apply(type: string): void {
    const c = this.config;
    if (!c) return;
    if (type === WORKLOAD || type === SERVICE) {
      this.state.replace(type, [...c.entries(type)].map(([k, e]) => [k, e.value] as [string, never]), c.isReady(type));
    } else if (type === ROUTE) {
      this.routes.clear();
      for (const [k, e] of c.entries(ROUTE)) this.routes.set(k, e.value);
      for (const [svc, r] of this.resilience) r.update(this.routes.get(svc)?.resilience ?? null);
    } else if (type === L7_AUTHORIZATION) {
      this.policies.clear();
      for (const [k, e] of c.entries(L7_AUTHORIZATION)) this.policies.set(k, e.value);
      this.authorizer.update(this.policies.values());
    }
  }

  private resilienceOf(service: string): ServiceResilience {
    let r = this.resilience.get(service);
    if (!r) {
      r = new ServiceResilience(this.routes.get(service)?.resilience ?? null);
      this.resilience.set(service, r);
    }
    return r;
  }

  /** A tunnel from a client's ztunnel: its authority is the original destination (service VIP or pod IP). */
  private async inbound(t: HboneTunnel) {
    const principal = formatSpiffeId(t.peerIdentity).replace(/^spiffe:\/\//, '');
    // The source is the client pod, as its ztunnel forwarded it; the tunnel's own peer (the
    // client pod's address too, since ztunnel dials from inside the pod) when it did not.
    const sourceIp = (t.forwardedFor?.host ?? t.peerAddress.host).replace(/^::ffff:/, '');
    const upstream = this.proxy.accept({ sourcePrincipal: principal, sourceIp, ...(t.forwardedFor?.port ? { sourcePort: t.forwardedFor.port } : {}), dst: { ip: t.target.host, port: t.target.port } });
    return { status: 200 as const, upstream };
  }

  /**
   * An endpoint over HBONE, as the waypoint: the destination's ztunnel admits only its waypoint.
   * An endpoint outside the mesh (no HBONE) is dialled in plain TCP, as ztunnel would.
   */
  private async connectUpstream(target: { ip: string; port: number; identity: string }) {
    if (this.state.workloadByIp(target.ip)?.tunnelProtocol !== 'HBONE') {
      const s = net.connect({ host: target.ip, port: target.port });
      s.setNoDelay(true);
      await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
      return s;
    }
    const cert = await this.secrets.fetchCertificate(this.identity);
    return this.pool.connect({
      source: { identity: cert.identity, key: cert.key, certChain: cert.certChain, roots: cert.roots, notAfter: cert.leaf.notAfter },
      dstAddr: { host: target.ip, port: this.cfg.hbonePort },
      expectedIdentities: [target.identity],
      authority: { host: target.ip, port: target.port },
    });
  }

  readiness(): { ready: true } | { ready: false; reason: string } {
    if (this.draining) return { ready: false, reason: 'draining: the pod is being replaced or removed' };
    if (!this.config?.isReady()) return { ready: false, reason: 'the config stream has not synced' };
    if (!this.hbone) return { ready: false, reason: 'HBONE is not listening yet' };
    return { ready: true };
  }

  configDump() {
    return {
      workloads: [...this.state.workloads.values()],
      services: [...this.state.services.values()],
      policies: [...this.policies.values()],
      routes: [...this.routes.values()],
      certificates: this.secrets.status(),
      connections: [],
      flows: this.flows.slice(-200),
    };
  }

  /**
   * The waypoint's part of a rollout (SIGTERM). The new pod is ready before the old one is told to
   * go (maxUnavailable 0), but the clients' ztunnels learn of the removal a moment later, through
   * the config stream; so it first keeps taking new tunnels for `delayMs`, reporting not ready.
   * Then it stops listening and sends GOAWAY on every HBONE connection, so clients open new
   * tunnels elsewhere while every request and tunnel in flight runs to its end — for at most
   * `timeoutMs` (0: no limit), after which what is left is reset and counted.
   */
  async drain(delayMs: number, timeoutMs: number): Promise<{ reset: number; waitedMs: number }> {
    this.draining = true;
    const hbone = this.hbone;
    log.info({ delayMs, tunnels: hbone?.stats().tunnels ?? 0 }, 'draining: still taking new tunnels while the clients learn this pod is leaving');
    await new Promise((r) => setTimeout(r, delayMs));
    const started = performance.now();
    // setTimeout's longest wait (24.8 days) stands for "no limit".
    const limit = timeoutMs === 0 ? 2_147_483_647 : timeoutMs;
    const open = hbone?.stats() ?? { sessions: 0, tunnels: 0 };
    log.info({ ...open, timeoutMs }, 'draining: no longer taking new tunnels; letting the open ones finish');
    const [tunnels] = await Promise.all([hbone ? hbone.drain(limit) : Promise.resolve({ reset: 0 }), this.proxy.drain(limit)]);
    const waitedMs = Math.round(performance.now() - started);
    if (tunnels.reset > 0) log.warn({ reset: tunnels.reset, waitedMs }, `drain deadline passed: reset ${tunnels.reset} tunnels still open`);
    else log.info({ waitedMs }, 'drained: every request and tunnel finished');
    return { reset: tunnels.reset, waitedMs };
  }

  async close(): Promise<void> {
    await this.proxy.drain(1000);
    this.proxy.close();
    await this.hbone?.close();
    this.l7Flows?.close();
    this.accessLog.flush();
    // What is batched goes out before the process ends.
    await this.cfg.tracer?.shutdown().catch((e: Error) => log.warn({ err: e.message }, 'could not send the last spans'));
    await this.pool.close(1000);
    await this.config?.close();
    this.own?.close();
    this.caRoots.close();
    this.secrets.close();
    this.ca.close();
  }
}

/** An L7 flow as the node agent takes it (src/flows/l7.ts): beside its connection's L4 flow. */
function l7Record(f: L7Flow): L7Record {
  return {
    startMs: f.timeUnixNano / 1e6,
    reporter: `waypoint ${f.waypoint}`,
    src: { ip: f.source.ip, port: f.source.port, identity: f.source.identity },
    dst: { ip: f.dialled.ip, port: f.dialled.port, service: f.destination.service },
    upstream: f.destination.ip && (f.destination.ip !== f.dialled.ip || f.destination.port !== f.dialled.port) ? { ip: f.destination.ip, port: f.destination.port } : null,
    method: f.method,
    url: f.path,
    protocol: f.protocol === 'grpc' ? 'gRPC' : `HTTP/${f.httpVersion}`,
    status: f.status,
    flags: f.responseFlags,
    latencyMs: f.latencyMs,
    traceId: f.traceId,
    ...(f.policy ? { policy: f.policy } : {}),
  };
}

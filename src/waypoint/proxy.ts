// The waypoint's L7 engine: takes each stream the HBONE server terminated, finds out what it
// speaks, and serves HTTP/1.1 and HTTP/2 (h2c, gRPC) requests through the Service's routes —
// authorization, rate limit, fault, routing, filters, circuit breaking, retries and timeouts,
// telemetry — or passes other TCP through to an endpoint. The process wiring (HBONE server,
// config stream, metrics) is someone else's: everything arrives through L7ProxyOptions.
import * as http from 'node:http';
import * as http2 from 'node:http2';
import { type Duplex, duplexPair } from 'node:stream';
import { logger } from '../common/log.ts';
import { splice } from '../hbone/index.ts';
import type { ServiceEndpoint } from '../state/index.ts';
import type { Route, RouteRule } from '../xds/routes.ts';
import { Balancer } from './balancer.ts';
import { REPLAY_LIMIT, RequestBody } from './body.ts';
import { detect } from './detect.ts';
import { type MeshTracer, propagatingTracer } from '../tracing/index.ts';
import { RawResponse, type UpgradeSide } from './upgrade.ts';
import { Exchange, type Downstream, type Candidate } from './exchange.ts';
import { type Authorize, NO_RESILIENCE, type ResiliencePort, type TelemetryPort, type WaypointView } from './ports.ts';
import type { RequestInfo } from './request.ts';
import { INNER_H2_OPTIONS, type Upstream, UpstreamPool, type UpstreamProtocol } from './upstream.ts';

const log = logger('waypoint');

/** What the HBONE server learned about a tunnel: who opened it and where it was going. */
export interface StreamMeta {
  /** The peer's verified SPIFFE ID without "spiffe://": "td/ns/x/sa/y". */
  sourcePrincipal: string;
  sourceIp: string;
  /** The client's port, from the HBONE `forwarded` header when present; for telemetry only. */
  sourcePort?: number;
  /** The original destination, from the CONNECT authority: a Service VIP or a pod IP. */
  dst: { ip: string; port: number };
}

export interface L7ProxyOptions {
  state: WaypointView;
  routes: (service: string) => Route | undefined;
  upstream: Upstream;
  authorize: Authorize;
  resilience: (service: string) => ResiliencePort;
  telemetry: TelemetryPort;
  /** A span per request, and the trace headers it goes upstream with. Default: propagate only. */
  tracer?: MeshTracer;
  /** "Gateway/ns/name": the authorization target every request of this waypoint matches. */
  gatewayKey: string;
  /** For endpoint identities of workloads that carry none. Default cluster.local. */
  trustDomain?: string;
  /**
   * How long a silent client may take before its stream counts as TCP. Default 1 s: long enough
   * that a slow HTTP client is not taken for TCP (which only L4 policy would judge), short enough
   * for server-first protocols.
   */
  detectTimeoutMs?: number;
  /** Request body bytes kept for retries and mirrors. Default 1 MiB. */
  replayLimit?: number;
  /** [0, 1): traffic splits, mirror sampling, P2C. Default Math.random; tests pass a seeded one. */
  random?: () => number;
  /**
   * Whether the config it routes and authorizes by has arrived in full (MeshState.synced and the
   * waypoint's own types). Until then every stream is refused: with no policies yet, the
   * authorizer would allow what a DENY on its way forbids. Default: always ready.
   */
  ready?: () => boolean;
}

const DEFAULT_DETECT_TIMEOUT_MS = 1000;

/** Idle HTTP/1.1 client connections close after this (see the server's options). */
const DOWNSTREAM_IDLE_MS = 60_000;

/** Other endpoints tried when one refuses a TCP stream (Istio's default: 2 retries on connect-failure). */
const TCP_CONNECT_RETRIES = 2;

/**
 * A service port's appProtocol (as the controller normalises it: kubernetes.io/h2c is "http2")
 * fixes what its endpoints speak, as Istio's protocol selection does: an HTTP/1.1 client still
 * reaches an h2c-only gRPC server. Unsaid, the endpoint gets the client's protocol.
 */
const UPSTREAM_PROTOCOL: ReadonlyMap<string, UpstreamProtocol> = new Map([
  ['http', 'http1'],
  ['grpc-web', 'http1'],
  ['http2', 'http2'],
  ['grpc', 'http2'],
]);

export class L7Proxy {
  private readonly pool: UpstreamPool;
  private readonly balancer: Balancer;
  private readonly random: () => number;
  private readonly h1: http.Server;
  private readonly h2: http2.Http2Server;
  private readonly h1Meta = new WeakMap<object, StreamMeta>();
  private readonly h2Meta = new WeakMap<object, StreamMeta>();
  /** Set only during h2.emit('connection'): the server makes its session synchronously. */
  private pendingMeta: StreamMeta | undefined;
  private readonly open = new Set<Duplex>();
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  private readonly candidatesOf = new WeakMap<readonly ServiceEndpoint[], { service: string; list: readonly Candidate[] }>();
  private draining = false;
  /** Called by handle() when the last stream closes during a drain. */
  private onIdle: (() => void) | undefined;
  private readonly trustDomain: string;
  private readonly tracer: MeshTracer;
  private readonly opts: L7ProxyOptions;

  constructor(opts: L7ProxyOptions) {
    this.opts = opts;
    this.random = opts.random ?? Math.random;
    this.balancer = new Balancer(this.random);
    this.pool = new UpstreamPool(opts.upstream);
    this.trustDomain = opts.trustDomain ?? 'cluster.local';
    this.tracer = opts.tracer ?? propagatingTracer();
    // requestTimeout 0: Node's default (300 s) would cut long uploads and streams with a 408; the
    // route's timeouts are the only request timeouts. keepAliveTimeout: Node's 5 s would close
    // idle client connections (each a tunnel) about as often as clients reuse them, and a client
    // racing the close gets a reset; Envoy keeps them an hour, we a minute. (Node applies it only
    // to streams with setTimeout, as an HBONE stream has; accept()'s pairs stay until the client
    // or the tunnel closes.)
    // Only WebSocket upgrades become tunnels
    // (upgrade.ts): any other (h2c) is served as a plain request without its Upgrade field, as
    // Envoy does, so that every later request on the connection still meets policy and routes.
    this.h1 = http.createServer({ requireHostHeader: false, requestTimeout: 0, keepAliveTimeout: DOWNSTREAM_IDLE_MS, shouldUpgradeCallback: isWebSocket }, (req, res) => {
      const meta = this.h1Meta.get(req.socket);
      if (meta) this.serve(req, res, meta, '1.1');
      else res.destroy();
    });
    // Malformed HTTP/1: a 400, then the connection closes (the parser's state is unknown), as
    // Envoy's codec answers; telemetry counts it with Envoy's flag for it, DPE. Mid-response
    // (a bad pipelined request) there is no room for a 400: the connection just closes.
    this.h1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      log.debug({ err: err.message, code: err.code }, 'malformed HTTP/1 request');
      const meta = this.h1Meta.get(socket);
      if (socket.writable && !(socket as { _httpMessage?: unknown })._httpMessage) {
        socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nBad Request');
        if (meta) this.recordBadRequest(meta);
      } else socket.destroy();
    });
    this.h1.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const meta = this.h1Meta.get(socket);
      if (meta) this.serve(req, new RawResponse(socket), meta, '1.1', { socket, head });
      else socket.destroy();
    });
    this.h2 = http2.createServer(INNER_H2_OPTIONS, (req, res) => {
      const meta = this.h2Meta.get(req.stream.session as object);
      if (meta) this.serve(req, res, meta, '2');
      else res.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    });
    this.h2.on('session', (session) => {
      if (this.pendingMeta) this.h2Meta.set(session, this.pendingMeta);
      this.h2Sessions.add(session);
      session.once('close', () => this.h2Sessions.delete(session));
      session.on('error', (err) => log.debug({ err: err.message }, 'HTTP/2 client session error'));
    });
  }

  /** Serves one terminated HBONE stream until it closes. */
  async handle(stream: Duplex, meta: StreamMeta): Promise<void> {
    if (this.draining || !(this.opts.ready?.() ?? true)) return void stream.destroy();
    this.open.add(stream);
    const closed = new Promise<void>((resolve) => stream.once('close', resolve));
    stream.on('error', (err) => log.debug({ err: err.message }, 'client stream error'));
    try {
      // A port declared TCP is not sniffed (Istio's protocol selection): a server-first protocol
      // (MySQL, SMTP) would otherwise wait out the detection timeout on every connection.
      const { protocol, head } = this.declaredTcp(meta.dst) ? { protocol: 'tcp' as const, head: undefined } : await detect(stream, this.opts.detectTimeoutMs ?? DEFAULT_DETECT_TIMEOUT_MS);
      if (stream.destroyed && protocol !== 'tcp') return;
      if (protocol === 'http1') {
        this.h1Meta.set(stream, meta);
        this.h1.emit('connection', stream);
      } else if (protocol === 'http2') {
        this.pendingMeta = meta;
        try {
          this.h2.emit('connection', stream);
        } finally {
          this.pendingMeta = undefined;
        }
      } else {
        await this.passthrough(stream, meta, head);
      }
      if (!stream.destroyed) await closed;
    } finally {
      this.open.delete(stream);
      if (this.open.size === 0) this.onIdle?.();
    }
  }

  /**
   * For an HBONE server that answers a tunnel with a socket to pipe it to (HboneServer's
   * `{status: 200, upstream}`): that socket, whose other end this proxy serves. A reset reaches
   * across — one end destroyed before it finished writing destroys the other — while an orderly
   * end only ends, so no byte still on its way is lost (an in-memory pair carries neither by itself).
   */
  accept(meta: StreamMeta): Duplex {
    const [outer, inner] = duplexPair();
    outer.once('close', () => {
      if (!outer.writableFinished) inner.destroy();
    });
    inner.once('close', () => {
      if (!inner.writableFinished) outer.destroy();
    });
    void this.handle(inner, meta);
    return outer;
  }

  /**
   * Stops taking streams and lets those open finish: HTTP/2 clients get a GOAWAY (streams in
   * flight complete), HTTP/1.1 connections close after their current response, TCP runs on. What
   * is still open after `graceMs` is closed.
   */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    for (const s of this.h2Sessions) s.close();
    this.h1.closeIdleConnections();
    if (this.open.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.onIdle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.close();
  }

  /** Stops at once: every client stream and upstream connection is closed. */
  close(): void {
    this.draining = true;
    for (const s of this.open) s.destroy();
    this.open.clear();
    this.pool.close();
    this.h1.close();
    this.h2.close();
  }

  private serve(req: http.IncomingMessage | http2.Http2ServerRequest, res: Downstream, meta: StreamMeta, version: '1.1' | '2', upgrade?: UpgradeSide): void {
    const service = this.serviceAt(meta.dst.ip);
    const info = requestInfo(req, meta, version, service);
    const ex = new Exchange({
      info,
      res,
      body: new RequestBody(req, this.opts.replayLimit ?? REPLAY_LIMIT, !hasBody(req)),
      // Istio's span name for a proxy hop: the destination's host and port and a wildcard path
      // ("reviews.default.svc.cluster.local:9080/*"): the Service's hostname, else the address.
      trace: this.tracer.start(`${service ? service.slice(service.indexOf('/') + 1) : meta.dst.ip}:${meta.dst.port}/*`, req.headers),
      pool: this.pool,
      balancer: this.balancer,
      random: this.random,
      telemetry: this.opts.telemetry,
      draining: () => this.draining,
      upgrade,
      sourcePort: meta.sourcePort,
    });
    this.process(ex, service).catch((err: unknown) => ex.fail(err));
  }

  /** The request's way through the waypoint, in Envoy's filter order as Istio configures it. */
  private async process(ex: Exchange, service: string): Promise<void> {
    const { info } = ex;
    const targets = service ? [this.opts.gatewayKey, `Service/${service}`] : [this.opts.gatewayKey];
    const decision = this.opts.authorize(info, targets);
    ex.policy = decision.policy;
    if (!decision.allowed) return ex.reply(403, 'RBAC', 'RBAC: access denied');

    const svcPolicy = service ? this.opts.resilience(service) : NO_RESILIENCE;
    if (!svcPolicy.takeToken()) return ex.reply(429, 'RL', 'local_rate_limited');
    const fault = svcPolicy.fault();
    if (fault.delayMs > 0) {
      ex.flags = 'DI';
      if (!(await ex.sleep(fault.delayMs))) return;
    }
    if (fault.abortStatus > 0) return ex.reply(fault.abortStatus, 'FI', 'fault filter abort');

    let rule: RouteRule | undefined;
    let backend: { service: string; port: number };
    let candidates: readonly Candidate[];
    if (service) {
      const decision = this.route(ex, service);
      if (!decision) return;
      rule = decision.rule;
      backend = decision.backend;
      candidates = this.candidates(backend.service, backend.port);
    } else {
      // A pod dialled by its IP: that workload only, no routes (Istio routes by Service only).
      const w = this.opts.state.workloadByIp(info.destination.ip);
      if (!w) return ex.reply(404, 'NR', `no workload or service at ${info.destination.ip}`);
      backend = { service: '', port: info.destination.port };
      candidates = [this.candidate({ workload: w, ip: info.destination.ip, port: info.destination.port, appProtocol: '' }, '')];
    }
    const policy = backend.service ? this.opts.resilience(backend.service) : NO_RESILIENCE;
    await ex.forward(candidates, rule, policy);
  }

  /** Route selection and the rule's filters; undefined when the exchange has been answered. */
  private route(ex: Exchange, service: string): { rule: RouteRule | undefined; backend: { service: string; port: number } } | undefined {
    const decision = ex.selectRule(this.opts.routes(service));
    if (!decision) return { rule: undefined, backend: { service, port: ex.info.destination.port } };
    const { rule } = decision;
    if (!ex.applyFilters(rule, decision.match)) return undefined;
    const backend = ex.pickBackend(rule);
    // No backend with weight, or the share of one the controller could not resolve (service ''):
    // 500, as the Gateway API asks (HTTPBackendRef).
    if (!backend?.service) {
      ex.reply(500, 'NR', `route ${rule.origin} has no usable backend for this request`);
      return undefined;
    }
    for (const m of ex.mirrors) {
      if (!m.service) continue;
      const mirrorTargets = this.candidates(m.service, m.port);
      ex.mirror(mirrorTargets, m.service ? this.opts.resilience(m.service) : NO_RESILIENCE);
    }
    return { rule, backend };
  }

  /**
   * The endpoints of a Service's port as candidates: made once per endpoint list the state hands
   * out (MeshState keeps one until the next change), not on every request.
   */
  private candidates(service: string, port: number): readonly Candidate[] {
    const endpoints = this.opts.state.endpoints(service, port);
    const made = this.candidatesOf.get(endpoints);
    if (made?.service === service) return made.list;
    const list = endpoints.map((e) => this.candidate(e, service));
    this.candidatesOf.set(endpoints, { service, list });
    return list;
  }

  private candidate(e: ServiceEndpoint, service: string): Candidate {
    const w = e.workload;
    return {
      key: `${e.ip}:${e.port}`,
      service,
      workloadUid: w.uid,
      target: { ip: e.ip, port: e.port, identity: `spiffe://${w.trustDomain || this.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}` },
      protocol: UPSTREAM_PROTOCOL.get(e.appProtocol),
    };
  }

  private recordBadRequest(meta: StreamMeta): void {
    this.opts.telemetry.record({
      req: bareRequest(meta, this.serviceAt(meta.dst.ip)),
      status: 400,
      grpcStatus: '',
      flags: 'DPE',
      durationMs: 0,
      requestBytes: 0,
      responseBytes: 11,
      destination: null,
      route: '',
      traceparent: '',
    });
  }

  /** Whether the destination's port says appProtocol tcp: on its Service by VIP, or on a pod's. */
  private declaredTcp(dst: StreamMeta['dst']): boolean {
    const svc = this.opts.state.serviceByVip(dst.ip);
    if (svc) return svc.ports.some((p) => p.servicePort === dst.port && p.appProtocol === 'tcp');
    const w = this.opts.state.workloadByIp(dst.ip);
    return !!w && Object.values(w.services).some((l) => l.ports.some((p) => (p.targetPort || p.servicePort) === dst.port && p.appProtocol === 'tcp'));
  }

  /** "ns/hostname" of the Service whose VIP this is; '' for anything else. */
  private serviceAt(ip: string): string {
    const svc = this.opts.state.serviceByVip(ip);
    return svc ? `${svc.namespace}/${svc.hostname}` : '';
  }

  /**
   * Not HTTP: forwarded as bytes to one endpoint. The authorizer still judges it, as a request
   * with no method or path, so an ALLOW that names HTTP fields never lets TCP through (fail closed).
   * An endpoint that cannot be reached is replaced by another, as for HTTP without a retry policy;
   * when none answers, the client's stream is closed.
   */
  private async passthrough(stream: Duplex, meta: StreamMeta, head: Buffer | undefined): Promise<void> {
    const service = this.serviceAt(meta.dst.ip);
    const info = bareRequest(meta, service);
    const targets = service ? [this.opts.gatewayKey, `Service/${service}`] : [this.opts.gatewayKey];
    if (!this.opts.authorize(info, targets).allowed) return void stream.destroy();
    let candidates: readonly Candidate[];
    if (service) candidates = this.candidates(service, meta.dst.port);
    else {
      const w = this.opts.state.workloadByIp(meta.dst.ip);
      candidates = w ? [this.candidate({ workload: w, ip: meta.dst.ip, port: meta.dst.port, appProtocol: '' }, '')] : [];
    }
    const policy = service ? this.opts.resilience(service) : NO_RESILIENCE;
    // The circuit breaker counts TCP streams as connections too (Istio's connectionPool.tcp).
    const gone = new AbortController();
    stream.once('close', () => gone.abort());
    const release = await policy.admit(gone.signal);
    if (!release) return void stream.destroy();
    try {
      await this.forwardTcp(stream, candidates, policy, head);
    } finally {
      release();
    }
  }

  private async forwardTcp(stream: Duplex, candidates: readonly Candidate[], policy: ResiliencePort, head: Buffer | undefined): Promise<void> {
    const tried = new Set<string>();
    for (let n = 0; n <= TCP_CONNECT_RETRIES && !stream.destroyed; n++) {
      const ep = this.balancer.pick(
        candidates.filter((c) => !policy.ejected(c.key) && !tried.has(c.key)),
        (c) => c.key,
      );
      if (!ep) break;
      tried.add(ep.key);
      const done = this.balancer.start(ep.key);
      try {
        const up = await this.opts.upstream.connect(ep.target);
        policy.record(ep.key, true);
        if (head) up.write(head);
        await splice(stream, up);
        return;
      } catch (err) {
        policy.record(ep.key, false);
        log.debug({ err: (err as Error).message, endpoint: ep.key }, 'TCP passthrough: endpoint unreachable');
      } finally {
        done();
      }
    }
    stream.destroy();
  }
}

/** What the authorizer, router and telemetry know of the request. */
function requestInfo(req: http.IncomingMessage | http2.Http2ServerRequest, meta: StreamMeta, version: '1.1' | '2', service: string): RequestInfo {
  const headers: Record<string, string | string[] | undefined> = {};
  for (const [k, v] of Object.entries(req.headers)) if (!k.startsWith(':')) headers[k] = v;
  const authority = version === '2' ? (headerString(req.headers[':authority']) ?? headerString(req.headers.host) ?? '') : (headerString(req.headers.host) ?? '');
  return {
    version,
    protocol: /^application\/grpc/.test(headerString(req.headers['content-type']) ?? '') ? 'grpc' : 'http',
    method: (req.method ?? 'GET').toUpperCase(),
    path: req.url ?? '/',
    authority,
    headers,
    source: { principal: meta.sourcePrincipal, namespace: namespaceOf(meta.sourcePrincipal), ip: meta.sourceIp },
    destination: { ip: meta.dst.ip, port: meta.dst.port, service },
  };
}

function isWebSocket(req: http.IncomingMessage): boolean {
  return (headerString(req.headers.upgrade) ?? '').toLowerCase() === 'websocket';
}

/**
 * Whether a request carries a body: HTTP/1.1 says so with Transfer-Encoding or a non-zero
 * Content-Length (RFC 9112 §6.3), HTTP/2 by not ending the stream with the HEADERS frame.
 */
function hasBody(req: http.IncomingMessage | http2.Http2ServerRequest): boolean {
  if (req instanceof http2.Http2ServerRequest) return !req.stream.endAfterHeaders;
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0');
}

/** A request with no method, path or headers: TCP, or HTTP too malformed to read. */
function bareRequest(meta: StreamMeta, service: string): RequestInfo {
  return {
    version: '1.1',
    protocol: 'http',
    method: '',
    path: '',
    authority: '',
    headers: {},
    source: { principal: meta.sourcePrincipal, namespace: namespaceOf(meta.sourcePrincipal), ip: meta.sourceIp },
    destination: { ip: meta.dst.ip, port: meta.dst.port, service },
  };
}

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The last principal namespaceOf() read, and its namespace: requests come in runs from one client. */
let lastPrincipal = '';
let lastNamespace = '';

/** "td/ns/x/sa/y" → "x". */
function namespaceOf(principal: string): string {
  if (principal === lastPrincipal) return lastNamespace;
  const parts = principal.split('/');
  const i = parts.indexOf('ns');
  lastPrincipal = principal;
  lastNamespace = i >= 0 ? (parts[i + 1] ?? '') : '';
  return lastNamespace;
}

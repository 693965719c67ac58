// One client request through the waypoint: its outgoing form (after filters), its attempts at
// endpoints (retries, per-attempt and whole-request timeouts), the response streamed back
// (trailers included, for gRPC), local replies, and the one telemetry record when it ends.
// Local replies carry Envoy's texts and response flags, so dashboards and runbooks written for
// Istio read the same.
import * as http2 from 'node:http2';
import type * as http from 'node:http';
import type { Readable } from 'node:stream';
import { logger } from '../common/log.ts';
import { splice } from '../hbone/index.ts';
import { dropB3, type RequestTrace } from '../tracing/index.ts';
import type { Backend, HeaderModifier, Route, RouteMatch, RouteRule } from '../xds/routes.ts';
import type { Balancer } from './balancer.ts';
import type { RequestBody } from './body.ts';
import { UpstreamConnectError } from './errors.ts';
import { forwardHeaders, grpcCode, headerText, hopByHop } from './fields.ts';
import { type HeaderMap, mirrorSampled, modifyHeaders, redirectLocation, rewriteUrl } from './filters.ts';
import type { ResiliencePort, TelemetryPort, CompletedRequest } from './ports.ts';
import type { L7ResponseFlag, RequestInfo } from './request.ts';
import { normalizeTarget } from './path.ts';
import { pickBackend, selectRule } from './router.ts';
import type { InboundResponse, UpstreamPool, UpstreamProtocol, UpstreamTarget } from './upstream.ts';
import type { RawResponse, UpgradeSide } from './upgrade.ts';

const log = logger('waypoint');

/** What an HTTP/1.1 ServerResponse, an HTTP/2 compatibility response and a RawResponse share. */
export interface Downstream {
  readonly headersSent: boolean;
  writeHead(status: number, headers: http.OutgoingHttpHeaders): unknown;
  write(chunk: Buffer): boolean;
  end(): unknown;
  end(chunk: Buffer): unknown;
  addTrailers(trailers: Record<string, string>): void;
  once(event: 'finish' | 'close' | 'drain', listener: () => void): unknown;
}

/** An endpoint a request may go to. */
export interface Candidate {
  /** "ip:port": the balancer's and outlier detection's key. */
  key: string;
  /** The backend Service ("ns/hostname"), '' for a pod dialled directly. */
  service: string;
  workloadUid: string;
  target: UpstreamTarget;
  /** What the endpoint speaks when its port says (appProtocol); else what the client spoke. */
  protocol: UpstreamProtocol | undefined;
}

export interface ExchangeInit {
  info: RequestInfo;
  res: Downstream;
  body: RequestBody;
  /** This hop's span and the trace headers the request goes upstream with. */
  trace: RequestTrace;
  pool: UpstreamPool;
  balancer: Balancer;
  /** [0, 1): weighted backends and mirror sampling. */
  random: () => number;
  telemetry: TelemetryPort;
  /** The waypoint is draining: HTTP/1.1 responses then close their connection. */
  draining: () => boolean;
  /** The client's port, for telemetry; absent when unknown. */
  sourcePort?: number;
  /** Set for an HTTP/1.1 Upgrade request (upgrade.ts): `res` is then a RawResponse on its socket. */
  upgrade?: UpgradeSide;
}

/**
 * Retries of a route without a retry policy, for connection failures only (nothing reached the
 * application, so it is always safe): Istio's default retry policy has 2 attempts and retries
 * connect-failure and refused-stream (meshConfig.defaultHttpRetryPolicy).
 */
const DEFAULT_CONNECT_RETRIES = 2;

/** A mirror that never answers is cut off after this, so it cannot hold memory forever. */
const MIRROR_TIMEOUT_MS = 30_000;

type Outcome =
  | { kind: 'response'; res: InboundResponse; attempt: Attempt }
  | { kind: 'timeout' | 'connect' | 'reset' | 'gone'; err?: unknown };

/** One attempt's timer and accounting, alive until its response has been streamed. */
interface Attempt {
  timedOut: boolean;
  end(): void;
}

export class Exchange {
  readonly info: RequestInfo;
  flags: L7ResponseFlag = '-';
  /** "namespace/name" of the authorization policy that allowed or denied the request ('' when none decided). */
  policy = '';
  /** Mirror backends this request was sampled for. */
  readonly mirrors: Backend[] = [];
  private status = 0;
  private grpcStatus = '';
  private route = '';
  private destination: CompletedRequest['destination'] = null;
  private readonly started = performance.now();
  private deadline = Infinity;
  private responseBytes = 0;
  /** Bytes the client sent after a protocol switch; the request body counts the rest. */
  private upgradedBytes = 0;
  private tunnelling = false;
  private finished = false;
  private recorded = false;
  private readonly gone = new AbortController();
  private readonly res: Downstream;
  private readonly body: RequestBody;
  private readonly init: ExchangeInit;
  // The request as it goes upstream, after filters.
  private authority: string;
  private target: string;
  private readonly headers: HeaderMap;
  private readonly responseMods: HeaderModifier[] = [];
  private rule: RouteRule | undefined;

  constructor(init: ExchangeInit) {
    this.init = init;
    this.info = init.info;
    this.res = init.res;
    this.body = init.body;
    // An HTTP/1.0 request may carry no Host; the upstream then gets the address dialled.
    this.authority = init.info.authority || `${init.info.destination.ip}:${init.info.destination.port}`;
    // Routed and forwarded normalized (path.ts); RequestInfo keeps the path as received.
    this.target = normalizeTarget(init.info.path);
    this.headers = forwardHeaders(init.info.headers);
    if (init.upgrade) {
      // The two fields that ask for the upgrade are hop-by-hop, but this hop passes the request on.
      this.headers.connection = 'upgrade';
      this.headers.upgrade = headerText(init.info.headers.upgrade);
    }
    // The caller's context is replaced by this hop's: its B3 headers go (ours come back in the
    // caller's encoding when it used B3), traceparent and tracestate are overwritten.
    dropB3(this.headers);
    Object.assign(this.headers, init.trace.headers);
    this.res.once('finish', () => (this.finished = true));
    this.res.once('close', () => {
      // A protocol switch records itself once both directions are done (switchProtocols).
      if (this.tunnelling) return;
      if (!this.finished) {
        this.gone.abort();
        if (this.flags === '-') this.flags = 'DC';
      }
      this.record();
    });
  }

  private get protocol(): UpstreamProtocol {
    return this.info.version === '2' ? 'http2' : 'http1';
  }

  /** What to speak to an endpoint: an upgrade needs HTTP/1.1 whatever the port says. */
  private protocolFor(ep: Candidate): UpstreamProtocol {
    return this.init.upgrade ? 'http1' : (ep.protocol ?? this.protocol);
  }

  /** The Route's first rule for this request (router.ts); remembered for telemetry and mirrors. */
  selectRule(route: Route | undefined): { rule: RouteRule; match: RouteMatch | null } | undefined {
    const d = selectRule(route, { method: this.info.method, path: this.target, headers: this.info.headers, port: this.info.destination.port });
    if (d) {
      this.rule = d.rule;
      this.route = d.rule.origin;
    }
    return d;
  }

  /** Applies the rule's filters in order; false when one answered the request (a redirect). */
  applyFilters(rule: RouteRule, match: RouteMatch | null): boolean {
    for (const f of rule.filters) {
      switch (f.type) {
        case 'REQUEST_HEADER_MODIFIER':
          if (f.requestHeaderModifier) modifyHeaders(this.headers, f.requestHeaderModifier);
          break;
        case 'RESPONSE_HEADER_MODIFIER':
          if (f.responseHeaderModifier) this.responseMods.push(f.responseHeaderModifier);
          break;
        case 'URL_REWRITE':
          if (f.urlRewrite) ({ authority: this.authority, target: this.target } = rewriteUrl(f.urlRewrite, this.authority, this.target, match));
          break;
        case 'REQUEST_REDIRECT':
          if (f.requestRedirect) {
            const r = redirectLocation(f.requestRedirect, { authority: this.authority, target: this.target, port: this.info.destination.port }, match);
            this.reply(r.status, '-', '', { location: r.location });
            return false;
          }
          break;
        case 'REQUEST_MIRROR':
          if (f.requestMirror && mirrorSampled(f.requestMirror.percent, this.init.random)) this.mirrors.push(f.requestMirror.backend);
          break;
      }
    }
    return true;
  }

  pickBackend(rule: RouteRule): Backend | undefined {
    return pickBackend(rule.backends, this.init.random);
  }

  /**
   * Sends a copy of the request to one of `candidates` and forgets it: its response is read and
   * dropped, its failure only logged, and its body copy is cut off rather than ever slowing the
   * client (body.ts).
   */
  mirror(candidates: readonly Candidate[], policy: ResiliencePort): void {
    const ep = this.init.balancer.pick(
      candidates.filter((c) => !policy.ejected(c.key)),
      (c) => c.key,
    );
    const body = this.body.empty ? null : this.body.open(true);
    if (!ep || (!body && !this.body.empty)) return;
    const ac = new AbortController();
    let answer: InboundResponse | undefined;
    const timer = setTimeout(() => (answer ? answer.abort() : ac.abort()), this.rule?.timeouts.requestMs || MIRROR_TIMEOUT_MS);
    const req = { method: this.info.method, target: this.target, authority: this.authority, headers: { ...this.headers }, body };
    this.init.pool.request(this.protocolFor(ep), ep.target, req, policy.maxRequestsPerConnection, ac.signal).then(
      (res) => {
        answer = res;
        res.body.on('error', () => {});
        res.body.once('close', () => clearTimeout(timer));
        res.body.resume();
      },
      (err: unknown) => {
        clearTimeout(timer);
        body?.destroy();
        log.debug({ err: (err as Error).message, endpoint: ep.key }, 'mirror request failed');
      },
    );
  }

  /** Admission (circuit breaker), then attempts until a response is streamed or given up on. */
  async forward(candidates: readonly Candidate[], rule: RouteRule | undefined, policy: ResiliencePort): Promise<void> {
    if (candidates.length === 0) return this.reply(503, 'UH', 'no healthy upstream');
    const release = await policy.admit(this.gone.signal);
    if (this.gone.signal.aborted) return release?.();
    if (!release) return this.reply(503, 'UO', 'upstream connect error or disconnect/reset before headers. reset reason: overflow');
    try {
      await this.attempts(candidates, rule, policy);
    } finally {
      release();
    }
  }

  private async attempts(candidates: readonly Candidate[], rule: RouteRule | undefined, policy: ResiliencePort): Promise<void> {
    const retry = rule?.retry ?? null;
    const perTry = rule?.timeouts.backendRequestMs ?? 0;
    if (rule && rule.timeouts.requestMs > 0) this.deadline = this.started + rule.timeouts.requestMs;
    const tried = new Set<string>();
    for (let n = 0; ; n++) {
      const ep = this.init.balancer.pick(
        candidates.filter((c) => !policy.ejected(c.key)),
        (c) => c.key,
        tried,
      );
      if (!ep) return this.reply(503, 'UH', 'no healthy upstream');
      const body = this.body.empty ? null : this.body.open();
      // Retries are only attempted while the body is replayable, so only the first can miss.
      if (!body && !this.body.empty) return this.reply(503, 'UF', 'upstream connect error or disconnect/reset before headers. reset reason: request body not replayable');
      tried.add(ep.key);
      this.destination = { service: ep.service, workloadUid: ep.workloadUid, ip: ep.target.ip, port: ep.target.port };
      const out = await this.attempt(ep, body, perTry, policy);
      if (out.kind === 'gone') return;
      const status = out.kind === 'response' ? out.res.status : out.kind === 'timeout' ? 504 : 503;
      // Envoy's outlier detection counts locally originated failures (connect, reset, timeout) as
      // 5xx unless split_external_local_origin_errors is set; Istio does not set it.
      policy.record(ep.key, out.kind === 'response' && status < 500);
      const backoff = retry?.backoffMs ?? 0;
      const retries = retry ? retry.attempts : DEFAULT_CONNECT_RETRIES;
      const retriable = out.kind === 'connect' || (retry !== null && retry.codes.includes(status));
      if (n < retries && retriable && this.body.replayable && performance.now() + backoff < this.deadline) {
        if (out.kind === 'response') discard(out.res, out.attempt);
        if (backoff > 0 && !(await this.sleep(backoff))) return;
        continue;
      }
      if (out.kind === 'response') return this.respond(out.res, out.attempt);
      if (out.kind === 'timeout') return this.reply(504, 'UT', 'upstream request timeout');
      return this.reply(503, 'UF', `upstream connect error or disconnect/reset before headers. reset reason: ${out.kind === 'connect' ? 'connection failure' : 'remote reset'}`);
    }
  }

  /** One try at one endpoint, bounded by backendRequest and what is left of the request timeout. */
  private async attempt(ep: Candidate, body: Readable | null, perTryMs: number, policy: ResiliencePort): Promise<Outcome> {
    const ac = new AbortController();
    let res: InboundResponse | undefined;
    const state: Attempt = { timedOut: false, end: () => {} };
    const limit = Math.min(perTryMs > 0 ? perTryMs : Infinity, this.deadline - performance.now());
    const timer = Number.isFinite(limit)
      ? setTimeout(
          () => {
            state.timedOut = true;
            if (res) res.abort();
            else ac.abort(new Error('attempt timed out'));
          },
          Math.max(0, limit),
        )
      : undefined;
    const onGone = (): void => (res ? res.abort() : ac.abort(new Error('client went away')));
    this.gone.signal.addEventListener('abort', onGone, { once: true });
    const inFlight = this.init.balancer.start(ep.key);
    state.end = () => {
      clearTimeout(timer);
      this.gone.signal.removeEventListener('abort', onGone);
      inFlight();
    };
    try {
      res = await this.init.pool.request(
        this.protocolFor(ep),
        ep.target,
        { method: this.info.method, target: this.target, authority: this.authority, headers: this.headers, body },
        policy.maxRequestsPerConnection,
        ac.signal,
      );
      return { kind: 'response', res, attempt: state };
    } catch (err) {
      state.end();
      body?.destroy();
      if (this.gone.signal.aborted) return { kind: 'gone' };
      if (state.timedOut) return { kind: 'timeout' };
      return { kind: err instanceof UpstreamConnectError ? 'connect' : 'reset', err };
    }
  }

  /**
   * The endpoint switched protocols: the 101 goes to the client and the connections are joined
   * until either closes. The attempt's timers stop here: request timeouts bound the handshake,
   * not the WebSocket's life (Istio's advice is to disable them for WebSocket routes anyway).
   */
  private async switchProtocols(up: InboundResponse, upgraded: NonNullable<InboundResponse['upgraded']>, client: UpgradeSide, attempt: Attempt): Promise<void> {
    attempt.end();
    const headers: HeaderMap = { ...up.headers };
    for (const mod of this.responseMods) modifyHeaders(headers, mod);
    this.status = 101;
    this.finished = true;
    this.tunnelling = true;
    this.res.writeHead(101, headers as http.OutgoingHttpHeaders);
    if (upgraded.head.length > 0) client.socket.write(upgraded.head);
    if (client.head.length > 0) upgraded.socket.write(client.head);
    const r = await splice(client.socket, upgraded.socket);
    this.upgradedBytes = r.aToB;
    this.responseBytes += r.bToA;
    this.tunnelling = false;
    this.record();
  }

  /** Streams the endpoint's response to the client: status, filtered headers, body, trailers. */
  private respond(up: InboundResponse, attempt: Attempt): Promise<void> {
    if (up.upgraded && this.init.upgrade) return this.switchProtocols(up, up.upgraded, this.init.upgrade, attempt);
    const headers: HeaderMap = {};
    const hop = hopByHop(up.headers);
    for (const [k, v] of Object.entries(up.headers)) if (!hop.has(k)) headers[k] = v;
    for (const mod of this.responseMods) modifyHeaders(headers, mod);
    this.closeIfDraining(headers);
    this.status = up.status;
    this.grpcStatus = headerText(up.headers['grpc-status']);
    this.res.writeHead(up.status, headers as http.OutgoingHttpHeaders);
    return new Promise((resolve) => {
      let ended = false;
      const body = up.body;
      body.on('data', (chunk: Buffer) => {
        this.responseBytes += chunk.length;
        if (!this.res.write(chunk)) {
          body.pause();
          this.res.once('drain', () => body.resume());
        }
      });
      body.on('error', () => {});
      body.once('end', () => {
        ended = true;
        const t = up.trailers();
        if (t && Object.keys(t).length > 0) {
          this.grpcStatus = headerText(t['grpc-status']) || this.grpcStatus;
          const trailers: Record<string, string> = {};
          for (const [k, v] of Object.entries(t)) if (v !== undefined && !k.startsWith(':')) trailers[k] = headerText(v);
          this.res.addTrailers(trailers);
        }
        this.res.end();
        attempt.end();
        resolve();
      });
      body.once('close', () => {
        if (ended) return;
        // Too late for a status: the client learns of the failure as a reset stream (HTTP/2) or a
        // connection closed before the message ended (HTTP/1.1).
        this.flags = attempt.timedOut ? 'UT' : 'UF';
        this.abortDownstream();
        attempt.end();
        resolve();
      });
    });
  }

  /**
   * A local reply. gRPC clients get Envoy's form of it: HTTP 200 with the grpc-status the HTTP
   * status maps to (grpc/doc/http-grpc-status-mapping.md), since a gRPC client reads no body.
   */
  reply(status: number, flag: L7ResponseFlag, text: string, extra: Record<string, string> = {}): void {
    if (flag !== '-') this.flags = flag;
    if (this.res.headersSent) return this.abortDownstream();
    if (this.info.protocol === 'grpc') {
      this.status = 200;
      this.grpcStatus = String(grpcCode(status));
      this.res.writeHead(200, { 'content-type': 'application/grpc', 'grpc-status': this.grpcStatus, 'grpc-message': encodeURIComponent(text), ...extra });
      this.res.end();
      return;
    }
    this.status = status;
    const payload = Buffer.from(text);
    const headers: HeaderMap = { 'content-type': 'text/plain', 'content-length': String(payload.length), ...extra };
    this.closeIfDraining(headers);
    this.res.writeHead(status, headers as http.OutgoingHttpHeaders);
    this.responseBytes += payload.length;
    this.res.end(payload);
  }

  /** Something unexpected: logged, and the client gets a 500 or, mid-response, a reset. */
  fail(err: unknown): void {
    log.warn({ err: (err as Error).message, path: this.info.path, service: this.info.destination.service }, 'request failed inside the waypoint');
    this.reply(500, '-', 'internal error');
  }

  /** Waits, unless the client goes away or the request times out first; false then. */
  sleep(ms: number): Promise<boolean> {
    const left = this.deadline - performance.now();
    return new Promise((resolve) => {
      if (this.gone.signal.aborted) return resolve(false);
      const onGone = (): void => {
        clearTimeout(timer);
        resolve(false);
      };
      const timer = setTimeout(
        () => {
          this.gone.signal.removeEventListener('abort', onGone);
          if (ms > left) {
            this.reply(504, 'UT', 'upstream request timeout');
            resolve(false);
          } else resolve(true);
        },
        Math.min(ms, Math.max(0, left)),
      );
      this.gone.signal.addEventListener('abort', onGone, { once: true });
    });
  }

  private closeIfDraining(headers: HeaderMap): void {
    if (this.info.version === '1.1' && this.init.draining()) headers.connection = 'close';
  }

  private abortDownstream(): void {
    if (this.res instanceof http2.Http2ServerResponse) this.res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    else (this.res as http.ServerResponse | RawResponse).destroy();
  }

  private record(): void {
    if (this.recorded) return;
    this.recorded = true;
    const done: CompletedRequest = {
      req: this.info,
      status: this.status,
      grpcStatus: this.grpcStatus,
      flags: this.flags,
      durationMs: performance.now() - this.started,
      requestBytes: this.body.bytes + this.upgradedBytes,
      responseBytes: this.responseBytes,
      destination: this.destination,
      route: this.route,
      traceparent: this.init.trace.traceparent,
      trace: this.init.trace,
      ...(this.policy ? { policy: this.policy } : {}),
      ...(this.init.sourcePort ? { sourcePort: this.init.sourcePort } : {}),
    };
    this.init.telemetry.record(done);
    // Per request only with MESH_TRACE=waypoint (the access log is telemetry's).
    if (log.isLevelEnabled('debug')) {
      const d = done.destination;
      log.debug({ method: this.info.method, path: this.info.path, route: done.route, endpoint: d ? `${d.ip}:${d.port}` : null, status: done.status, flags: done.flags, ms: Math.round(done.durationMs) }, 'request');
    }
  }
}

/** A retried attempt's response is dropped; reading it to its end lets the connection be reused. */
function discard(res: InboundResponse, attempt: Attempt): void {
  res.body.on('error', () => {});
  res.body.once('close', () => attempt.end());
  res.body.resume();
}


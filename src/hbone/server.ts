// The HBONE server: terminates mutual TLS 1.3 + HTTP/2 on port 15008, checks each client's
// SPIFFE identity once per connection, parses every CONNECT and hands it to the handler (ztunnel
// inbound), which decides authorization and dials the application. On a 200 the tunnel is
// spliced to the application's socket; any other answer ends the stream with that status.
//
// One malformed stream or connection never affects another: every parse failure is a 400 on that
// stream, every TLS or HTTP/2 protocol failure ends only that connection.
import { once } from 'node:events';
import * as http2 from 'node:http2';
import type { AddressInfo, ListenOptions, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { HBONE_PORT } from '../common/constants.ts';
import { logger } from '../common/log.ts';
import { checkTrustDomain, formatSpiffeId, type SpiffeId } from '../identity/index.ts';
import { mtlsServerOptions, peerSpiffeId, type MtlsCredentials } from '../tls/index.ts';
import { HboneArgumentError, HboneClosedError } from './errors.ts';
import { H2_SESSION_OPTIONS, keepalive, PING_INTERVAL_MS, PING_TIMEOUT_MS, widenConnectionWindow } from './h2.ts';
import { type ForwardedFor, type HostPort, parseAuthority, parseBaggage, parseForwarded, parseTraceparent, type TraceParent } from './headers.ts';
import { splice, type SpliceCounter } from './splice.ts';

const log = logger('hbone');
const { NGHTTP2_CANCEL, NGHTTP2_INADEQUATE_SECURITY, NGHTTP2_NO_ERROR } = http2.constants;

/** What a tunnel carried once it ended, from the destination's point of view. */
export interface TunnelResult {
  /** Bytes from the client to the application (istio_tcp_received_bytes_total). */
  readonly received: number;
  /** Bytes from the application to the client (istio_tcp_sent_bytes_total). */
  readonly sent: number;
  /** Why it ended abnormally: a reset from either side. */
  readonly error?: Error;
}

/** One CONNECT request, as the handler sees it. */
export interface HboneTunnel {
  /** The HTTP/2 stream; after a 200 the library owns its data. */
  readonly stream: http2.ServerHttp2Stream;
  /** `:authority`: the pod IP and port the client wants. */
  readonly target: HostPort;
  /** The client's verified SPIFFE identity (the source workload). */
  readonly peerIdentity: SpiffeId;
  /** The outer TCP connection's peer (the source node's ztunnel, or the source pod). */
  readonly peerAddress: HostPort;
  /** The `forwarded: for=` address: the original client, when the source sent one. */
  readonly forwardedFor?: ForwardedFor;
  /** `baggage`, percent-decoded (k8s.namespace.name, k8s.deployment.name, service.name, …). */
  readonly baggage?: Readonly<Record<string, string>>;
  readonly traceparent?: TraceParent;
  /** Settles when the tunnel ends: byte counts after a 200, zeros otherwise. */
  readonly done: Promise<TunnelResult>;
  /** Ends the tunnel now with a reset on both sides (a policy no longer allows it). */
  abort(): void;
}

/** The handler's answer: 200 with the application's socket, or a refusal. */
export type HboneDecision =
  | { readonly status: 200; readonly upstream: Duplex; readonly count?: SpliceCounter }
  | { readonly status: 400 | 401 | 503; readonly reason: string };

/**
 * Decides one tunnel. Resolve {status: 200, upstream} with a connected socket to the application
 * (the library pipes both ways and ends it; `count` hears of each chunk: a = the tunnel), or a refusal: 401 policy deny, 503 application
 * unreachable, 400 malformed. A rejection is answered 503 and logged.
 */
export type HboneHandler = (tunnel: HboneTunnel) => Promise<HboneDecision>;

export interface HboneServerOptions {
  /** The identity this server presents (the destination workload's) and the roots it trusts. */
  readonly credentials: MtlsCredentials;
  readonly handler: HboneHandler;
  /**
   * Called once per connection with the client's identity (its chain already verified against
   * the roots); throw to refuse the connection. At least one of checkPeer and trustDomains.
   */
  readonly checkPeer?: (peer: SpiffeId, remote: HostPort) => void;
  /** Trust domains a client may be in; checked before checkPeer. */
  readonly trustDomains?: readonly string[];
  readonly pingIntervalMs?: number;
  readonly pingTimeoutMs?: number;
  /** TLS handshake bound: a client that connects and says nothing is dropped after this. */
  readonly handshakeTimeoutMs?: number;
  /** drain() waits this long for open tunnels before resetting them. */
  readonly drainTimeoutMs?: number;
}

interface PeerContext {
  readonly identity: SpiffeId;
  readonly address: HostPort;
  /** The client certificate's notAfter (ms): the session takes no new tunnels after it. */
  readonly expiresAt: number;
}

// A source's pool sends the same `baggage` and `forwarded` text on every CONNECT: parse each text
// once (parsing was ~30 µs a tunnel under connection churn, issue 16). Results are frozen, as
// they are shared; each map is emptied when it reaches its bound.
const PARSED_MAX = 1024;
const baggageSeen = new Map<string, Readonly<Record<string, string>> | undefined>();
const forwardedSeen = new Map<string, ForwardedFor | undefined>();

function cached<T extends object>(seen: Map<string, T | undefined>, text: string, parse: (s: string) => T | undefined): T | undefined {
  if (seen.has(text)) return seen.get(text);
  const v = parse(text); // a throw (malformed) is not cached
  if (seen.size >= PARSED_MAX) seen.clear();
  seen.set(text, v && Object.freeze(v));
  return v;
}

/** setTimeout's longest delay; later expiries are re-armed when it fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class HboneServer {
  private readonly server: http2.Http2SecureServer;
  private readonly opts: HboneServerOptions;
  private readonly peers = new WeakMap<http2.Http2Session, PeerContext>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly tunnels = new Set<http2.ServerHttp2Stream>();
  private draining = false;

  constructor(opts: HboneServerOptions) {
    if (!opts.checkPeer && !opts.trustDomains?.length) {
      throw new HboneArgumentError('HboneServer needs checkPeer or trustDomains: a server that accepts any identity the roots sign is not what the mesh wants');
    }
    this.opts = opts;
    this.server = http2.createSecureServer({
      ...mtlsServerOptions(opts.credentials, { alpn: ['h2'] }),
      ...H2_SESSION_OPTIONS,
      allowHTTP1: false,
      handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
      // A client that negotiated no ALPN is not HBONE; Node would otherwise hold it for 10 s.
      unknownProtocolTimeout: 100,
    });
    // Before http2's own listener wraps the socket: afterwards it refuses socket options
    // (ERR_HTTP2_NO_SOCKET_MANIPULATION).
    this.server.prependListener('secureConnection', (socket: TLSSocket) => {
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 30_000);
    });
    this.server.on('session', (s) => this.onSession(s));
    this.server.on('stream', (stream, headers) => {
      this.onStream(stream, headers).catch((e: unknown) => {
        log.error({ err: e }, 'HBONE stream handling failed');
        if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
      });
    });
    this.server.on('tlsClientError', (err, socket: TLSSocket) => {
      log.debug({ err: err.message, remote: socket.remoteAddress }, 'TLS handshake with an HBONE client failed');
    });
    this.server.on('sessionError', (err) => log.debug({ err: err.message }, 'HBONE session error'));
    this.server.on('unknownProtocol', (socket: Socket) => socket.destroy());
  }

  /**
   * Starts listening: on a listening socket's fd made in the pod's netns (`{fd}`, ztunnel), or on
   * an address (tests: 127.0.0.1 port 0).
   */
  async listen(options: ListenOptions | { fd: number } = { port: HBONE_PORT }): Promise<AddressInfo> {
    this.server.listen(options);
    await once(this.server, 'listening');
    return this.server.address() as AddressInfo;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** New credentials (rotated certificate, new roots) for connections from now on. */
  updateCredentials(credentials: MtlsCredentials): void {
    this.server.setSecureContext(mtlsServerOptions(credentials, { alpn: ['h2'] }));
  }

  /** Open connections and tunnels (admin / tests). */
  stats(): { sessions: number; tunnels: number } {
    return { sessions: this.sessions.size, tunnels: this.tunnels.size };
  }

  /**
   * Graceful drain: stop accepting, send GOAWAY on every connection, let open tunnels finish for
   * up to `timeoutMs`, then reset what is left. Resolves with the number of tunnels reset.
   */
  async drain(timeoutMs = this.opts.drainTimeoutMs ?? 30_000): Promise<{ reset: number }> {
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) if (!s.closed) s.close();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const outcome = await Promise.race([closed, timedOut]);
    clearTimeout(timer);
    const reset = outcome === 'timeout' ? this.tunnels.size : 0;
    if (outcome === 'timeout') {
      log.warn({ tunnels: reset }, `HBONE drain: ${reset} tunnels still open after ${timeoutMs} ms, resetting them`);
      for (const s of this.sessions) s.destroy();
      await closed;
    }
    return { reset };
  }

  /**
   * Stops accepting and sends GOAWAY on every connection, with no deadline of its own (ztunnel's
   * handover keeps its drain deadline across all its servers): open tunnels go on, the peers'
   * pools open new ones elsewhere, and each connection closes after its last tunnel.
   */
  goAway(): void {
    if (this.draining) return;
    this.draining = true;
    this.server.close();
    for (const s of this.sessions) if (!s.closed) s.close();
  }

  /** Closes at once: every connection and tunnel is reset. */
  async close(): Promise<void> {
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) s.destroy();
    await closed;
  }

  private onSession(session: http2.ServerHttp2Session): void {
    // session.socket is a proxy that forwards reads (certificate, addresses) to the TLS socket.
    const socket = session.socket as TLSSocket;
    const address: HostPort = { host: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    session.on('error', (err) => log.debug({ err: err.message, remote: address.host }, 'HBONE session failed'));
    let identity: SpiffeId;
    try {
      identity = peerSpiffeId(socket);
      if (this.opts.trustDomains?.length) checkTrustDomain(identity, this.opts.trustDomains);
      this.opts.checkPeer?.(identity, address);
    } catch (e) {
      // Node cannot refuse a client certificate inside the handshake beyond chain verification,
      // so refuse right after it: GOAWAY(INADEQUATE_SECURITY) and close (RFC 9113 §7, 0xc).
      log.warn({ remote: `${address.host}:${address.port}`, err: (e as Error).message }, 'HBONE client refused');
      session.goaway(NGHTTP2_INADEQUATE_SECURITY, 0);
      session.destroy();
      return;
    }
    const expiresAt = Date.parse(socket.getPeerCertificate().valid_to ?? '') || Infinity;
    this.peers.set(session, { identity, address, expiresAt });
    this.sessions.add(session);
    // The client proved its identity with a certificate that ends: at its notAfter the session
    // is closed gracefully (GOAWAY; open tunnels finish), so new tunnels need a new handshake
    // with a current certificate — a renewed one, or none.
    let expiry: NodeJS.Timeout | undefined;
    const arm = (): void => {
      const left = expiresAt - Date.now();
      if (!Number.isFinite(left)) return;
      expiry = setTimeout(() => (Date.now() >= expiresAt ? session.close() : arm()), Math.max(0, Math.min(left, MAX_TIMER_MS)));
      expiry.unref();
    };
    arm();
    session.once('close', () => {
      clearTimeout(expiry);
      this.sessions.delete(session);
    });
    widenConnectionWindow(session);
    keepalive(session, `${address.host}:${address.port}`, this.opts.pingIntervalMs ?? PING_INTERVAL_MS, this.opts.pingTimeoutMs ?? PING_TIMEOUT_MS);
    if (this.draining) session.close();
    log.debug({ remote: `${address.host}:${address.port}`, identity: formatSpiffeId(identity) }, 'HBONE session');
  }

  private async onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    stream.on('error', (err) => log.debug({ err: err.message }, 'HBONE stream error'));
    const peer = this.peers.get(stream.session!);
    if (!peer || Date.now() >= peer.expiresAt) {
      // Unknown, or authenticated with a certificate that has expired since: retry elsewhere.
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      if (peer && !stream.session!.closed) stream.session!.close();
      return;
    }
    const bad = (why: string): void => this.refuse(stream, 400, why, peer);
    const method = headers[':method'];
    if (method !== 'CONNECT') return bad(`method ${String(method)} is not CONNECT`);
    if (headers[':protocol'] !== undefined) return bad('extended CONNECT (:protocol) is not HBONE');
    const authority = headers[':authority'];
    const target = parseAuthority(authority);
    if (!target) return bad(`:authority "${String(authority).slice(0, 80)}" is not ip:port`);
    let forwardedFor: ForwardedFor | undefined;
    const fwd = headers.forwarded;
    if (fwd !== undefined) {
      try {
        forwardedFor = cached(forwardedSeen, String(fwd), parseForwarded);
      } catch (e) {
        return bad(`forwarded header: ${(e as Error).message}`);
      }
    }
    const rawBaggage = headers.baggage;
    const baggage = typeof rawBaggage === 'string' ? cached(baggageSeen, rawBaggage, parseBaggage) : undefined;
    const rawTrace = headers.traceparent;
    const traceparent = typeof rawTrace === 'string' ? parseTraceparent(rawTrace) : undefined;

    let settle!: (r: TunnelResult) => void;
    const done = new Promise<TunnelResult>((resolve) => (settle = resolve));
    const tunnel: HboneTunnel = {
      stream,
      target,
      peerIdentity: peer.identity,
      peerAddress: peer.address,
      ...(forwardedFor ? { forwardedFor } : {}),
      ...(baggage ? { baggage } : {}),
      ...(traceparent ? { traceparent } : {}),
      done,
      // CONNECT_ERROR, not CANCEL: Node's client reports CANCEL as a quiet close, and the
      // client must know the tunnel did not end normally (RFC 9113 §8.5).
      abort: () => {
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
      },
    };
    let decision: HboneDecision;
    try {
      decision = await this.opts.handler(tunnel);
    } catch (e) {
      log.error({ err: e, target: authority }, 'HBONE handler failed; answering 503');
      decision = { status: 503, reason: `handler failed: ${(e as Error).message}` };
    }
    if (decision.status !== 200) {
      this.refuse(stream, decision.status, decision.reason, peer);
      settle({ received: 0, sent: 0 });
      return;
    }
    const upstream = decision.upstream;
    if (stream.destroyed || stream.closed) {
      // The client gave up (or the session died) while the handler dialed.
      upstream.destroy();
      settle({ received: 0, sent: 0, error: new HboneClosedError('the client reset the tunnel before it was established') });
      return;
    }
    stream.respond({ ':status': 200 });
    this.tunnels.add(stream);
    const r = await splice(stream, upstream, decision.count);
    this.tunnels.delete(stream);
    settle(r.error ? { received: r.aToB, sent: r.bToA, error: r.error } : { received: r.aToB, sent: r.bToA });
  }

  private refuse(stream: http2.ServerHttp2Stream, status: number, reason: string, peer: PeerContext): void {
    // The reason stays in our log: telling a client why policy refused it would tell an attacker.
    log.debug({ status, reason, peer: formatSpiffeId(peer.identity) }, 'HBONE tunnel refused');
    if (stream.destroyed || stream.closed) return;
    stream.respond({ ':status': status }, { endStream: true });
    // RFC 9113 §8.1: after a complete response the server may reset with NO_ERROR so the client
    // stops sending a request body no one will read.
    stream.close(NGHTTP2_NO_ERROR);
  }
}

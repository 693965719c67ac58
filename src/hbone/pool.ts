// The HBONE client: a pool of HTTP/2-over-mTLS sessions, each carrying up to 100 CONNECT
// streams, keyed like ztunnel's WorkloadKey (source identity, destination identities, destination
// address, and the source IP when given). A stream is the tunnel: connect() resolves with it once
// the server answered 200, and it then behaves like a socket — end() sends END_STREAM (our FIN),
// 'end' is the other side's, destroy() resets.
import * as http2 from 'node:http2';
import { isIP, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { logger } from '../common/log.ts';
import { formatSpiffeId, type SpiffeId } from '../identity/index.ts';
import { mtlsClientOptions, TlsError, type MtlsCredentials } from '../tls/index.ts';
import {
  HboneArgumentError,
  HboneClosedError,
  HboneConnectError,
  type HboneError,
  HbonePeerIdentityError,
  HboneSessionError,
  HboneStreamError,
  HboneTlsError,
  statusError,
} from './errors.ts';
import { H2_SESSION_OPTIONS, keepalive, MAX_STREAMS, PING_INTERVAL_MS, PING_TIMEOUT_MS, widenConnectionWindow } from './h2.ts';
import { type ForwardedFor, formatAuthority, formatBaggage, formatForwarded, type HostPort, parseAuthority } from './headers.ts';

const log = logger('hbone');
const { NGHTTP2_CANCEL, NGHTTP2_INADEQUATE_SECURITY, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** The source workload's certificate: what SecretManager hands out (WorkloadCertificate fits). */
export interface HboneSource extends MtlsCredentials {
  readonly identity: SpiffeId | string;
  /** When the certificate expires: a session opened with it takes no new streams after that. */
  readonly notAfter?: Date;
}

/**
 * Makes the outer TCP socket, e.g. inside the source pod's netns with SO_MARK set. Return a
 * net.Socket (connected, connecting, or not yet connected — the pool connects it to `dst`) or the
 * fd of an unconnected TCP socket.
 */
export type DialHook = (dst: HostPort) => Socket | number | Promise<Socket | number>;

/** A session stops taking streams this long (at most a tenth of its life) before its certificates expire. */
const EXPIRY_MARGIN_MS = 5000;

export interface HboneConnectOptions {
  readonly source: HboneSource;
  /** The destination's HBONE endpoint: `podIP:15008`. */
  readonly dstAddr: string | HostPort;
  /** SPIFFE URIs the server may present: the workload's identity plus its service's. */
  readonly expectedIdentities: readonly string[];
  /** `:authority`: the destination pod IP and target port. */
  readonly authority: string | HostPort;
  /** `baggage`: a ready header value, or members to encode. */
  readonly baggage?: string | Readonly<Record<string, string>>;
  /** `forwarded: for=`: the original client's address. */
  readonly forwardedFor?: ForwardedFor;
  readonly traceparent?: string;
  /** More request headers (lowercase names). */
  readonly headers?: Readonly<Record<string, string>>;
  /** The source pod's IP: part of the pool key, as in ztunnel, so sockets made in one pod's netns are not shared with another. */
  readonly sourceIp?: string;
  /** Overrides the pool's hook for this connection's session. */
  readonly connectFromNetns?: DialHook;
  /** Bound on TCP + TLS + the CONNECT response; default the pool's connectTimeoutMs. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface HbonePoolOptions {
  /** Streams per HTTP/2 session before another session is opened (ztunnel: 100). */
  readonly maxStreamsPerSession?: number;
  /** A session without streams for this long is closed (ztunnel: 5 min). */
  readonly idleTimeoutMs?: number;
  readonly pingIntervalMs?: number;
  readonly pingTimeoutMs?: number;
  /** TCP + TLS handshake bound, and the default CONNECT response bound. */
  readonly connectTimeoutMs?: number;
  readonly connectFromNetns?: DialHook;
}

/** The tunnel: an HTTP/2 CONNECT stream after its 200. */
export type HboneStream = http2.ClientHttp2Stream & Duplex;

export interface PoolStats {
  readonly sessions: readonly { readonly key: string; readonly dst: string; readonly streams: number; readonly connected: boolean }[];
}

interface Pooled {
  readonly key: string;
  readonly dst: string;
  /** Set once the outer socket exists (after the dial hook). */
  session: http2.ClientHttp2Session | undefined;
  readonly ready: Promise<void>;
  readonly streams: Set<http2.ClientHttp2Stream>;
  /** Streams reserved: open, or about to be requested. */
  active: number;
  connected: boolean;
  /** No new streams: GOAWAY received, closing, or dead. */
  retired: boolean;
  /** The earlier expiry of the two certificates the session was authenticated with (ms): after it,
   * the session takes no new streams, so a new handshake proves both identities again. */
  expiresAt: number;
  /** The error that ended it, for waiters and late streams. */
  failure?: HboneError;
  idle?: NodeJS.Timeout;
  /** Retires the session, fails its waiters and tunnels with `err` (tunnels: just closed if `quiet`), and destroys it. */
  kill(err: HboneError, quiet?: boolean): void;
}

export class HbonePool {
  private readonly pools = new Map<string, Pooled[]>();
  /** Every session not yet dead, pooled or retired (draining its last tunnels). */
  private readonly live = new Set<Pooled>();
  private readonly maxStreams: number;
  private readonly idleTimeoutMs: number;
  private readonly pingIntervalMs: number;
  private readonly pingTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly dialHook: DialHook | undefined;
  private closed = false;

  constructor(opts: HbonePoolOptions = {}) {
    this.maxStreams = opts.maxStreamsPerSession ?? MAX_STREAMS;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 300_000;
    this.pingIntervalMs = opts.pingIntervalMs ?? PING_INTERVAL_MS;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? PING_TIMEOUT_MS;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.dialHook = opts.connectFromNetns;
    if (!(this.maxStreams >= 1 && this.maxStreams <= MAX_STREAMS)) {
      throw new HboneArgumentError(`maxStreamsPerSession ${this.maxStreams} must be 1..${MAX_STREAMS} (the server allows ${MAX_STREAMS})`);
    }
  }

  /**
   * Opens a tunnel to `authority` through the HBONE endpoint `dstAddr`. Resolves with the stream
   * once the server answered 200; rejects with a HboneError subclass otherwise (401 →
   * HboneDeniedError, 503 → HboneUpstreamError, 400 → HboneBadRequestError, all with `status`).
   */
  async connect(o: HboneConnectOptions): Promise<HboneStream> {
    if (this.closed) throw new HboneClosedError('the HBONE pool is closed (ztunnel is draining); no new tunnels');
    const dst = typeof o.dstAddr === 'string' ? parseAuthority(o.dstAddr) : o.dstAddr;
    if (!dst || !isIP(dst.host)) throw new HboneArgumentError(`dstAddr ${JSON.stringify(o.dstAddr)} is not ip:port`);
    // An address given as parts is checked by formatting it; only a string needs parsing.
    let authority: string | undefined;
    try {
      authority = typeof o.authority === 'string' ? (parseAuthority(o.authority) && o.authority) : formatAuthority(o.authority);
    } catch {
      authority = undefined;
    }
    if (!authority) throw new HboneArgumentError(`authority ${JSON.stringify(o.authority)} is not ip:port (IPv6 as [addr]:port)`);
    if (!o.expectedIdentities.length) {
      throw new HboneArgumentError(`no expected identities for ${authority}: the server's certificate could not be checked — is the destination's workload known to ztunnel?`);
    }
    o.signal?.throwIfAborted();
    const timeoutMs = o.timeoutMs ?? this.connectTimeoutMs;
    const srcId = typeof o.source.identity === 'string' ? o.source.identity : formatSpiffeId(o.source.identity);
    const ids = o.expectedIdentities.length === 1 ? o.expectedIdentities[0]! : [...o.expectedIdentities].sort().join(',');
    const key = `${srcId}|${ids}|${formatAuthority(dst)}|${o.sourceIp ?? ''}`;

    // A stream the server refused unprocessed — it sent GOAWAY (a ztunnel handing over to a new
    // one) while this CONNECT was on its way — is retried once on a fresh session (RFC 9113 §8.7).
    for (let attempt = 0; ; attempt++) {
      const p = this.acquire(key, dst, o);
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        this.release(p);
      };
      // A pooled session that is up needs no wait (nor its timer and promises): the common case.
      if (!p.connected) try {
        await withTimeout(p.ready, timeoutMs, o.signal, () => {
          const err = new HboneConnectError(
            `connection to ${p.dst} timed out after ${timeoutMs} ms — is a NetworkPolicy blocking HBONE port ${dst.port}, or is the node down?`,
          );
          // Everyone waiting on this session would time out too.
          if (!p.connected) p.kill(err);
          return err;
        });
      } catch (e) {
        release();
        throw e;
      }
      try {
        return await this.request(p, authority, o, timeoutMs, release);
      } catch (e) {
        if (attempt > 0 || !(e instanceof HboneStreamError && e.refused) || this.closed) throw e;
        this.retire(p);
      }
    }
  }

  /** Sessions and their stream counts. */
  stats(): PoolStats {
    const sessions = [...this.pools.values()].flat().map((p) => ({ key: p.key, dst: p.dst, streams: p.active, connected: p.connected }));
    return { sessions };
  }

  /** Graceful: no new tunnels, GOAWAY to every session, wait up to `timeoutMs` for open tunnels. */
  async close(timeoutMs = 30_000): Promise<void> {
    this.closed = true;
    const all = [...this.live];
    for (const p of all) this.retire(p);
    const closing = all.map((p) => new Promise<void>((resolve) => (!p.session || p.session.closed ? resolve() : p.session.close(() => resolve()))));
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.all(closing), t]);
    clearTimeout(timer);
    this.destroy();
  }

  /** Resets every session and tunnel now; open tunnels close (RST_STREAM) without an 'error'. */
  destroy(): void {
    this.closed = true;
    for (const p of [...this.live]) p.kill(new HboneClosedError('the HBONE pool was closed'), true);
    this.pools.clear();
  }

  private acquire(key: string, dst: HostPort, o: HboneConnectOptions): Pooled {
    let list = this.pools.get(key);
    if (!list) this.pools.set(key, (list = []));
    const now = Date.now();
    // On every new tunnel: no array is made unless a session has actually expired.
    const expired = list.some((x) => x.connected && x.expiresAt <= now) ? list.filter((x) => x.connected && x.expiresAt <= now) : [];
    for (const s of expired) {
      // Authenticated with a certificate that has since expired: its open tunnels finish (release
      // closes it after the last), new ones get a fresh handshake with the current certificates.
      this.retire(s);
      if (s.active === 0 && s.session && !s.session.closed && !s.session.destroyed) s.session.close();
    }
    // Retiring the last session of the key removed the list: register a new one.
    if (!this.pools.has(key)) this.pools.set(key, (list = []));
    let p = list.find((s) => !s.retired && s.active < this.maxStreams);
    if (!p) {
      p = this.open(key, dst, o);
      list.push(p);
    }
    p.active++;
    if (p.idle) {
      clearTimeout(p.idle);
      p.idle = undefined;
    }
    return p;
  }

  private release(p: Pooled): void {
    p.active--;
    // A retired session (expired certificates, GOAWAY) gets no new streams: close it after its last.
    if (p.active === 0 && p.retired && p.connected) {
      if (p.session && !p.session.closed && !p.session.destroyed) p.session.close();
      return;
    }
    if (p.active === 0 && !p.retired) {
      p.idle = setTimeout(() => {
        log.debug({ dst: p.dst }, 'closing idle HBONE session');
        this.retire(p);
        p.session?.close();
      }, this.idleTimeoutMs);
      p.idle.unref();
    }
  }

  private retire(p: Pooled, failure?: HboneError): void {
    if (failure && !p.failure) p.failure = failure;
    if (p.retired) return;
    p.retired = true;
    if (p.idle) clearTimeout(p.idle);
    const list = this.pools.get(p.key);
    if (!list) return;
    const i = list.indexOf(p);
    if (i >= 0) list.splice(i, 1);
    if (!list.length) this.pools.delete(p.key);
  }

  private open(key: string, dst: HostPort, o: HboneConnectOptions): Pooled {
    const label = formatAuthority(dst);
    let resolveReady!: () => void;
    let rejectReady!: (e: HboneError) => void;
    const ready = new Promise<void>((res, rej) => {
      resolveReady = res;
      rejectReady = rej;
    });
    ready.catch(() => {}); // waiters handle it; a session nobody waits for must not crash us
    const streams = new Set<http2.ClientHttp2Stream>();
    const p: Pooled = {
      key,
      dst: label,
      session: undefined,
      ready,
      streams,
      active: 0,
      connected: false,
      retired: false,
      expiresAt: o.source.notAfter?.getTime() ?? Infinity,
      kill: (err, quiet) => {
        this.live.delete(p);
        this.retire(p, err);
        rejectReady(p.failure ?? err);
        for (const s of streams) if (!s.destroyed) s.destroy(quiet ? undefined : (p.failure ?? err));
        if (p.session && !p.session.destroyed) p.session.destroy();
      },
    };
    this.live.add(p);
    log.debug({ dst: label, key }, 'opening HBONE session');
    this.establish(p, dst, o, resolveReady).catch((e: unknown) => p.kill(classify(e as Error, label, false)));
    return p;
  }

  // The outer socket comes from the hook (which may be async: it may enter a netns), then TLS and
  // HTTP/2 go on top. http2's createConnection is synchronous, hence the socket is made first.
  private async establish(p: Pooled, dst: HostPort, o: HboneConnectOptions, resolveReady: () => void): Promise<void> {
    const label = p.dst;
    const hook = o.connectFromNetns ?? this.dialHook;
    let raw: Socket | undefined;
    if (hook) {
      const made = await hook(dst);
      raw = typeof made === 'number' ? new Socket({ fd: made, readable: true, writable: true }) : made;
      if (p.retired) {
        raw.destroy(); // timed out or the pool closed while the hook ran
        return;
      }
      raw.setNoDelay(true);
      raw.setKeepAlive(true, 30_000);
      if (!raw.connecting && raw.remoteAddress === undefined) raw.connect({ host: dst.host, port: dst.port });
    }
    const tlsSocket = tls.connect({
      ...mtlsClientOptions(o.source, { identities: o.expectedIdentities }, { alpn: ['h2'] }),
      // HBONE sends no SNI (as ztunnel): the client checks the server's URI SAN, not a name.
      servername: '',
      ...(raw ? { socket: raw } : { host: dst.host, port: dst.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 30_000 }),
    });
    let spoke = false; // the server's SETTINGS arrived: it accepted us and speaks HTTP/2
    // Our listeners go on the TLS socket before http2's own, so a dying connection fails its
    // tunnels with an error that says what happened rather than a bare stream cancel.
    tlsSocket.on('error', (e) => p.kill(classify(e, label, p.connected)));
    tlsSocket.on('close', () => {
      if (!spoke && tlsSocket.authorized) {
        // TLS 1.3 ends the client's handshake before the server has checked our certificate; a
        // server that refuses it sends an alert, which Node reports (once HTTP/2 owns the socket)
        // as a plain close. A server that closes before its SETTINGS frame did exactly that.
        p.kill(
          new HboneTlsError(
            `${label} closed the connection right after the TLS handshake, before speaking HTTP/2 — it most likely refused our certificate: do both sides trust the same mesh root (istio-ca-root-cert), and is our certificate current?`,
          ),
        );
        return;
      }
      if (p.streams.size || !p.connected) {
        p.kill(new HboneSessionError(`connection to ${label} closed with ${p.streams.size} tunnels open — the peer ztunnel restarted or the node went away`));
      }
    });
    const session = http2.connect(`https://${label}`, { ...H2_SESSION_OPTIONS, createConnection: () => tlsSocket });
    p.session = session;
    session.once('remoteSettings', () => (spoke = true));
    session.on('error', (e) => p.kill(classify(e, label, p.connected)));
    session.on('goaway', (code) => {
      if (code === NGHTTP2_INADEQUATE_SECURITY) {
        const us = typeof o.source.identity === 'string' ? o.source.identity : formatSpiffeId(o.source.identity);
        p.kill(new HbonePeerIdentityError(`${label} refused our identity ${us} — is the source in a trust domain the destination accepts?`));
      } else if (code !== NGHTTP2_NO_ERROR) {
        p.kill(new HboneSessionError(`${label} ended the HTTP/2 session with error code ${code}`));
      } else {
        // Graceful GOAWAY (the peer drains): open tunnels continue, new ones go elsewhere.
        this.retire(p);
      }
    });
    session.on('close', () => p.kill(p.failure ?? new HboneSessionError(`HTTP/2 session to ${label} closed`)));
    session.once('connect', () => {
      if (tlsSocket.alpnProtocol !== 'h2') {
        p.kill(new HboneTlsError(`${label} did not negotiate ALPN h2 — is that port an HBONE endpoint (ztunnel 15008)?`));
        return;
      }
      p.connected = true;
      const peerNotAfter = Date.parse(tlsSocket.getPeerCertificate().valid_to ?? '');
      if (Number.isFinite(peerNotAfter)) p.expiresAt = Math.min(p.expiresAt, peerNotAfter);
      // Retire a little before: the server closes the session at our certificate's notAfter and
      // refuses streams after it, so a stream sent in the last moment would race that.
      const left = p.expiresAt - Date.now();
      if (Number.isFinite(left)) p.expiresAt -= Math.min(EXPIRY_MARGIN_MS, Math.max(0, left / 10));
      widenConnectionWindow(session);
      keepalive(session, label, this.pingIntervalMs, this.pingTimeoutMs);
      resolveReady();
    });
  }

  private request(p: Pooled, authority: string, o: HboneConnectOptions, timeoutMs: number, release: () => void): Promise<HboneStream> {
    const headers: http2.OutgoingHttpHeaders = { ...o.headers, ':method': 'CONNECT', ':authority': authority };
    if (o.baggage !== undefined) headers.baggage = typeof o.baggage === 'string' ? o.baggage : formatBaggage(o.baggage);
    if (o.forwardedFor) headers.forwarded = formatForwarded(o.forwardedFor);
    if (o.traceparent) headers.traceparent = o.traceparent;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = p.session!.request(headers, { endStream: false });
    } catch (e) {
      release();
      return Promise.reject(p.failure ?? classify(e as Error, p.dst, true));
    }
    p.streams.add(stream);
    // 'close' comes once: on() spares once()'s wrapper (per tunnel).
    stream.on('close', () => {
      p.streams.delete(stream);
      release();
    });
    return new Promise<HboneStream>((resolve, reject) => {
      let settled = false;
      const done = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        stream.off('response', onResponse);
        stream.off('error', onError);
        stream.off('close', onClose);
        o.signal?.removeEventListener('abort', onAbort);
        if (err) {
          if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
          reject(err);
        } else resolve(stream as HboneStream);
      };
      const onResponse = (h: http2.IncomingHttpHeaders): void => {
        const status = Number(h[':status']);
        done(status === 200 ? undefined : statusError(status, p.dst, authority));
      };
      const refused = (): HboneStreamError => {
        const err = new HboneStreamError(`${p.dst} refused the stream (REFUSED_STREAM) — the destination ztunnel is at its stream limit or draining; retry`);
        err.refused = true;
        return err;
      };
      const onError = (e: Error): void => done(stream.rstCode === NGHTTP2_REFUSED_STREAM ? refused() : (p.failure ?? (isHbone(e) ? e : classify(e, p.dst, true))));
      const onClose = (): void => {
        const code = stream.rstCode;
        done(code === NGHTTP2_REFUSED_STREAM ? refused() : (p.failure ?? new HboneStreamError(`${p.dst} reset the CONNECT to ${authority} before answering (HTTP/2 error code ${code})`)));
      };
      const onAbort = (): void => done(o.signal!.reason as Error);
      const timer = setTimeout(
        () => done(new HboneStreamError(`no answer from ${p.dst} to the CONNECT for ${authority} within ${timeoutMs} ms — the destination ztunnel is overloaded or the application dial hangs`)),
        timeoutMs,
      );
      stream.once('response', onResponse);
      stream.on('error', onError);
      stream.on('close', onClose);
      o.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function isHbone(e: Error): e is HboneError {
  return typeof (e as Partial<HboneError>).code === 'string' && (e as HboneError).code.startsWith('MESH_ERR_HBONE_');
}

/** Maps a socket / TLS / HTTP/2 failure to the HboneError an operator can act on. */
export function classify(e: Error, dst: string, connected: boolean): HboneError {
  if (isHbone(e)) return e;
  const code = (e as NodeJS.ErrnoException).code ?? '';
  if (e instanceof TlsError && e.code === 'MESH_ERR_PEER_IDENTITY') {
    return new HbonePeerIdentityError(`${dst} presented the wrong identity: ${e.message}`, e);
  }
  switch (code) {
    case 'ECONNREFUSED':
      return new HboneConnectError(`connection to ${dst} refused — is ztunnel running on the destination's node and listening on the HBONE port?`, e);
    case 'ETIMEDOUT':
      return new HboneConnectError(`connection to ${dst} timed out — is a NetworkPolicy blocking HBONE port 15008?`, e);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new HboneConnectError(`${dst} is unreachable (${code}) — is the destination pod's node routable from here?`, e);
    case 'ECONNRESET':
    case 'EPIPE':
      return connected
        ? new HboneSessionError(`connection to ${dst} was reset — the peer ztunnel restarted or dropped us`, e)
        : new HboneConnectError(`connection to ${dst} was reset during the handshake — is that port an HBONE endpoint?`, e);
  }
  if (/CERT|UNABLE_TO|SELF_SIGNED|UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_REQUIRED|ERR_SSL|ERR_TLS/.test(code)) {
    const refusedUs = /ALERT/.test(code);
    return new HboneTlsError(
      refusedUs
        ? `${dst} refused our certificate (${code}) — do both sides trust the same mesh root (istio-ca-root-cert), and is our certificate current?`
        : `TLS with ${dst} failed (${code}: ${e.message}) — is the server's certificate signed by a root in our trust bundle?`,
      e,
    );
  }
  return connected ? new HboneSessionError(`HTTP/2 session to ${dst} failed: ${e.message}`, e) : new HboneConnectError(`connecting to ${dst} failed: ${e.message}`, e);
}

function withTimeout<T>(p: Promise<T>, ms: number, signal: AbortSignal | undefined, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    const onAbort = (): void => reject(signal!.reason as Error);
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        reject(e as Error);
      },
    );
  });
}

// Requests to endpoints: HTTP/1.1 for HTTP/1 clients (keep-alive connections reused per endpoint)
// and HTTP/2 for h2c and gRPC clients (one session per endpoint, streams multiplexed on it), both
// over whatever byte stream the Upstream hands out — an HBONE stream in the waypoint process,
// plain TCP in tests. Resilience's maxRequestsPerConnection retires a connection after that many
// requests (Istio's DestinationRule connectionPool.http.maxRequestsPerConnection).
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { Readable, Duplex } from 'node:stream';
import { UpstreamConnectError, UpstreamResetError } from './errors.ts';
import type { HeaderMap } from './filters.ts';

export interface UpstreamTarget {
  ip: string;
  port: number;
  /** The SPIFFE URI of the endpoint's workload: the HBONE peer identity to require. */
  identity: string;
}

/** Opens a byte stream to an endpoint; rejects when none can be made. */
export interface Upstream {
  connect(target: UpstreamTarget): Promise<Duplex>;
}

export type UpstreamProtocol = 'http1' | 'http2';

export interface OutboundRequest {
  method: string;
  /** Path and query. */
  target: string;
  authority: string;
  /** Lower-case names; no pseudo-headers, no connection-specific headers. */
  headers: HeaderMap;
  /** null: the request has no body (a GET, typically). */
  body: Readable | null;
}

export interface InboundResponse {
  status: number;
  /** Lower-case names; no pseudo-headers. */
  headers: http.IncomingHttpHeaders;
  body: Readable;
  /** The trailers, once the body has ended (gRPC's grpc-status travels in them). */
  trailers(): http.IncomingHttpHeaders | undefined;
  /** Stops the exchange: the stream is reset, the connection not reused. */
  abort(): void;
  /** After a 101 to an HTTP/1.1 Upgrade: the connection, now the new protocol's, and its first bytes. */
  upgraded?: { socket: Duplex; head: Buffer };
}

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants;

/**
 * The HTTP/2 sessions the waypoint speaks inside HBONE streams, to clients and to endpoints. The
 * default 64 KiB stream window would cap one gRPC stream at 64 KiB per round trip; 1 MiB lets a
 * stream use a good share of the 4 MiB HBONE stream window it travels in (src/hbone/h2.ts), and
 * the session memory cap leaves room for it (Node answers ENHANCE_YOUR_CALM past 10 MB).
 */
export const INNER_H2_OPTIONS = Object.freeze({
  settings: { initialWindowSize: 1024 * 1024, enablePush: false },
  maxSessionMemory: 32,
}) satisfies http2.ClientSessionOptions & http2.ServerOptions;

/**
 * Idle HTTP/1.1 connections close after this: below the 5 s keep-alive timeout of Node's servers
 * (and undici's 4 s default for the same reason), so we seldom reuse a connection its server is
 * closing. When we do, the request fails with ECONNRESET on a reused socket and is retried
 * (Node's docs on request.reusedSocket describe that race).
 */
const H1_IDLE_MS = 4_000;
/** Idle HTTP/2 sessions close after this; GOAWAY makes their close race-free, so it can be long. */
const H2_IDLE_MS = 60_000;

/** HTTP/1.1 keep-alive over Upstream streams, one agent per endpoint. */
class EndpointAgent extends http.Agent {
  private readonly uses = new WeakMap<Duplex, number>();
  /** Read when a connection is freed: the current resilience config decides. */
  maxRequests = 0;

  private readonly upstream: Upstream;
  private readonly target: UpstreamTarget;
  /** Called when the agent holds no connection and no queued request: it can be dropped. */
  onEmpty: () => void = () => {};

  constructor(upstream: Upstream, target: UpstreamTarget) {
    // lifo: the most recently used connection is the least likely to have been closed by the
    // peer. The timeout closes idle kept-alive connections (it does not limit requests: route
    // timeouts do that).
    super({ keepAlive: true, scheduling: 'lifo', timeout: H1_IDLE_MS });
    this.upstream = upstream;
    this.target = target;
  }

  override createConnection(_opts: unknown, cb: (err: Error | null, s?: Duplex) => void): undefined {
    this.upstream.connect(this.target).then(
      (s) => {
        // After the Agent's own 'close' handling (it registers after us, hence the setImmediate).
        s.once('close', () => setImmediate(() => this.isEmpty() && this.onEmpty()));
        cb(null, asSocket(s));
      },
      (err: unknown) => {
        cb(new UpstreamConnectError(`cannot connect to endpoint ${this.target.ip}:${this.target.port} (${this.target.identity}): ${(err as Error).message}`, err));
        setImmediate(() => this.isEmpty() && this.onEmpty());
      },
    );
    return undefined;
  }

  isEmpty(): boolean {
    return Object.keys(this.sockets).length === 0 && Object.keys(this.freeSockets).length === 0 && Object.keys(this.requests).length === 0;
  }

  override keepSocketAlive(socket: Duplex): boolean {
    const n = (this.uses.get(socket) ?? 0) + 1;
    this.uses.set(socket, n);
    const keep = (super.keepSocketAlive(socket) as unknown as boolean | undefined) !== false;
    return keep && !socket.destroyed && (this.maxRequests === 0 || n < this.maxRequests);
  }
}

const SOCKET_METHODS = ['ref', 'unref', 'setKeepAlive', 'setNoDelay', 'setTimeout'] as const;

/**
 * http.Agent keeps connections alive with net.Socket methods (ref/unref, setKeepAlive, setTimeout)
 * that an HBONE stream lacks in part; for a stream they have nothing to do (the HBONE session has
 * its own keepalive and timers), so the missing ones become no-ops. The Agent's own keep-alive
 * bookkeeping (its free-socket listeners) then runs unchanged.
 */
export function asSocket<T extends Duplex>(s: T): T {
  const loose = s as unknown as Record<string, unknown>;
  for (const m of SOCKET_METHODS) {
    if (typeof loose[m] !== 'function') loose[m] = () => s;
  }
  return s;
}

interface SessionEntry {
  session: http2.ClientHttp2Session;
  streams: number;
}

export class UpstreamPool {
  private readonly agents = new Map<string, EndpointAgent>();
  private readonly sessions = new Map<string, Promise<SessionEntry>>();
  private closed = false;

  private readonly upstream: Upstream;

  constructor(upstream: Upstream) {
    this.upstream = upstream;
  }

  /**
   * Sends one request to the endpoint and resolves with the response head. Rejects with
   * UpstreamConnectError when nothing reached the endpoint (safe to retry), UpstreamResetError
   * when the exchange broke before a response, or the signal's reason when aborted.
   */
  request(protocol: UpstreamProtocol, target: UpstreamTarget, req: OutboundRequest, maxRequestsPerConnection: number, signal: AbortSignal): Promise<InboundResponse> {
    if (this.closed) return Promise.reject(new UpstreamConnectError('the waypoint is shutting down'));
    return protocol === 'http1' ? this.http1(target, req, maxRequestsPerConnection, signal) : this.http2(target, req, maxRequestsPerConnection, signal);
  }

  private http1(target: UpstreamTarget, req: OutboundRequest, maxRequests: number, signal: AbortSignal): Promise<InboundResponse> {
    const key = `${target.ip}:${target.port}`;
    let agent = this.agents.get(key);
    if (!agent) {
      const created = new EndpointAgent(this.upstream, target);
      // Endpoints come and go with pods: an agent without connections is forgotten, not kept.
      created.onEmpty = () => {
        if (this.agents.get(key) === created) this.agents.delete(key);
      };
      agent = created;
      this.agents.set(key, agent);
    }
    agent.maxRequests = maxRequests;
    return new Promise((resolve, reject) => {
      const creq = http.request({ agent, host: target.ip, port: target.port, method: req.method, path: req.target, headers: { ...req.headers, host: req.authority } });
      const onAbort = (): void => {
        creq.destroy();
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      // Only requests that ask for an upgrade get one; the socket then leaves the agent.
      creq.once('upgrade', (res, socket: Duplex, head: Buffer) => {
        signal.removeEventListener('abort', onAbort);
        resolve({ status: res.statusCode ?? 101, headers: res.headers, body: socket, trailers: () => undefined, abort: () => socket.destroy(), upgraded: { socket, head } });
      });
      creq.once('response', (res) => {
        signal.removeEventListener('abort', onAbort);
        resolve({ status: res.statusCode ?? 502, headers: res.headers, body: res, trailers: () => res.trailers, abort: () => creq.destroy() });
      });
      creq.once('error', (err: NodeJS.ErrnoException) => {
        signal.removeEventListener('abort', onAbort);
        if (err instanceof UpstreamConnectError) reject(err);
        else if (creq.reusedSocket && err.code === 'ECONNRESET') reject(new UpstreamConnectError(`endpoint ${key} had closed the kept-alive connection`, err));
        else reject(new UpstreamResetError(`endpoint ${key} broke the exchange: ${err.message}`, err));
      });
      if (!req.body) return void creq.end();
      req.body.once('error', () => creq.destroy());
      req.body.pipe(creq);
    });
  }

  private async http2(target: UpstreamTarget, req: OutboundRequest, maxRequests: number, signal: AbortSignal): Promise<InboundResponse> {
    const key = `${target.ip}:${target.port}`;
    // A timeout or a departed client must not wait for a slow connect (HBONE can take a while).
    const entry = await abortable(this.session(key, target, maxRequests), signal);
    let stream: http2.ClientHttp2Stream;
    try {
      stream = entry.session.request({ ...req.headers, ':method': req.method, ':path': req.target, ':authority': req.authority, ':scheme': 'http' }, { endStream: req.body === null });
    } catch (err) {
      throw new UpstreamConnectError(`HTTP/2 session to endpoint ${key} is unusable: ${(err as Error).message}`, err);
    }
    entry.streams++;
    if (maxRequests > 0 && entry.streams >= maxRequests) this.retire(key, entry, stream);
    return new Promise((resolve, reject) => {
      let trailers: http.IncomingHttpHeaders | undefined;
      const onAbort = (): void => {
        stream.close(NGHTTP2_CANCEL);
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('trailers', (t) => (trailers = t));
      stream.once('response', (headers) => {
        signal.removeEventListener('abort', onAbort);
        const status = Number(headers[':status']) || 502;
        resolve({ status, headers: withoutPseudo(headers), body: stream, trailers: () => trailers, abort: () => stream.close(NGHTTP2_CANCEL) });
      });
      // Before 'response', a stream ending in any way is a failed attempt; after, these are no-ops.
      stream.once('error', (err) => reject(new UpstreamResetError(`endpoint ${key} reset the HTTP/2 stream: ${err.message}`, err)));
      stream.once('close', () => {
        signal.removeEventListener('abort', onAbort);
        // REFUSED_STREAM promises the request was not processed (RFC 9113 §8.7).
        if (stream.rstCode === NGHTTP2_REFUSED_STREAM) reject(new UpstreamConnectError(`endpoint ${key} refused the HTTP/2 stream`));
        else reject(new UpstreamResetError(`endpoint ${key} closed the HTTP/2 stream before answering (code ${stream.rstCode})`));
      });
      if (!req.body) return;
      req.body.once('error', () => stream.close(NGHTTP2_CANCEL));
      req.body.pipe(stream);
    });
  }

  /** The endpoint's HTTP/2 session, reused while it is open and under its request budget. */
  private async session(key: string, target: UpstreamTarget, maxRequests: number): Promise<SessionEntry> {
    const cached = this.sessions.get(key);
    if (cached) {
      const entry = await cached.catch(() => undefined);
      if (entry && !entry.session.closed && !entry.session.destroyed && (maxRequests === 0 || entry.streams < maxRequests)) return entry;
      if (this.sessions.get(key) === cached) this.sessions.delete(key);
    }
    const created = this.openSession(key, target);
    this.sessions.set(key, created);
    created.catch(() => {
      if (this.sessions.get(key) === created) this.sessions.delete(key);
    });
    return created;
  }

  private async openSession(key: string, target: UpstreamTarget): Promise<SessionEntry> {
    let socket: Duplex;
    try {
      socket = await this.upstream.connect(target);
    } catch (err) {
      throw new UpstreamConnectError(`cannot connect to endpoint ${key} (${target.identity}): ${(err as Error).message}`, err);
    }
    const authority = target.ip.includes(':') ? `[${target.ip}]:${target.port}` : key;
    const session = http2.connect(`http://${authority}`, { ...INNER_H2_OPTIONS, createConnection: () => socket });
    const entry: SessionEntry = { session, streams: 0 };
    // Session errors reach each open stream as its own 'error'/'close'; here only forget the session.
    session.on('error', () => {});
    const forget = (): void => {
      void this.sessions.get(key)?.then((e) => {
        if (e === entry) this.sessions.delete(key);
      });
    };
    session.once('close', forget);
    session.once('goaway', forget);
    // Idle: no frames either way for a while (in-flight streams with data keep it busy).
    session.setTimeout(H2_IDLE_MS, () => {
      forget();
      session.close();
    });
    return entry;
  }

  /**
   * No new streams on this session; it closes once `last` (its last stream) has. Closed right
   * after request() instead, the last stream failed as reset before its response (Node 24,
   * waypoint-proxy's max-requests-per-connection-retires-http2-sessions-too).
   */
  private retire(key: string, entry: SessionEntry, last: http2.ClientHttp2Stream): void {
    void this.sessions.get(key)?.then((e) => {
      if (e === entry) this.sessions.delete(key);
    });
    last.once('close', () => entry.session.close());
  }

  /** Closes every connection; requests in flight are cut. */
  close(): void {
    this.closed = true;
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
    for (const p of this.sessions.values()) void p.then((e) => e.session.destroy(), () => {});
    this.sessions.clear();
  }
}

/** `p`, or the signal's reason as soon as it is aborted (p itself runs on). */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** HTTP/2 headers without the pseudo-headers (":status", ":path", …). */
function withoutPseudo(h: http.IncomingHttpHeaders | http2.IncomingHttpHeaders): http.IncomingHttpHeaders {
  const out: http.IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) out[k] = v as string | string[];
  return out;
}

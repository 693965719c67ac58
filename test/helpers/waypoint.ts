// A waypoint in one process for tests: a real MeshState with fake pod IPs whose endpoints are
// loopback servers (the test Upstream dials 127.0.0.1 on the target port), fakes of the
// authorizer, resilience and telemetry, and clients that reach L7Proxy.handle() over in-memory
// stream pairs as the HBONE server would hand them over.
import { once } from 'node:events';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ExecutionContext } from 'ava';
import { MeshState } from '../../src/state/index.ts';
import { asSocket, L7Proxy, type CompletedRequest, type L7ProxyOptions, type ResiliencePort, type StreamMeta, type UpstreamTarget } from '../../src/waypoint/index.ts';
import { SERVICE, type Service, WORKLOAD, type Workload } from '../../src/xds/index.ts';
import type { Backend as RouteBackend, Route, RouteRule } from '../../src/xds/routes.ts';

export const NS = 'shop';
export const host = (name: string): string => `${name}.${NS}.svc.cluster.local`;
export const key = (name: string): string => `${NS}/${host(name)}`;
export const PORT = 9080;
export const CLIENT = 'cluster.local/ns/shop/sa/productpage';

export interface Seen {
  backend: string;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Which of the backend's connections carried it (1-based). */
  connection: number;
}

export interface Backend {
  name: string;
  port: number;
  seen: Seen[];
}

type H1Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

async function listen(t: ExecutionContext, server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.close();
    (server as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
  return (server.address() as net.AddressInfo).port;
}

/** An HTTP/1.1 backend: answers 200 "<name> <url>" with x-backend, unless `handler` answers. */
export async function h1Backend(t: ExecutionContext, name: string, handler?: H1Handler): Promise<Backend> {
  const seen: Seen[] = [];
  let conns = 0;
  const connOf = new WeakMap<object, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ backend: name, method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString(), connection: connOf.get(req.socket)! });
      if (handler) return handler(req, res, seen.length);
      res.writeHead(200, { 'x-backend': name, 'content-type': 'text/plain' });
      res.end(`${name} ${req.url}`);
    });
  });
  server.on('connection', (s) => connOf.set(s, ++conns));
  // WebSocket-shaped upgrades: 101, then every byte echoed upper-cased.
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
    seen.push({ backend: name, method: req.method!, url: req.url!, headers: req.headers, body: '', connection: connOf.get(socket) ?? 0 });
    socket.on('error', () => {});
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-backend: ${name}\r\n\r\n`);
    socket.on('data', (c: Buffer) => socket.write(c.toString().toUpperCase()));
    socket.on('end', () => socket.end());
  });
  return { name, port: await listen(t, server), seen };
}

/**
 * An HTTP/2 backend shaped like a gRPC server: 200 with content-type application/grpc, a body,
 * and grpc-status in the trailers — or, for paths under /fail/, a trailers-only error; paths
 * under /delay/ are answered after 150 ms, under /slow/ never.
 */
export async function grpcBackend(t: ExecutionContext, name: string): Promise<Backend> {
  const seen: Seen[] = [];
  const server = http2.createServer();
  let sessions = 0;
  const sessionOf = new WeakMap<object, number>();
  server.on('session', (s) => sessionOf.set(s, ++sessions));
  server.on('stream', (stream, headers) => {
    if (headers[':path'] === '/shop.Echo/Chat') {
      // Bidirectional streaming: each message echoed as it arrives, before the client is done.
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('data', (c: Buffer) => stream.write(c));
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.on('end', () => stream.end());
      return;
    }
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const url = String(headers[':path']);
      seen.push({ backend: name, method: String(headers[':method']), url, headers: headers as http.IncomingHttpHeaders, body: Buffer.concat(chunks).toString(), connection: sessionOf.get(stream.session!) ?? 0 });
      if (url.startsWith('/slow/')) return; // never answers
      if (url.startsWith('/fail/')) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'not found' }, { endStream: true });
        return;
      }
      const answer = (): void => {
        if (stream.destroyed) return;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-backend': name }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
        stream.end(`${name} ${url}`);
      };
      if (url.startsWith('/delay/')) setTimeout(answer, 150).unref();
      else answer();
    });
  });
  return { name, port: await listen(t, server), seen };
}

/** A TCP echo server. */
export async function echoBackend(t: ExecutionContext): Promise<number> {
  const server = net.createServer((s) => {
    // The waypoint resets the connection when the client's tunnel is torn down.
    s.on('error', () => {});
    s.pipe(s);
  });
  return listen(t, server);
}

/** A loopback port nothing listens on. */
export async function deadPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export function workload(name: string, ip: string, services: Record<string, number>, o: Partial<Workload> = {}): Workload {
  return {
    uid: `Kubernetes//v1/Pod/${NS}/${name}`,
    name,
    namespace: NS,
    addresses: [Uint8Array.from(ip.split('.').map(Number))],
    hostname: '',
    network: '',
    trustDomain: 'cluster.local',
    serviceAccount: name.replace(/-\d+$/, ''),
    node: 'node1',
    tunnelProtocol: 'HBONE',
    waypoint: null,
    canonicalName: name,
    canonicalRevision: 'latest',
    workloadType: 'POD',
    workloadName: name,
    status: 'HEALTHY',
    services: Object.fromEntries(Object.entries(services).map(([svc, targetPort]) => [key(svc), { ports: [{ servicePort: PORT, targetPort, appProtocol: '' }] }])),
    authorizationPolicies: [],
    clusterId: 'Kubernetes',
    podUid: `uid-${name}`,
    ...o,
  };
}

export function service(name: string, vip: string): Service {
  return {
    name,
    namespace: NS,
    hostname: host(name),
    addresses: [{ network: '', address: Uint8Array.from(vip.split('.').map(Number)) }],
    ports: [{ servicePort: PORT, targetPort: PORT, appProtocol: '' }],
    subjectAltNames: [],
    waypoint: null,
  };
}

export function rule(origin: string, o: Partial<RouteRule> = {}): RouteRule {
  return { origin, kind: 'HTTP', port: 0, matches: [], filters: [], backends: [], timeouts: { requestMs: 0, backendRequestMs: 0 }, retry: null, ...o };
}

export function route(svc: string, ...rules: RouteRule[]): Route {
  return { service: key(svc), namespace: NS, hostname: host(svc), rules, resilience: null };
}

/** A ServiceResilience stand-in whose answers the test sets; it records what it was told. */
export class FakeResilience implements ResiliencePort {
  maxRequestsPerConnection = 0;
  faultResult = { delayMs: 0, abortStatus: 0 };
  tokens = Infinity;
  admitted = 0;
  maxAdmitted = Infinity;
  readonly outcomes: [string, boolean][] = [];
  readonly ejectedKeys = new Set<string>();

  fault(): { delayMs: number; abortStatus: number } {
    return this.faultResult;
  }
  takeToken(): boolean {
    if (this.tokens <= 0) return false;
    this.tokens--;
    return true;
  }
  admit(): Promise<(() => void) | null> {
    if (this.admitted >= this.maxAdmitted) return Promise.resolve(null);
    this.admitted++;
    return Promise.resolve(() => this.admitted--);
  }
  record(endpointKey: string, ok: boolean): void {
    this.outcomes.push([endpointKey, ok]);
  }
  ejected(endpointKey: string): boolean {
    return this.ejectedKeys.has(endpointKey);
  }
}

export interface Waypoint {
  proxy: L7Proxy;
  state: MeshState;
  routes: Map<string, Route>;
  records: CompletedRequest[];
  resilience: Map<string, FakeResilience>;
  /** Every Upstream.connect, in order. */
  dials: UpstreamTarget[];
  /** Authorization decisions asked for: targets. */
  authzTargets: string[][];
  meta: StreamMeta;
}

export interface WaypointSetup {
  services: Service[];
  workloads: Workload[];
  routes?: Route[];
  authorize?: L7ProxyOptions['authorize'];
  options?: Partial<L7ProxyOptions>;
}

/** The proxy under test; `dst` defaults to the first Service's VIP. */
export function waypoint(t: ExecutionContext, setup: WaypointSetup): Waypoint {
  const state = new MeshState();
  state.replace(WORKLOAD, setup.workloads.map((w) => [w.uid, w]), true);
  state.replace(SERVICE, setup.services.map((s) => [`${s.namespace}/${s.hostname}`, s]), true);
  const routes = new Map((setup.routes ?? []).map((r) => [r.service, r]));
  const records: CompletedRequest[] = [];
  const resilience = new Map<string, FakeResilience>();
  const dials: UpstreamTarget[] = [];
  const authzTargets: string[][] = [];
  const proxy = new L7Proxy({
    state,
    routes: (s) => routes.get(s),
    upstream: {
      connect: async (target) => {
        dials.push(target);
        const s = net.connect(target.port, '127.0.0.1');
        await once(s, 'connect');
        return s;
      },
    },
    authorize: (req, targets) => {
      authzTargets.push(targets);
      return setup.authorize ? setup.authorize(req, targets) : { allowed: true, policy: '' };
    },
    resilience: (s) => {
      let r = resilience.get(s);
      if (!r) resilience.set(s, (r = new FakeResilience()));
      return r;
    },
    telemetry: { record: (r) => records.push(r) },
    gatewayKey: 'Gateway/shop/waypoint',
    detectTimeoutMs: 100,
    ...setup.options,
  });
  t.teardown(() => proxy.close());
  const vip = setup.services[0] ? [...setup.services[0].addresses[0]!.address].join('.') : '10.96.0.1';
  return { proxy, state, routes, records, resilience, dials, authzTargets, meta: { sourcePrincipal: CLIENT, sourceIp: '10.0.9.9', dst: { ip: vip, port: PORT } } };
}

/** One HBONE stream's worth of bytes into the proxy, as the HBONE server would pipe them. */
export function tunnel(w: Waypoint, meta: StreamMeta = w.meta): Duplex {
  return w.proxy.accept(meta);
}

/** An HTTP/1.1 client whose connections are tunnels into the proxy, kept alive and reused. */
export function h1Client(w: Waypoint, meta: StreamMeta = w.meta): http.Agent {
  class TunnelAgent extends http.Agent {
    override createConnection(_o: unknown, cb: (err: Error | null, s: Duplex) => void): undefined {
      cb(null, asSocket(tunnel(w, meta)));
      return undefined;
    }
  }
  return new TunnelAgent({ keepAlive: true, maxSockets: 16 });
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  ms: number;
}

export function get(agent: http.Agent, path: string, o: { method?: string; headers?: Record<string, string>; body?: string; authority?: string } = {}): Promise<Reply> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ agent, host: '10.96.0.1', port: PORT, path, method: o.method ?? 'GET', headers: { host: o.authority ?? `${host('reviews')}:${PORT}`, ...o.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString(), ms: performance.now() - start }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

export interface H2Reply extends Reply {
  trailers: http2.IncomingHttpHeaders;
}

/** An h2c client session through one tunnel. */
export function h2Client(t: ExecutionContext, w: Waypoint, meta: StreamMeta = w.meta): http2.ClientHttp2Session {
  const s = tunnel(w, meta);
  const session = http2.connect(`http://${host('reviews')}:${PORT}`, { createConnection: () => s });
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  return session;
}

export function h2Request(session: http2.ClientHttp2Session, path: string, headers: http2.OutgoingHttpHeaders = {}, body = ''): Promise<H2Reply> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': path, ...headers });
    let head: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (head = h));
    stream.on('trailers', (tr) => (trailers = tr));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status: Number(head[':status']), headers: head as http.IncomingHttpHeaders, trailers, body: Buffer.concat(chunks).toString(), ms: performance.now() - start }));
    stream.on('error', reject);
    // GET and HEAD streams are ended by request() itself.
    if (!stream.writableEnded) stream.end(body);
  });
}

/** The reviews Service's VIP in bookinfo(). */
export const REVIEWS_VIP = '10.96.0.10';

/** reviews (VIP) backed by v1 and v2; reviews-v1 / reviews-v2 / mirror each backed by one pod. */
export async function bookinfo(t: ExecutionContext, more: Partial<WaypointSetup> = {}, handlers: { v1?: Parameters<typeof h1Backend>[2]; v2?: Parameters<typeof h1Backend>[2] } = {}) {
  const v1 = await h1Backend(t, 'v1', handlers.v1);
  const v2 = await h1Backend(t, 'v2', handlers.v2);
  const mirror = await h1Backend(t, 'mirror');
  const w = waypoint(t, {
    services: [service('reviews', REVIEWS_VIP), service('reviews-v1', '10.96.0.11'), service('reviews-v2', '10.96.0.12'), service('mirror', '10.96.0.13')],
    workloads: [
      workload('reviews-v1-1', '10.0.0.1', { reviews: v1.port, 'reviews-v1': v1.port }),
      workload('reviews-v2-1', '10.0.0.2', { reviews: v2.port, 'reviews-v2': v2.port }),
      workload('mirror-1', '10.0.0.3', { mirror: mirror.port }),
    ],
    ...more,
  });
  return { w, v1, v2, mirror, agent: h1Client(w) };
}

/** A route backend: Service `svc` on PORT. */
export const to = (svc: string, weight = 1): RouteBackend => ({ service: key(svc), port: PORT, weight });

/** `n` calls of `fn`, `concurrency` at a time. */
export async function many(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** mulberry32: a small seeded PRNG, so that statistical tests give the same draw every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** reviews (VIP) backed by the gRPC-shaped endpoint a; grpc-a and grpc-b each by their own. */
export async function grpcMesh(t: ExecutionContext): Promise<{ w: Waypoint; a: Backend; b: Backend }> {
  const a = await grpcBackend(t, 'a');
  const b = await grpcBackend(t, 'b');
  const w = waypoint(t, {
    services: [service('reviews', REVIEWS_VIP), service('grpc-a', '10.96.0.31'), service('grpc-b', '10.96.0.32')],
    workloads: [workload('grpc-a-1', '10.0.0.31', { reviews: a.port, 'grpc-a': a.port }), workload('grpc-b-1', '10.0.0.32', { 'grpc-b': b.port })],
    routes: [
      route(
        'reviews',
        rule('GRPCRoute/shop/by-method/0', { kind: 'GRPC', matches: [{ path: null, method: '', headers: [], queryParams: [], grpc: { type: 'EXACT', service: 'shop.Reviews', method: 'List' } }], backends: [to('grpc-b')] }),
        rule('GRPCRoute/shop/by-method/1', { kind: 'GRPC', backends: [to('grpc-a')] }),
      ),
    ],
  });
  return { w, a, b };
}

/** Reads from a raw stream until `pattern` shows up in what has arrived. */
export function readUntil(s: Duplex, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (c: Buffer): void => {
      got += c.toString();
      if (pattern.test(got)) {
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error(`closed after ${JSON.stringify(got)}`)));
  });
}

/** A WebSocket opening handshake request (RFC 6455 §4.1), `extra` header lines added. */
export const wsRequest = (extra = ''): string => `GET /ws HTTP/1.1\r\nHost: reviews\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

// HBONE end to end in one process: real TLS 1.3 and HTTP/2 on 127.0.0.1, certificates from an
// in-memory CA, a local TCP echo as the application. Each test builds what it needs and tears it
// down; every listener is on port 0.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import test, { type ExecutionContext } from 'ava';
import type { WorkloadCertificate } from '../../src/identity/index.ts';
import { mtlsClientOptions } from '../../src/tls/index.ts';
import {
  HboneBadRequestError,
  HboneConnectError,
  HboneDeniedError,
  type HboneDecision,
  type HboneHandler,
  HbonePeerIdentityError,
  HbonePool,
  type HbonePoolOptions,
  HboneServer,
  type HboneServerOptions,
  HboneSessionError,
  type HboneStream,
  HboneTlsError,
  type HboneTunnel,
  HboneUpstreamError,
  MAX_STREAMS,
} from '../../src/hbone/index.ts';
import { memoryCa, mint } from '../helpers/ca.ts';

const CART = 'spiffe://cluster.local/ns/shop/sa/cart';
const PAY = 'spiffe://cluster.local/ns/shop/sa/pay';

type Ca = Awaited<ReturnType<typeof memoryCa>>;

let shared: { ca: Ca; client: WorkloadCertificate; server: WorkloadCertificate } | undefined;
async function certs(): Promise<NonNullable<typeof shared>> {
  if (!shared) {
    const ca = await memoryCa();
    shared = { ca, client: await mint(ca, CART), server: await mint(ca, PAY) };
  }
  return shared;
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** The application: echoes, and records the sha256 of everything each connection received. */
async function echoApp(t: ExecutionContext): Promise<{ port: number; received: string[]; sockets: Set<net.Socket> }> {
  const received: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    const h = createHash('sha256');
    s.on('data', (d) => h.update(d));
    s.once('end', () => received.push(h.digest('hex')));
    s.on('error', () => {});
    s.pipe(s);
  });
  const port = await listen(server);
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port, received, sockets };
}

/** The handler ztunnel inbound will be: here, dial 127.0.0.1:<target port>. */
const dialTarget: HboneHandler = async (tunnel) => {
  const up = net.connect({ host: '127.0.0.1', port: tunnel.target.port, allowHalfOpen: true });
  try {
    await once(up, 'connect');
  } catch {
    return { status: 503, reason: `cannot reach ${tunnel.target.host}:${tunnel.target.port}` };
  }
  return { status: 200, upstream: up };
};

interface World {
  server: HboneServer;
  hbonePort: number;
  pool: HbonePool;
  client: WorkloadCertificate;
  serverCert: WorkloadCertificate;
  ca: Ca;
  tunnels: HboneTunnel[];
  connect(authority: string, more?: Partial<Parameters<HbonePool['connect']>[0]>): Promise<HboneStream>;
}

async function world(t: ExecutionContext, o: { handler?: HboneHandler; server?: Partial<HboneServerOptions>; pool?: HbonePoolOptions; serverCert?: WorkloadCertificate } = {}): Promise<World> {
  const { ca, client, server: serverCert0 } = await certs();
  const serverCert = o.serverCert ?? serverCert0;
  const tunnels: HboneTunnel[] = [];
  const handler = o.handler ?? dialTarget;
  const server = new HboneServer({
    credentials: serverCert,
    trustDomains: ['cluster.local'],
    handler: (tu) => {
      tunnels.push(tu);
      return handler(tu);
    },
    ...o.server,
  });
  const { port: hbonePort } = await server.listen({ port: 0, host: '127.0.0.1' });
  const pool = new HbonePool(o.pool);
  t.teardown(async () => {
    pool.destroy();
    await server.close();
  });
  return {
    server,
    hbonePort,
    pool,
    client,
    serverCert,
    ca,
    tunnels,
    connect: (authority, more = {}) =>
      pool.connect({ source: client, dstAddr: `127.0.0.1:${hbonePort}`, expectedIdentities: [PAY], authority, ...more }),
  };
}

/** Writes `data` in 64 KiB chunks honouring backpressure, then ends. */
async function writeAll(s: Duplex, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; off += 65536) {
    if (!s.write(data.subarray(off, off + 65536))) await once(s, 'drain');
  }
  s.end();
}

/** Reads until 'end'; returns the sha256 and length. */
function readAll(s: Duplex): Promise<{ sha: string; length: number }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let length = 0;
    s.on('data', (d: Buffer) => {
      h.update(d);
      length += d.length;
    });
    s.once('end', () => resolve({ sha: h.digest('hex'), length }));
    s.once('error', reject);
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function roundTrip(t: ExecutionContext, w: World, app: Awaited<ReturnType<typeof echoApp>>, size: number): Promise<void> {
  const data = randomBytes(size);
  const s = await w.connect(`127.0.0.1:${app.port}`);
  const [, back] = await Promise.all([writeAll(s, data), readAll(s)]);
  t.is(back.length, size);
  t.is(back.sha, sha(data), 'the echo came back byte-exact');
  t.true(app.received.includes(sha(data)), 'the application received exactly what was sent');
}

test('hbone-carries-1MB-byte-exact', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  await roundTrip(t, w, app, 1 << 20);
  const tu = w.tunnels[0]!;
  t.is(tu.peerIdentity.serviceAccount, 'cart');
  t.deepEqual(await tu.done, { received: 1 << 20, sent: 1 << 20 });
});

test('hbone-carries-64MB-byte-exact', async (t) => {
  t.timeout(60_000);
  const app = await echoApp(t);
  const w = await world(t);
  await roundTrip(t, w, app, 64 << 20);
});

test('hbone-client-FIN-reaches-the-app-which-still-answers', async (t) => {
  // The app reads until our FIN, then answers with the hash of what it got and closes.
  const app = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    s.on('data', (d) => h.update(d));
    s.once('end', () => s.end(`got ${h.digest('hex')}`));
  });
  const port = await listen(app);
  t.teardown(() => app.close());
  const w = await world(t);
  const data = randomBytes(300_000);
  const s = await w.connect(`127.0.0.1:${port}`);
  let reply = '';
  s.on('data', (d) => (reply += d));
  s.end(data);
  await once(s, 'end');
  t.is(reply, `got ${sha(data)}`);
});

test('hbone-app-FIN-reaches-the-client-which-still-sends', async (t) => {
  // The app sends a greeting and shuts down its write side at once; then reads what we send.
  const greeting = randomBytes(200_000);
  let appGot: Promise<string> | undefined;
  const app = net.createServer({ allowHalfOpen: true }, (s) => {
    s.end(greeting);
    appGot = readAll(s).then((r) => r.sha);
  });
  const port = await listen(app);
  t.teardown(() => app.close());
  const w = await world(t);
  const s = await w.connect(`127.0.0.1:${port}`);
  const got = await readAll(s); // resolves on 'end': the app's FIN came through
  t.is(got.sha, sha(greeting));
  t.false(s.writableEnded, 'our direction is still open');
  const data = randomBytes(500_000);
  await writeAll(s, data);
  await once(s, 'close');
  t.is(await appGot, sha(data), 'the app got our bytes after its own FIN');
});

test('hbone-1000-concurrent-tunnels-spread-over-10-sessions', async (t) => {
  t.timeout(60_000);
  const app = await echoApp(t);
  const w = await world(t);
  const streams = await Promise.all(Array.from({ length: 1000 }, () => w.connect(`127.0.0.1:${app.port}`)));
  const sessions = w.pool.stats().sessions;
  t.true(sessions.length >= 10, `${sessions.length} sessions`);
  t.true(sessions.every((s) => s.streams <= MAX_STREAMS));
  t.is(sessions.reduce((n, s) => n + s.streams, 0), 1000);
  t.is(w.server.stats().tunnels, 1000);
  const results = await Promise.all(
    streams.map(async (s, i) => {
      const data = Buffer.from(`tunnel ${i} `.repeat(50));
      const [, back] = await Promise.all([writeAll(s, data), readAll(s)]);
      return back.sha === sha(data);
    }),
  );
  t.is(results.filter(Boolean).length, 1000);
});

test('hbone-client-rejects-a-server-with-the-wrong-identity', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  const err = await t.throwsAsync(w.connect(`127.0.0.1:${app.port}`, { expectedIdentities: ['spiffe://cluster.local/ns/shop/sa/other'] }), {
    instanceOf: HbonePeerIdentityError,
  });
  t.is(err.code, 'MESH_ERR_HBONE_PEER_IDENTITY');
  t.regex(err.message, /presented the wrong identity.*sa\/pay is not one of the expected/);
  t.is(w.tunnels.length, 0);
});

test('hbone-client-rejects-a-server-of-another-trust-domain-or-root', async (t) => {
  const app = await echoApp(t);
  const { ca } = await certs();
  // Signed by our root, but in trust domain evil.local.
  const w = await world(t, { serverCert: await mint(ca, 'spiffe://evil.local/ns/shop/sa/pay') });
  await t.throwsAsync(w.connect(`127.0.0.1:${app.port}`), { instanceOf: HbonePeerIdentityError, message: /evil\.local/ });
  // The right identity, signed by a root we do not trust.
  const other = await memoryCa();
  const w2 = await world(t, { serverCert: await mint(other, PAY, 3_600_000, [...other.trustBundle, ...ca.trustBundle]) });
  const err = await t.throwsAsync(w2.connect(`127.0.0.1:${app.port}`), { instanceOf: HboneTlsError });
  t.regex(err.message, /TLS with 127\.0\.0\.1:\d+ failed/);
  t.is(w.tunnels.length + w2.tunnels.length, 0);
});

/** A raw HTTP/2 client over TLS with whatever credentials (or none) the test wants. */
function rawH2(t: ExecutionContext, port: number, tlsOpts: tls.ConnectionOptions): http2.ClientHttp2Session {
  const socket = tls.connect({ host: '127.0.0.1', port, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3', ...tlsOpts });
  const session = http2.connect(`https://127.0.0.1:${port}`, { createConnection: () => socket });
  session.on('error', () => {});
  t.teardown(() => {
    session.destroy();
    socket.destroy();
  });
  return session;
}

/** Sends one request; resolves with its status, or the error that ended it. */
function ask(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    let req: http2.ClientHttp2Stream;
    try {
      req = session.request(headers, { endStream: false });
    } catch (e) {
      resolve({ error: (e as Error).message });
      return;
    }
    req.once('response', (h) => resolve({ status: Number(h[':status']) }));
    req.once('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    req.once('close', () => resolve({ error: `closed, rst ${req.rstCode}` }));
  });
}

test('hbone-server-rejects-a-client-with-no-or-an-untrusted-certificate', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  const roots = w.ca.trustBundle;
  // No certificate at all: TLS 1.3 finishes on the client first; the server's alert then kills it.
  const bare = rawH2(t, w.hbonePort, { ca: [...roots], checkServerIdentity: () => undefined });
  const r = await ask(bare, { ':method': 'CONNECT', ':authority': `127.0.0.1:${app.port}` });
  t.truthy(r.error, JSON.stringify(r));
  bare.destroy();
  // A certificate from a CA the server does not trust.
  const other = await memoryCa();
  const stranger = await mint(other, CART, 3_600_000, [...roots]);
  const err = await t.throwsAsync(w.connect(`127.0.0.1:${app.port}`, { source: stranger }), { instanceOf: HboneTlsError });
  t.regex(err.message, /refused our certificate/);
  t.is(w.tunnels.length, 0, 'the handler never saw them');
});

test('hbone-server-rejects-a-client-of-another-trust-domain', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  const evil = await mint(w.ca, 'spiffe://evil.local/ns/shop/sa/cart');
  const err = await t.throwsAsync(w.connect(`127.0.0.1:${app.port}`, { source: evil }), { instanceOf: HbonePeerIdentityError });
  t.regex(err.message, /refused our identity spiffe:\/\/evil\.local/);
  t.is(w.tunnels.length, 0);
  // The checkPeer hook can refuse by identity too.
  const w2 = await world(t, {
    server: {
      checkPeer: (id) => {
        if (id.serviceAccount === 'cart') throw new Error('cart may not connect');
      },
    },
  });
  await t.throwsAsync(w2.connect(`127.0.0.1:${app.port}`), { instanceOf: HbonePeerIdentityError });
});

test('hbone-401-503-400-surface-as-typed-errors-with-the-status', async (t) => {
  const decisions: Record<number, HboneDecision | 'throw'> = {
    1: { status: 401, reason: 'denied by shop/deny-cart' },
    2: { status: 503, reason: 'connection refused' },
    3: { status: 400, reason: 'nonsense' },
    4: 'throw',
  };
  const w = await world(t, {
    handler: async (tu) => {
      const d = decisions[tu.target.port]!;
      if (d === 'throw') throw new Error('handler bug');
      return d;
    },
  });
  const e401 = await t.throwsAsync(w.connect('127.0.0.1:1'), { instanceOf: HboneDeniedError });
  t.is(e401.status, 401);
  t.is(e401.code, 'MESH_ERR_HBONE_DENIED');
  t.regex(e401.message, /AuthorizationPolicy/);
  t.notRegex(e401.message, /deny-cart/, 'the policy name stays on the server');
  const e503 = await t.throwsAsync(w.connect('127.0.0.1:2'), { instanceOf: HboneUpstreamError });
  t.is(e503.status, 503);
  const e400 = await t.throwsAsync(w.connect('127.0.0.1:3'), { instanceOf: HboneBadRequestError });
  t.is(e400.status, 400);
  const eThrow = await t.throwsAsync(w.connect('127.0.0.1:4'), { instanceOf: HboneUpstreamError });
  t.is(eThrow.status, 503);
  // A real upstream failure through the default handler: nothing listens on the target port.
  const w2 = await world(t);
  const closed = net.createServer();
  const deadPort = await listen(closed);
  closed.close();
  await t.throwsAsync(w2.connect(`127.0.0.1:${deadPort}`), { instanceOf: HboneUpstreamError });
  // All on one session, which is still fine.
  t.is(w.pool.stats().sessions.length, 1);
  t.is(w.pool.stats().sessions[0]!.streams, 0, 'refused streams were released');
});

test('hbone-garbage-gets-an-error-and-a-concurrent-tunnel-keeps-working', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  const good = await w.connect(`127.0.0.1:${app.port}`);
  const echoed = readAll(good);
  good.write('before ');

  const rawClose = async (payload: Buffer | string): Promise<void> => {
    const s = net.connect(w.hbonePort, '127.0.0.1');
    s.on('error', () => {});
    s.on('data', () => {});
    s.write(payload);
    await once(s, 'close');
  };
  await rawClose(randomBytes(4096));
  await rawClose('GET / HTTP/1.1\r\nHost: example\r\n\r\n');
  // TLS with a good certificate but HTTP/1.1 as the protocol.
  const h1 = tls.connect({ host: '127.0.0.1', port: w.hbonePort, ...mtlsClientOptions(w.client, { identities: [PAY] }), ALPNProtocols: ['http/1.1'] });
  const h1err = await once(h1, 'error').catch((e: unknown) => [e]);
  t.regex(String((h1err[0] as Error).message), /no application protocol|alert/i);

  // Valid HBONE peer, malformed requests: each stream gets a 400 (or a reset from nghttp2).
  const h2 = rawH2(t, w.hbonePort, mtlsClientOptions(w.client, { identities: [PAY] }));
  const bad: http2.OutgoingHttpHeaders[] = [
    { ':method': 'CONNECT', ':authority': 'not-an-ip:80' },
    { ':method': 'CONNECT', ':authority': '10.0.0.1' },
    { ':method': 'CONNECT', ':authority': '10.0.0.1:0' },
    { ':method': 'CONNECT', ':authority': '10.0.0.1:99999' },
    { ':method': 'CONNECT', ':authority': '[::1:80' },
    { ':method': 'CONNECT', ':authority': `127.0.0.1:${app.port}`, forwarded: 'for="[::1"' },
    { ':method': 'CONNECT', ':authority': `127.0.0.1:${app.port}`, forwarded: 'for=example.com' },
    { ':method': 'GET', ':path': '/', ':authority': `127.0.0.1:${app.port}` },
    { ':method': 'POST', ':path': '/', ':authority': `127.0.0.1:${app.port}` },
  ];
  for (const h of bad) t.deepEqual(await ask(h2, h), { status: 400 }, JSON.stringify(h));
  // ...and the same session still carries a good tunnel.
  t.deepEqual(await ask(h2, { ':method': 'CONNECT', ':authority': `127.0.0.1:${app.port}` }), { status: 200 });
  h2.destroy();

  // A valid TLS peer that sends an HTTP/2 preface and then junk frames: that session dies.
  const junk = tls.connect({ host: '127.0.0.1', port: w.hbonePort, ...mtlsClientOptions(w.client, { identities: [PAY] }), ALPNProtocols: ['h2'] });
  junk.on('error', () => {});
  await once(junk, 'secureConnect');
  junk.on('data', () => {});
  junk.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), randomBytes(2048)]));
  await once(junk, 'close');

  good.end('after');
  const r = await echoed;
  t.is(r.sha, sha(Buffer.from('before after')), 'the good tunnel never noticed');
  // The server still accepts new tunnels.
  await roundTrip(t, w, app, 1000);
});

/** A TCP relay between pool and server, so tests can cut or black-hole the path. */
async function relay(t: ExecutionContext, to: number): Promise<{ port: number; cut(): void; blackhole(): void; accepted: () => number }> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  let accepted = 0;
  const server = net.createServer((a) => {
    accepted++;
    const b = net.connect(to, '127.0.0.1');
    const pair: [net.Socket, net.Socket] = [a, b];
    pairs.add(pair);
    a.on('error', () => {});
    b.on('error', () => {});
    a.pipe(b);
    b.pipe(a);
    a.once('close', () => (b.destroy(), pairs.delete(pair)));
    b.once('close', () => a.destroy());
  });
  const port = await listen(server);
  t.teardown(() => {
    for (const [a, b] of pairs) {
      a.destroy();
      b.destroy();
    }
    server.close();
  });
  return {
    port,
    accepted: () => accepted,
    cut: () => {
      for (const [a, b] of pairs) {
        a.resetAndDestroy();
        b.resetAndDestroy();
      }
    },
    blackhole: () => {
      for (const [a, b] of pairs) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
    },
  };
}

test('hbone-session-death-fails-its-tunnels-and-the-next-connect-recovers', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  const r = await relay(t, w.hbonePort);
  const via = { dstAddr: `127.0.0.1:${r.port}` };
  const streams = await Promise.all([1, 2, 3].map(() => w.connect(`127.0.0.1:${app.port}`, via)));
  t.is(w.pool.stats().sessions.length, 1);
  const errors = streams.map((s) => once(s, 'error').then(([e]) => e as Error));
  r.cut();
  for (const e of await Promise.all(errors)) {
    t.true(e instanceof HboneSessionError, String(e));
    t.is((e as HboneSessionError).code, 'MESH_ERR_HBONE_SESSION');
  }
  t.is(w.pool.stats().sessions.length, 0, 'the dead session left the pool');
  const s = await w.connect(`127.0.0.1:${app.port}`, via);
  const back = readAll(s);
  s.end('alive again');
  t.is((await back).length, 'alive again'.length);
  t.is(r.accepted(), 2, 'a new session was opened');
});

test('hbone-ping-detects-a-silent-peer', async (t) => {
  const app = await echoApp(t);
  const w = await world(t, { pool: { pingIntervalMs: 100, pingTimeoutMs: 300 } });
  const r = await relay(t, w.hbonePort);
  const s = await w.connect(`127.0.0.1:${app.port}`, { dstAddr: `127.0.0.1:${r.port}` });
  const started = Date.now();
  r.blackhole();
  const [e] = (await once(s, 'error')) as [Error];
  t.true(e instanceof HboneSessionError);
  t.regex(e.message, /no HTTP\/2 PING reply/);
  t.true(Date.now() - started < 2000);
});

test('hbone-connect-timeout-names-the-likely-cause', async (t) => {
  // Accepts TCP and never speaks TLS: what a black-holing NetworkPolicy looks like from here.
  const sockets = new Set<net.Socket>();
  const mute = net.createServer((s) => (sockets.add(s), s.on('error', () => {})));
  const port = await listen(mute);
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    mute.close();
  });
  const pool = new HbonePool();
  t.teardown(() => pool.destroy());
  const { client } = await certs();
  const err = await t.throwsAsync(pool.connect({ source: client, dstAddr: `127.0.0.1:${port}`, expectedIdentities: [PAY], authority: '10.0.0.1:80', timeoutMs: 300 }), {
    instanceOf: HboneConnectError,
  });
  t.regex(err.message, /timed out after 300 ms — is a NetworkPolicy blocking HBONE port/);
  t.is(pool.stats().sessions.length, 0);
  // Refused: nothing listens.
  mute.close();
  await t.throwsAsync(pool.connect({ source: client, dstAddr: `127.0.0.1:${port}`, expectedIdentities: [PAY], authority: '10.0.0.1:80' }), {
    instanceOf: HboneConnectError,
    message: /refused/,
  });
});

test('hbone-idle-sessions-are-closed', async (t) => {
  const app = await echoApp(t);
  const w = await world(t, { pool: { idleTimeoutMs: 150 } });
  await roundTrip(t, w, app, 1000);
  t.is(w.pool.stats().sessions.length, 1);
  await new Promise((r) => setTimeout(r, 400));
  t.is(w.pool.stats().sessions.length, 0);
  t.is(w.server.stats().sessions, 0, 'the server saw it go');
  await roundTrip(t, w, app, 1000);
});

test('hbone-drain-lets-open-tunnels-finish-and-resets-stragglers', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  const s = await w.connect(`127.0.0.1:${app.port}`);
  const back = readAll(s);
  s.write('one ');
  const drained = w.server.drain(5000);
  await new Promise((r) => setTimeout(r, 50));
  // No new connections once draining: the listener is closed.
  await t.throwsAsync(w.connect(`127.0.0.1:${app.port}`), { instanceOf: HboneConnectError });
  s.end('two');
  t.is((await back).sha, sha(Buffer.from('one two')), 'the open tunnel finished normally');
  t.deepEqual(await drained, { reset: 0 });

  const w2 = await world(t);
  const stuck = await w2.connect(`127.0.0.1:${app.port}`);
  const failed = once(stuck, 'error').catch((e: unknown) => [e]);
  const start = Date.now();
  t.deepEqual(await w2.server.drain(200), { reset: 1 });
  t.true(Date.now() - start < 1000);
  const [e] = (await failed) as [Error];
  t.truthy(e);
});

test('hbone-passes-identity-address-and-context-headers-to-the-handler', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  const s = await w.connect(`127.0.0.1:${app.port}`, {
    forwardedFor: { host: 'fd00::7', port: 41000 },
    baggage: { 'k8s.namespace.name': 'shop', 'k8s.deployment.name': 'cart', 'service.name': 'cart svc' },
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  });
  s.end();
  await readAll(s);
  const tu = w.tunnels[0]!;
  t.deepEqual(tu.target, { host: '127.0.0.1', port: app.port });
  t.deepEqual(tu.peerIdentity, { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'cart' });
  t.is(tu.peerAddress.host, '127.0.0.1');
  t.deepEqual(tu.forwardedFor, { host: 'fd00::7', port: 41000 });
  t.deepEqual({ ...tu.baggage }, { 'k8s.namespace.name': 'shop', 'k8s.deployment.name': 'cart', 'service.name': 'cart svc' });
  t.is(tu.traceparent?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
});

test('hbone-speaks-TLS-1.3-ALPN-h2-without-SNI', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  const seen: { servername: unknown; alpn: unknown; version: unknown }[] = [];
  (w.server as unknown as { server: tls.Server }).server.on('secureConnection', (s: tls.TLSSocket) =>
    seen.push({ servername: (s as unknown as { servername: unknown }).servername, alpn: s.alpnProtocol, version: s.getProtocol() }),
  );
  await roundTrip(t, w, app, 10);
  t.deepEqual(seen, [{ servername: false, alpn: 'h2', version: 'TLSv1.3' }]);
});

test('hbone-outer-socket-from-the-netns-hook', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  // A net.Socket the hook made (not yet connected: the pool connects it).
  const made: string[] = [];
  await roundTrip(t, w, app, 1000);
  const s = await w.connect(`127.0.0.1:${app.port}`, {
    sourceIp: '10.0.0.9',
    connectFromNetns: async (dst) => {
      made.push(`${dst.host}:${dst.port}`);
      return new net.Socket();
    },
  });
  s.end('x');
  await readAll(s);
  t.deepEqual(made, [`127.0.0.1:${w.hbonePort}`]);
  t.is(w.pool.stats().sessions.length, 2, 'sourceIp is part of the pool key');
  // An fd made by the addon in a netns (ours) with ztunnel's SO_MARK, as ztunnel outbound will.
  let socketInNetns: typeof import('../../src/datapath/index.ts').socketInNetns;
  try {
    ({ socketInNetns } = await import('../../src/datapath/index.ts'));
    socketInNetns('/proc/self/ns/net', { family: 4, mark: 0x539 });
  } catch (e) {
    t.log(`fd path not exercised: ${(e as Error).message}`);
    return;
  }
  const s2 = await w.connect(`127.0.0.1:${app.port}`, { sourceIp: '10.0.0.10', connectFromNetns: () => socketInNetns('/proc/self/ns/net', { family: 4, mark: 0x539 }) });
  s2.end('y');
  t.is((await readAll(s2)).length, 1);
});

test('hbone-handler-can-abort-a-live-tunnel', async (t) => {
  const app = await echoApp(t);
  const w = await world(t);
  const s = await w.connect(`127.0.0.1:${app.port}`);
  s.write('hello');
  await once(s, 'data');
  const errored = once(s, 'error').catch((e: unknown) => [e]);
  w.tunnels[0]!.abort();
  t.truthy((await errored)[0]);
  const done = await w.tunnels[0]!.done;
  t.truthy(done.error);
  await new Promise((r) => setTimeout(r, 50));
  t.is(app.sockets.size, 0, 'the application connection was closed too');
});

test('hbone-certificate-expiry-ends-sessions: no new tunnels on a session past its certificates; the renewed one gets a new handshake', async (t) => {
  const app = await echoApp(t);
  const { ca } = await certs();
  const short = await mint(ca, CART, 1500);
  const w = await world(t);
  const first = await w.connect(`127.0.0.1:${app.port}`, { source: { ...short, notAfter: short.leaf.notAfter } });
  await Promise.all([writeAll(first, Buffer.from('one')), readAll(first)]);
  t.is(w.server.stats().sessions, 1);
  // The server closes the session at the client certificate's notAfter (GOAWAY)…
  const wait = short.leaf.notAfter.getTime() - Date.now() + 300;
  await new Promise((r) => setTimeout(r, Math.max(0, wait)));
  for (let i = 0; i < 40 && w.server.stats().sessions > 0; i++) await new Promise((r) => setTimeout(r, 50));
  t.is(w.server.stats().sessions, 0, 'the server ended the session whose client certificate expired');
  // …and the client, holding a renewed certificate, handshakes again instead of reusing it.
  const renewed = await mint(ca, CART, 60_000);
  const second = await w.connect(`127.0.0.1:${app.port}`, { source: { ...renewed, notAfter: renewed.leaf.notAfter } });
  const [, back] = await Promise.all([writeAll(second, Buffer.from('two')), readAll(second)]);
  t.is(back.length, 3);
  t.is(w.pool.stats().sessions.length, 1);
  t.is(w.server.stats().sessions, 1);
});

test('hbone-a-CONNECT-racing-a-draining-servers-GOAWAY-is-retried-on-the-server-that-took-over', async (t) => {
  // A ztunnel handover in miniature: the old server and its successor share the port
  // (SO_REUSEPORT); the old one sends GOAWAY while the client's next CONNECT is on its way on
  // the old session, which refuses it unprocessed. The pool retries it on a fresh connection.
  const app = await echoApp(t);
  const { client, server: serverCert } = await certs();
  const make = () => new HboneServer({ credentials: serverCert, trustDomains: ['cluster.local'], handler: dialTarget });
  const old = make();
  const { port } = await old.listen({ port: 0, host: '127.0.0.1', reusePort: true } as net.ListenOptions);
  const pool = new HbonePool();
  const successor = make();
  t.teardown(async () => {
    pool.destroy();
    await old.close();
    await successor.close();
  });
  const connect = () => pool.connect({ source: client, dstAddr: `127.0.0.1:${port}`, expectedIdentities: [PAY], authority: `127.0.0.1:${app.port}` });
  const first = await connect();
  const firstBack = readAll(first);
  first.write('kept ');
  await successor.listen({ port, host: '127.0.0.1', reusePort: true } as net.ListenOptions);
  old.goAway();
  const second = await connect();
  second.end('new');
  t.is((await readAll(second)).sha, sha(Buffer.from('new')), 'the new tunnel works');
  t.is(successor.stats().sessions, 1, 'it went to the successor');
  first.end('tunnel');
  t.is((await firstBack).sha, sha(Buffer.from('kept tunnel')), 'the tunnel open on the draining server finished normally');
});

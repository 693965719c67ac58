// The waypoint engine between real HBONE tunnels, on 127.0.0.1: a client tunnel (mTLS, HTTP/2
// CONNECT to the Service VIP) into an HboneServer whose handler answers with L7Proxy.accept(),
// and upstream tunnels from an HbonePool to a destination HboneServer in front of the
// application. What the process wiring will do, done minimally, to show the engine works over
// HTTP/2 streams (not only sockets) both ways.
import { once } from 'node:events';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { HbonePool, HboneServer, type HboneHandler } from '../../src/hbone/index.ts';
import { formatSpiffeId } from '../../src/identity/index.ts';
import { MeshState } from '../../src/state/index.ts';
import { asSocket, L7Proxy, NO_RESILIENCE, type CompletedRequest } from '../../src/waypoint/index.ts';
import { SERVICE, WORKLOAD } from '../../src/xds/index.ts';
import { memoryCa, mint } from '../helpers/ca.ts';
import { grpcBackend, h1Backend, key, PORT, service, workload } from '../helpers/waypoint.ts';

const CLIENT = 'spiffe://cluster.local/ns/shop/sa/productpage';
const WAYPOINT = 'spiffe://cluster.local/ns/shop/sa/waypoint';
const REVIEWS = 'spiffe://cluster.local/ns/shop/sa/reviews-v1';
const VIP = '10.96.0.10';

async function mesh(t: ExecutionContext, appPort: number, appProtocol = '') {
  const ca = await memoryCa();
  const [clientCert, waypointCert, reviewsCert] = await Promise.all([mint(ca, CLIENT), mint(ca, WAYPOINT), mint(ca, REVIEWS)]);

  // The destination's ztunnel: accepts the waypoint's tunnels and dials the application.
  const seenPeers: string[] = [];
  const dial: HboneHandler = async (tu) => {
    seenPeers.push(formatSpiffeId(tu.peerIdentity));
    const up = net.connect({ host: '127.0.0.1', port: tu.target.port, allowHalfOpen: true });
    await once(up, 'connect');
    return { status: 200, upstream: up };
  };
  const dest = new HboneServer({ credentials: reviewsCert, trustDomains: ['cluster.local'], handler: dial });
  const { port: destPort } = await dest.listen({ port: 0, host: '127.0.0.1' });

  const state = new MeshState();
  const w = workload('reviews-v1-1', '10.0.0.1', { reviews: appPort });
  w.services[key('reviews')]!.ports[0]!.appProtocol = appProtocol;
  state.replace(WORKLOAD, [[w.uid, w]], true);
  state.replace(SERVICE, [[key('reviews'), service('reviews', VIP)]], true);

  const upstreamPool = new HbonePool();
  const records: CompletedRequest[] = [];
  const proxy = new L7Proxy({
    state,
    routes: () => undefined,
    // Every endpoint's ztunnel is `dest` here; the authority names the pod and its port.
    upstream: { connect: (target) => upstreamPool.connect({ source: waypointCert, dstAddr: `127.0.0.1:${destPort}`, expectedIdentities: [target.identity], authority: `${target.ip}:${target.port}` }) },
    authorize: () => ({ allowed: true, policy: '' }),
    resilience: () => NO_RESILIENCE,
    telemetry: { record: (r) => records.push(r) },
    gatewayKey: 'Gateway/shop/waypoint',
  });
  // The waypoint's HBONE listener.
  const wp = new HboneServer({
    credentials: waypointCert,
    trustDomains: ['cluster.local'],
    handler: async (tu) => ({
      status: 200,
      upstream: proxy.accept({ sourcePrincipal: formatSpiffeId(tu.peerIdentity).slice('spiffe://'.length), sourceIp: tu.peerAddress.host, dst: { ip: tu.target.host, port: tu.target.port } }),
    }),
  });
  const { port: wpPort } = await wp.listen({ port: 0, host: '127.0.0.1' });
  const clientPool = new HbonePool();
  t.teardown(async () => {
    clientPool.destroy();
    proxy.close();
    upstreamPool.destroy();
    await wp.close();
    await dest.close();
  });
  const open = () => clientPool.connect({ source: clientCert, dstAddr: `127.0.0.1:${wpPort}`, expectedIdentities: [WAYPOINT], authority: `${VIP}:${PORT}` });
  return { open, records, seenPeers };
}

test('http1-through-hbone-into-the-waypoint-and-out-to-the-endpoint', async (t) => {
  const app = await h1Backend(t, 'v1');
  const { open, records, seenPeers } = await mesh(t, app.port);
  class TunnelAgent extends http.Agent {
    override createConnection(_o: unknown, cb: (err: Error | null, s?: import('node:stream').Duplex) => void): undefined {
      open().then((s) => cb(null, asSocket(s)), (err: Error) => cb(err));
      return undefined;
    }
  }
  const agent = new TunnelAgent({ keepAlive: true, maxSockets: 4 });
  t.teardown(() => agent.destroy());
  for (let i = 0; i < 10; i++) {
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ agent, path: `/r${i}`, headers: { host: `reviews.shop.svc.cluster.local:${PORT}` } }, (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c.toString()));
          res.on('end', () => resolve(b));
        })
        .on('error', reject);
    });
    t.is(body, `v1 /r${i}`);
  }
  t.is(records.length, 10);
  t.is(records[0]!.req.source.principal, 'cluster.local/ns/shop/sa/productpage');
  t.true(seenPeers.every((p) => p === WAYPOINT), 'the endpoint sees the waypoint, never the client');
  t.true(seenPeers.length <= 4, `${seenPeers.length} upstream tunnels for 10 requests: kept alive`);
});

test('grpc-through-hbone-keeps-its-trailers', async (t) => {
  const app = await grpcBackend(t, 'g');
  const { open, records } = await mesh(t, app.port, 'grpc');
  const s = await open();
  const session = http2.connect(`http://reviews.shop.svc.cluster.local:${PORT}`, { createConnection: () => s });
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  const stream = session.request({ ':method': 'POST', ':path': '/shop.Reviews/Get', 'content-type': 'application/grpc', te: 'trailers' });
  const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('trailers', resolve));
  const ended = once(stream, 'end');
  let body = '';
  stream.on('data', (c: Buffer) => (body += c.toString()));
  stream.end('req');
  t.is((await trailers)['grpc-status'], '0');
  await ended;
  t.is(body, 'g /shop.Reviews/Get');
  t.is(records[0]!.grpcStatus, '0');
});

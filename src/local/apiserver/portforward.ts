// pods/{name}/portforward: kubectl's port-forward protocol (portforward.k8s.io) over SPDY/3.1,
// either on the upgraded connection itself (kubectl ≤1.30: POST, `Upgrade: SPDY/3.1`) or tunnelled
// in WebSocket binary messages (kubectl 1.31+: subprotocol `SPDY/3.1+portforward.k8s.io`).
// For each local connection kubectl opens two streams with the same `requestID` header: an error
// stream (`streamType: error`), which the server ends with a message when the forward fails, and
// a data stream (`streamType: data`) carrying the bytes of the connection to `port` in the pod.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { ApiError, BadRequestError } from './errors.ts';
import { SpdySession, type SpdyStream } from './spdy.ts';
import type { PodStreams } from './streaming.ts';
import type { KubeObject } from './types.ts';
import { isWebSocketUpgrade, offeredProtocols, WebSocket } from './websocket.ts';

const PROTOCOL = 'portforward.k8s.io';
const TUNNEL_PROTOCOL = `SPDY/3.1+${PROTOCOL}`;
// The WebSocket channel protocol kubelet also serves for port-forward (its portforward/websocket.go),
// which @kubernetes/client-node's PortForward speaks: one connection per WebSocket, the ports in
// `?ports=`, port i's data on channel 2i and its errors on 2i+1.
const CHANNEL_PROTOCOL = 'v4.channel.k8s.io';

export function servePortForward(streams: PodStreams | undefined, pod: KubeObject, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  if (!streams) throw new ApiError(503, 'ServiceUnavailable', 'this API server runs without kubelets (no local cluster nodes), so it cannot reach pods', {});
  const connect = streams.portForward(pod);
  let session: SpdySession;
  if (isWebSocketUpgrade(req) && !offeredProtocols(req).includes(TUNNEL_PROTOCOL) && offeredProtocols(req).includes(CHANNEL_PROTOCOL)) {
    return serveChannels(connect, req, socket, head, pod.metadata.name ?? '');
  }
  if (isWebSocketUpgrade(req)) {
    if (!offeredProtocols(req).includes(TUNNEL_PROTOCOL)) throw new BadRequestError(`port-forward over WebSocket needs the subprotocol ${TUNNEL_PROTOCOL}`);
    const ws = new WebSocket(req, socket, head, TUNNEL_PROTOCOL);
    session = new SpdySession((b) => ws.send(b));
    ws.on('message', (m: Buffer) => session.receive(m));
    ws.on('close', () => session.close());
    session.on('close', () => ws.close());
  } else {
    const versions = String(req.headers['x-stream-protocol-version'] ?? '').split(',').map((s) => s.trim());
    if (!/^SPDY\/3\.1$/i.test(String(req.headers.upgrade ?? '')) || !versions.includes(PROTOCOL)) {
      throw new BadRequestError(`port-forward needs Upgrade: SPDY/3.1 with X-Stream-Protocol-Version: ${PROTOCOL}, or a WebSocket with ${TUNNEL_PROTOCOL}`);
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${PROTOCOL}\r\n\r\n`);
    session = new SpdySession((b) => socket.write(b));
    socket.on('data', (d: Buffer) => session.receive(d));
    socket.on('close', () => session.close());
    socket.on('error', () => session.close());
    session.on('close', () => socket.destroy());
    if (head.length) session.receive(head);
  }
  const pairs = new Map<string, { error?: SpdyStream; data?: SpdyStream }>();
  session.on('stream', (s: SpdyStream) => {
    const id = s.headers.get('requestid') ?? '';
    const pair = pairs.get(id) ?? {};
    pairs.set(id, pair);
    if (s.headers.get('streamtype') === 'error') pair.error = s;
    else if (s.headers.get('streamtype') === 'data') pair.data = s;
    else return s.end();
    if (!pair.data || !pair.error) return;
    pairs.delete(id);
    forward(connect, Number(s.headers.get('port')), pair.data, pair.error, pod.metadata.name ?? '');
  });
}

function forward(connect: ReturnType<PodStreams['portForward']>, port: number, data: SpdyStream, error: SpdyStream, podName: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    error.write(Buffer.from(`invalid port ${String(port)}`));
    error.end();
    data.end();
    return;
  }
  const conn = connect(port);
  data.on('data', (d: Buffer) => conn.input.write(d));
  data.on('end', () => conn.input.end());
  data.on('reset', () => conn.close());
  conn.input.on('error', () => {});
  conn.output.on('data', (d: Buffer) => data.write(d));
  conn.output.on('end', () => {
    data.end();
    void conn.failed.then((why) => {
      // kubelet's wording: kubectl prints it as "an error occurred forwarding …".
      if (why) error.write(Buffer.from(`error forwarding port ${port} to pod ${podName}: ${why}`));
      error.end();
    });
  });
}

/** Port-forward over the WebSocket channel protocol: each port of `?ports=` is one connection. */
function serveChannels(connect: ReturnType<PodStreams['portForward']>, req: IncomingMessage, socket: Duplex, head: Buffer, podName: string): void {
  const ports = (new URL(req.url ?? '/', 'http://x').searchParams.get('ports') ?? '').split(',').filter(Boolean).map(Number);
  if (!ports.length || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw new BadRequestError(`port-forward needs ?ports= with ports 1-65535, got ${JSON.stringify(ports)}`);
  const ws = new WebSocket(req, socket, head, CHANNEL_PROTOCOL);
  const frame = (channel: number, data: Buffer) => Buffer.concat([Buffer.from([channel]), data]);
  const conns = ports.map((port, i) => {
    const conn = connect(port);
    // Each channel starts with its port, little-endian (kubelet does; clients strip it).
    const portBytes = Buffer.from([port & 255, port >> 8]);
    ws.send(frame(2 * i, portBytes));
    ws.send(frame(2 * i + 1, portBytes));
    conn.input.on('error', () => {});
    conn.output.on('data', (d: Buffer) => ws.send(frame(2 * i, d)));
    conn.output.on('end', () => {
      void conn.failed.then((why) => {
        if (why) ws.send(frame(2 * i + 1, Buffer.from(`error forwarding port ${port} to pod ${podName}: ${why}`)));
        ws.close();
      });
    });
    return conn;
  });
  ws.on('message', (m: Buffer) => {
    const i = m[0]! / 2;
    if (Number.isInteger(i) && conns[i] && m.length > 1) conns[i].input.write(m.subarray(1));
  });
  ws.on('close', () => {
    for (const c of conns) c.close();
  });
}

// WebSockets for the streaming subresources (exec, attach, port-forward), on the `ws` library:
// the opening handshake with the subprotocol we chose (RFC 6455 §4.2), messages, ping/pong and
// the close handshake are its job. This wraps it in the small surface the streaming code uses:
// construct on an upgraded request, send(), waitDrain() for backpressure, close(); events
// 'message' (Buffer, isBinary) and 'close' (once).
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, WebSocketServer, type WebSocket as Ws } from 'ws';

const MAX_MESSAGE = 16 * 1024 * 1024;
/** The socket's own write buffer above which a writer should wait for 'drain'. */
const HIGH_WATER = 1024 * 1024;

/** The subprotocol chosen for each upgrade request, for the server's handleProtocols. */
const chosen = new WeakMap<IncomingMessage, string>();
// One server for every upgrade: noServer (the API server's HTTPS server owns the socket), no
// compression (kubectl does not offer it; streams are mostly incompressible anyway).
const server = new WebSocketServer({
  noServer: true,
  maxPayload: MAX_MESSAGE,
  perMessageDeflate: false,
  handleProtocols: (_offered, req) => chosen.get(req) ?? false,
});

/** The subprotocols the client offered (Sec-WebSocket-Protocol), in its order. */
export function offeredProtocols(req: IncomingMessage): string[] {
  return String(req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return /\bwebsocket\b/i.test(String(req.headers.upgrade ?? '')) && typeof req.headers['sec-websocket-key'] === 'string';
}

const toBuffer = (d: RawData): Buffer => (Buffer.isBuffer(d) ? d : Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d));

/**
 * A WebSocket on an upgraded request. send() before the handshake has completed is queued, after
 * close() ignored; close() starts the close handshake and emits 'close' at once.
 */
export class WebSocket extends EventEmitter {
  readonly protocol: string;
  private readonly socket: Duplex;
  private ws: Ws | undefined;
  private queued: { data: Buffer; binary: boolean }[] = [];
  private closing: { code: number; reason: string } | undefined;
  private closed = false;

  /** Completes the handshake (101) on `socket` with the chosen subprotocol. */
  constructor(req: IncomingMessage, socket: Duplex, head: Buffer, protocol: string) {
    super();
    this.protocol = protocol;
    this.socket = socket;
    chosen.set(req, protocol);
    socket.on('close', () => this.finish());
    socket.on('error', () => this.finish());
    server.handleUpgrade(req, socket, head, (ws) => {
      this.ws = ws;
      ws.on('message', (data: RawData, isBinary: boolean) => this.emit('message', toBuffer(data), isBinary));
      ws.on('close', () => this.finish());
      ws.on('error', () => this.finish());
      for (const m of this.queued) ws.send(m.data, { binary: m.binary });
      this.queued = [];
      if (this.closing) ws.close(this.closing.code, this.closing.reason);
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  send(data: Buffer, binary = true): void {
    if (this.closed || this.closing) return;
    if (this.ws) this.ws.send(data, { binary });
    else this.queued.push({ data, binary });
  }

  /** Resolves when the socket's write buffer has room again (backpressure), or at close. */
  waitDrain(): Promise<void> {
    if (this.closed || this.socket.writableLength < HIGH_WATER) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.off('close', done);
        resolve();
      };
      this.socket.once('drain', done);
      this.once('close', done);
    });
  }

  close(code = 1000, reason = ''): void {
    if (this.closed || this.closing) return;
    this.closing = { code, reason };
    this.ws?.close(code, reason);
    this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close');
  }
}

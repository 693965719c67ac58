// The server side of RFC 6455 WebSockets, as much as the streaming subresources need: the opening
// handshake with subprotocol choice (§4.2), binary and text messages (fragments reassembled),
// ping/pong and the close handshake (§5.5). Client frames are masked, server frames are not (§5.3).
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'; // RFC 6455 §1.3
const MAX_MESSAGE = 16 * 1024 * 1024;
const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

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

/**
 * A WebSocket on an upgraded socket. Events: 'message' (Buffer, isBinary), 'close'.
 * send() after close is ignored; close() sends a close frame and ends the socket.
 */
export class WebSocket extends EventEmitter {
  readonly protocol: string;
  private readonly socket: Duplex;
  private buffered: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private fragmentOp = 0;
  private closed = false;

  /** Completes the handshake (101) on `socket` with the chosen subprotocol. */
  constructor(req: IncomingMessage, socket: Duplex, head: Buffer, protocol: string) {
    super();
    this.protocol = protocol;
    this.socket = socket;
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}${GUID}`).digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n${protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : ''}\r\n`,
    );
    socket.on('data', (d: Buffer) => this.receive(d));
    socket.on('close', () => this.finish());
    socket.on('error', () => this.finish());
    if (head.length) this.receive(head);
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  send(data: Buffer, binary = true): void {
    if (this.closed) return;
    this.socket.write(frame(binary ? OP.binary : OP.text, data));
  }

  /** Whether the socket wants the writer to wait (backpressure) — resolve on 'drain'. */
  waitDrain(): Promise<void> {
    if (this.closed || this.socket.writableLength < 1024 * 1024) return Promise.resolve();
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
    if (this.closed) return;
    const body = Buffer.alloc(2 + Buffer.byteLength(reason));
    body.writeUInt16BE(code, 0);
    body.write(reason, 2);
    this.socket.write(frame(OP.close, body));
    this.socket.end();
    this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close');
  }

  private receive(chunk: Buffer): void {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    for (;;) {
      const b = this.buffered;
      if (b.length < 2) return;
      const fin = (b[0]! & 0x80) !== 0;
      const op = b[0]! & 0x0f;
      const masked = (b[1]! & 0x80) !== 0;
      let len = b[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if (len > MAX_MESSAGE || !masked) return this.fail(!masked ? 1002 : 1009);
      if (b.length < at + 4 + len) return;
      const mask = b.subarray(at, at + 4);
      const payload = Buffer.from(b.subarray(at + 4, at + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
      this.buffered = b.subarray(at + 4 + len);
      this.onFrame(fin, op, payload);
      if (this.closed) return;
    }
  }

  private onFrame(fin: boolean, op: number, payload: Buffer): void {
    if (op === OP.ping) return void this.socket.write(frame(OP.pong, payload));
    if (op === OP.pong) return;
    if (op === OP.close) return this.close(payload.length >= 2 ? payload.readUInt16BE(0) : 1000);
    if (op !== OP.continuation) {
      this.fragmentOp = op;
      this.fragments = [];
    }
    this.fragments.push(payload);
    if (!fin) return;
    const message = this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments);
    this.fragments = [];
    this.emit('message', message, this.fragmentOp === OP.binary);
  }

  private fail(code: number): void {
    this.close(code);
    this.socket.destroy();
  }
}

function frame(op: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = 0x80 | op;
  if (len < 126) head[1] = len;
  else if (len < 65536) {
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

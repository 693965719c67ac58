// The server side of SPDY/3.1 framing (draft-mbelshe-httpbis-spdy-00 §2), as much as kubectl's
// port-forward uses: the client opens streams (SYN_STREAM) and the server answers (SYN_REPLY),
// DATA with FIN half-closes, RST_STREAM, PING echo, GOAWAY. SETTINGS and WINDOW_UPDATE are read
// and ignored (kubectl's spdystream sends no flow control that a server must honour). Header
// blocks are one zlib stream per direction primed with the spec's dictionary.
import { EventEmitter } from 'node:events';
import { constants, createDeflate, createInflate, type Deflate, type Inflate } from 'node:zlib';
import { SPDY3_DICTIONARY } from './spdy-dictionary.ts';

const TYPE = { synStream: 1, synReply: 2, rstStream: 3, settings: 4, ping: 6, goaway: 7, headers: 8, windowUpdate: 9 } as const;
const FLAG_FIN = 0x01;
const MAX_DATA_FRAME = 32 * 1024;

/** A stream the client opened: its headers, bytes in ('data', 'end'), write/end to answer. */
export class SpdyStream extends EventEmitter {
  readonly id: number;
  readonly headers: Map<string, string>;
  private readonly session: SpdySession;
  private ended = false;

  constructor(session: SpdySession, id: number, headers: Map<string, string>) {
    super();
    this.session = session;
    this.id = id;
    this.headers = headers;
  }

  write(data: Buffer): void {
    if (this.ended) return;
    for (let at = 0; at < data.length; at += MAX_DATA_FRAME) this.session.sendData(this.id, data.subarray(at, at + MAX_DATA_FRAME), false);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.session.sendData(this.id, Buffer.alloc(0), true);
  }
}

/**
 * One SPDY connection over any byte transport: feed received bytes to receive(), and it calls
 * `send` with bytes to write. Events: 'stream' (SpdyStream, after its SYN_REPLY), 'close'.
 */
export class SpdySession extends EventEmitter {
  private readonly send: (bytes: Buffer) => void;
  private readonly inflater: Inflate = createInflate({ dictionary: SPDY3_DICTIONARY });
  private readonly deflater: Deflate = createDeflate({ dictionary: SPDY3_DICTIONARY });
  private readonly streams = new Map<number, SpdyStream>();
  private buffered: Buffer = Buffer.alloc(0);
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(send: (bytes: Buffer) => void) {
    super();
    this.send = send;
    this.inflater.on('error', () => this.close());
    this.deflater.on('error', () => this.close());
  }

  receive(chunk: Buffer): void {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    while (this.buffered.length >= 8) {
      const len = this.buffered.readUIntBE(5, 3);
      if (this.buffered.length < 8 + len) return;
      const frame = this.buffered.subarray(0, 8 + len);
      this.buffered = this.buffered.subarray(8 + len);
      // Header blocks inflate asynchronously and in order, so every frame waits its turn.
      this.queue = this.queue.then(() => this.onFrame(frame)).catch(() => this.close());
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.streams.values()) s.emit('end');
    this.streams.clear();
    this.inflater.close();
    this.deflater.close();
    this.emit('close');
  }

  sendData(id: number, data: Buffer, fin: boolean): void {
    if (this.closed) return;
    const head = Buffer.alloc(8);
    head.writeUInt32BE(id & 0x7fffffff, 0);
    head[4] = fin ? FLAG_FIN : 0;
    head.writeUIntBE(data.length, 5, 3);
    this.send(Buffer.concat([head, data]));
  }

  private control(type: number, flags: number, body: Buffer): void {
    if (this.closed) return;
    const head = Buffer.alloc(8);
    head.writeUInt16BE(0x8003, 0); // control bit, version 3
    head.writeUInt16BE(type, 2);
    head[4] = flags;
    head.writeUIntBE(body.length, 5, 3);
    this.send(Buffer.concat([head, body]));
  }

  private async onFrame(f: Buffer): Promise<void> {
    if (this.closed) return;
    const flags = f[4]!;
    const body = f.subarray(8);
    if ((f[0]! & 0x80) === 0) {
      const s = this.streams.get(f.readUInt32BE(0) & 0x7fffffff);
      if (!s) return;
      if (body.length) s.emit('data', Buffer.from(body));
      if (flags & FLAG_FIN) s.emit('end');
      return;
    }
    const type = f.readUInt16BE(2);
    if (type === TYPE.synStream) {
      const id = body.readUInt32BE(0) & 0x7fffffff;
      const headers = parseHeaderBlock(await this.zlib(this.inflater, body.subarray(10)));
      const stream = new SpdyStream(this, id, headers);
      this.streams.set(id, stream);
      const reply = Buffer.alloc(4);
      reply.writeUInt32BE(id, 0);
      this.control(TYPE.synReply, 0, Buffer.concat([reply, await this.zlib(this.deflater, headerBlock([]))]));
      this.emit('stream', stream);
      if (flags & FLAG_FIN) stream.emit('end');
    } else if (type === TYPE.rstStream) {
      const id = body.readUInt32BE(0) & 0x7fffffff;
      this.streams.get(id)?.emit('reset');
      this.streams.delete(id);
    } else if (type === TYPE.ping) {
      this.control(TYPE.ping, 0, Buffer.from(body));
    } else if (type === TYPE.goaway) {
      this.close();
    } else if (type === TYPE.headers) {
      await this.zlib(this.inflater, body.subarray(4)); // keeps the zlib context in step
    }
  }

  /** Runs one header block through a connection-long zlib stream with a sync flush. */
  private zlib(z: Inflate | Deflate, input: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const onData = (c: Buffer) => out.push(c);
      z.on('data', onData);
      z.write(input);
      z.flush(constants.Z_SYNC_FLUSH, () => {
        z.off('data', onData);
        if (this.closed) reject(new Error('session closed'));
        else resolve(Buffer.concat(out));
      });
    });
  }
}

function parseHeaderBlock(b: Buffer): Map<string, string> {
  const headers = new Map<string, string>();
  let at = 4;
  for (let n = b.readUInt32BE(0); n > 0; n--) {
    const nl = b.readUInt32BE(at);
    const name = b.toString('utf8', at + 4, at + 4 + nl).toLowerCase();
    at += 4 + nl;
    const vl = b.readUInt32BE(at);
    headers.set(name, b.toString('utf8', at + 4, at + 4 + vl));
    at += 4 + vl;
  }
  return headers;
}

function headerBlock(pairs: [string, string][]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(4)];
  parts[0]!.writeUInt32BE(pairs.length, 0);
  for (const [k, v] of pairs) {
    for (const s of [k, v]) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(Buffer.byteLength(s), 0);
      parts.push(len, Buffer.from(s));
    }
  }
  return Buffer.concat(parts);
}

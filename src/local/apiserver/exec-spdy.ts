// exec and attach over SPDY/3.1 (remotecommand v4.channel.k8s.io), for kubectl 1.27–1.29, which
// know no WebSocket, and for 1.30+ when their WebSocket attempt fails. The client opens one SPDY
// stream per standard stream, named by its `streamType` header (error, stdin, stdout, stderr,
// resize); the process starts once all that the query asks for are open, as kubelet does.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { logger } from '../../common/log.ts';
import { BadRequestError } from './errors.ts';
import { SpdySession, type SpdyStream } from './spdy.ts';
import { exitStatus, type StartExec, type TerminalSize } from './streaming.ts';

const log = logger('apiserver');
const PROTOCOL = 'v4.channel.k8s.io';
const STREAMS_WAIT_MS = 30_000; // kubelet's stream creation timeout

export function serveExecSpdy(req: IncomingMessage, socket: Duplex, head: Buffer, start: StartExec, command: string[], q: URLSearchParams): void {
  const versions = String(req.headers['x-stream-protocol-version'] ?? '').split(',').map((s) => s.trim());
  if (!/^SPDY\/3\.1$/i.test(String(req.headers.upgrade ?? '')) || !versions.includes(PROTOCOL)) {
    throw new BadRequestError(`exec needs a WebSocket (v5.channel.k8s.io) or Upgrade: SPDY/3.1 with X-Stream-Protocol-Version: ${PROTOCOL}; got ${String(req.headers.upgrade)} ${versions.join(', ')}`);
  }
  const flag = (k: string) => q.get(k) === 'true' || q.get(k) === '1';
  const tty = flag('tty');
  const expected = new Set(['error', ...(flag('stdin') ? ['stdin'] : []), ...(flag('stdout') ? ['stdout'] : []), ...(flag('stderr') && !tty ? ['stderr'] : []), ...(tty ? ['resize'] : [])]);
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${PROTOCOL}\r\n\r\n`);
  const session = new SpdySession((b) => socket.write(b));
  socket.on('data', (d: Buffer) => session.receive(d));
  socket.on('close', () => session.close());
  socket.on('error', () => session.close());
  session.on('close', () => socket.destroy());
  if (head.length) session.receive(head);

  const streams = new Map<string, SpdyStream>();
  const give = setTimeout(() => session.close(), STREAMS_WAIT_MS);
  session.on('stream', (s: SpdyStream) => {
    const type = s.headers.get('streamtype') ?? '';
    if (!expected.has(type) || streams.has(type)) return s.end();
    streams.set(type, s);
    if (streams.size < expected.size) return;
    clearTimeout(give);
    run(session, streams, start, command, tty);
  });
}

function run(session: SpdySession, streams: Map<string, SpdyStream>, start: StartExec, command: string[], tty: boolean): void {
  let resizeText = '';
  let first: TerminalSize | undefined;
  const resize = streams.get('resize');
  // The first size may already be on its way; a tty session waits for it briefly, as over WebSocket.
  const begin = () => {
    const s = start(first);
    session.on('close', () => s.kill());
    const stdin = streams.get('stdin');
    s.stdin?.on('error', () => {});
    stdin?.on('data', (d: Buffer) => s.stdin?.write(d));
    stdin?.on('end', () => s.stdin?.end());
    resize?.on('data', (d: Buffer) => {
      resizeText += d.toString('utf8');
      for (let nl = resizeText.indexOf('}'); nl >= 0; nl = resizeText.indexOf('}')) {
        try {
          const r = JSON.parse(resizeText.slice(0, nl + 1)) as { Width?: number; Height?: number };
          if (r.Width && r.Height) s.resize(r.Width, r.Height);
        } catch {
          // a malformed resize is ignored
        }
        resizeText = resizeText.slice(nl + 1);
      }
    });
    const pipe = (from: NodeJS.ReadableStream | undefined, to: SpdyStream | undefined) =>
      new Promise<void>((resolve) => {
        if (!from) return resolve();
        from.on('data', (d: Buffer) => to?.write(d));
        from.once('end', () => resolve());
        from.once('close', () => resolve());
      });
    const outputs = Promise.all([pipe(s.stdout, streams.get('stdout')), pipe(s.stderr, streams.get('stderr'))]);
    void (async () => {
      const code = await s.exited;
      await outputs;
      streams.get('stdout')?.end();
      streams.get('stderr')?.end();
      const error = streams.get('error')!;
      error.write(Buffer.from(JSON.stringify(exitStatus(code, command))));
      error.end();
    })().catch((err: unknown) => {
      log.warn({ err: String(err) }, 'exec session failed');
      session.close();
    });
  };
  if (!tty || !resize) return begin();
  let started = false;
  const once = () => {
    if (started) return;
    started = true;
    begin();
  };
  resize.once('data', (d: Buffer) => {
    try {
      const r = JSON.parse(d.toString('utf8').split('}')[0] + '}') as { Width?: number; Height?: number };
      if (r.Width && r.Height) first = { width: r.Width, height: r.Height };
    } catch {
      // no size: start without one
    }
    once();
  });
  setTimeout(once, 1000).unref();
}

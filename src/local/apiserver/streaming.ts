// The pods' streaming subresources: log (plain chunked text), and exec and attach over WebSocket
// with the channel protocol kubectl 1.30+ speaks (v5.channel.k8s.io; v4 accepted) or over SPDY
// (exec-spdy.ts, kubectl 1.27–1.29); port-forward is portforward.ts. The API server
// holds no processes: it hands each request to the PodStreams that the cluster's kubelets provide
// (on a real cluster kube-apiserver proxies these to the kubelet's own server).
//
// Channel protocol (KEP-4006, k8s.io/apimachinery wsstream): every binary message starts with a
// channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error (the final metav1.Status), 4 resize
// ({"Width","Height"}); v5 adds 255, "close", whose one-byte payload names the channel the client
// has finished writing (stdin EOF).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex, Readable, Writable } from 'node:stream';
import { logger } from '../../common/log.ts';
import { ApiError, BadRequestError } from './errors.ts';
import { serveExecSpdy } from './exec-spdy.ts';
import type { KubeObject } from './types.ts';
import { isWebSocketUpgrade, offeredProtocols, WebSocket } from './websocket.ts';

const log = logger('apiserver');

/** The subresources this module serves, with the RBAC verb kube-apiserver checks for each. */
export const STREAMING_SUBRESOURCES: Record<string, string> = { log: 'get', exec: 'create', attach: 'create', portforward: 'create' };
const CHANNEL_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
const TTY_SIZE_WAIT_MS = 1000;
const CH = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4, close: 255 } as const;

export interface LogRequest {
  container: string;
  follow: boolean;
  previous: boolean;
  tailLines: number | undefined;
  limitBytes: number | undefined;
  /** Each line prefixed with its RFC 3339 time (kubectl logs --timestamps). */
  timestamps: boolean;
  /** Only lines written at or after this time (ms since the epoch; --since, --since-time). */
  sinceMs: number | undefined;
}

export interface ExecRequest {
  container: string;
  command: string[];
  stdin: boolean;
  tty: boolean;
}

/** A running exec (or attach): its standard streams, resize for a tty, and its exit code. */
export interface ExecSession {
  stdin: Writable | undefined;
  stdout: Readable;
  /** Absent with a tty (stderr is the terminal, merged into stdout). */
  stderr: Readable | undefined;
  exited: Promise<number>;
  resize(width: number, height: number): void;
  kill(): void;
}

export interface TerminalSize {
  width: number;
  height: number;
}

/** Starts a checked exec; with a tty, `size` is the terminal's first size when the client sent one. */
export type StartExec = (size?: TerminalSize) => ExecSession;

/**
 * What the kubelets provide. Each method throws an ApiError a user can act on (the container is
 * not running, has no previous instance, …). `pod` is the stored Pod.
 */
export interface PodStreams {
  /** The log's bytes; with follow, keeps yielding until `signal` aborts or the pod is gone. */
  logs(pod: KubeObject, req: LogRequest, signal: AbortSignal): AsyncIterable<Buffer>;
  /** Checks that the exec can run (the container is running, …); the returned function runs it. */
  exec(pod: KubeObject, req: ExecRequest): StartExec;
  /** Checks that the pod can be reached; the returned function connects to a port inside it. */
  portForward(pod: KubeObject): (port: number) => ForwardConnection;
}

/** A TCP connection to a port in the pod's network namespace. */
export interface ForwardConnection {
  input: Writable;
  output: Readable;
  /** Resolves after the connection ends: why it failed, or undefined. */
  failed: Promise<string | undefined>;
  close(): void;
}

const flag = (q: URLSearchParams, k: string) => q.get(k) === 'true' || q.get(k) === '1';

function count(q: URLSearchParams, k: string): number | undefined {
  const v = q.get(k);
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new BadRequestError(`${k}: Invalid value: "${v}": must be a non-negative integer`);
  return n;
}

/** The container a request means: ?container=, else the pod's only one (as kube-apiserver). */
export function pickContainer(pod: KubeObject, q: URLSearchParams): string {
  const spec = (pod.spec ?? {}) as { containers?: { name: string }[]; initContainers?: { name: string }[] };
  const names = (spec.containers ?? []).map((c) => c.name);
  const asked = q.get('container');
  const name = pod.metadata.name ?? '';
  if (asked) {
    // Init containers too, by name (kubectl logs -c init).
    if (!names.includes(asked) && !(spec.initContainers ?? []).some((c) => c.name === asked)) throw new BadRequestError(`container ${asked} is not valid for pod ${name}`);
    return asked;
  }
  if (names.length === 1) return names[0]!;
  throw new BadRequestError(`a container name must be specified for pod ${name}, choose one of: [${names.join(' ')}]`);
}

function noBackend(): never {
  throw new ApiError(503, 'ServiceUnavailable', 'this API server runs without kubelets (no local cluster nodes), so it cannot reach containers', {});
}

/** GET pods/{name}/log: 200 text/plain, chunked; follow streams lines as they are written. */
export async function serveLog(streams: PodStreams | undefined, pod: KubeObject, req: IncomingMessage, res: ServerResponse, q: URLSearchParams): Promise<void> {
  if (!streams) noBackend();
  if (q.has('sinceSeconds') && q.has('sinceTime')) throw new BadRequestError('at most one of sinceTime or sinceSeconds may be specified');
  let sinceMs: number | undefined;
  if (q.has('sinceSeconds')) {
    const n = count(q, 'sinceSeconds')!;
    if (n < 1) throw new BadRequestError('sinceSeconds: Invalid value: must be greater than 0');
    sinceMs = Date.now() - n * 1000;
  } else if (q.has('sinceTime')) {
    sinceMs = Date.parse(q.get('sinceTime')!);
    if (Number.isNaN(sinceMs)) throw new BadRequestError(`sinceTime: Invalid value: "${q.get('sinceTime')}": not an RFC 3339 time`);
  }
  const logReq: LogRequest = {
    timestamps: flag(q, 'timestamps'),
    sinceMs,
    container: pickContainer(pod, q),
    follow: flag(q, 'follow'),
    previous: flag(q, 'previous'),
    tailLines: count(q, 'tailLines'),
    limitBytes: count(q, 'limitBytes'),
  };
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  const it = streams.logs(pod, logReq, abort.signal)[Symbol.asyncIterator]();
  // The first read may fail with an ApiError (no such instance): that must still be a Status.
  let next = await it.next();
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
  res.flushHeaders();
  try {
    while (!next.done) {
      if (!res.write(next.value)) await new Promise((r) => res.once('drain', r));
      next = await it.next();
    }
  } finally {
    abort.abort();
    await it.return?.();
  }
  res.end();
}

/** An upgrade to pods/{name}/exec|attach: the WebSocket channel protocol over an ExecSession. */
export function serveExec(streams: PodStreams | undefined, pod: KubeObject, sub: string, req: IncomingMessage, socket: Duplex, head: Buffer, q: URLSearchParams): void {
  // kubectl 1.30+ falls back to SPDY when the WebSocket upgrade fails, so the reasons that hold
  // for both (no command, container not running) come first, before the protocol is chosen.
  if (!streams) noBackend();
  const command = q.getAll('command');
  if (sub === 'exec' && command.length === 0) throw new BadRequestError('you must specify at least 1 command');
  const start = streams.exec(pod, { container: pickContainer(pod, q), command: sub === 'exec' ? command : [], stdin: flag(q, 'stdin'), tty: flag(q, 'tty') });
  if (!isWebSocketUpgrade(req)) return serveExecSpdy(req, socket, head, start, command, q);
  const protocol = offeredProtocols(req).find((p) => CHANNEL_PROTOCOLS.includes(p));
  if (!protocol) throw new BadRequestError(`none of the offered subprotocols (${offeredProtocols(req).join(', ') || 'none'}) is served; supported: ${CHANNEL_PROTOCOLS.join(', ')}`);
  const ws = new WebSocket(req, socket, head, protocol);
  pipeSession(ws, start, command, flag(q, 'tty'));
}

/**
 * Wires a WebSocket to a session. With a tty the process starts once kubectl's first resize has
 * arrived (it sends one right after connecting; at most TTY_SIZE_WAIT_MS), so that the command
 * sees the terminal's real size from its first instruction.
 */
function pipeSession(ws: WebSocket, start: StartExec, command: string[], tty: boolean): void {
  const v5 = ws.protocol === 'v5.channel.k8s.io';
  let s: ExecSession | undefined;
  const early: Buffer[] = [];
  let size: TerminalSize | undefined;
  const onMessage = (m: Buffer) => {
    if (m.length === 0) return;
    const ch = m[0];
    const data = m.subarray(1);
    if (ch === CH.resize) {
      try {
        const r = JSON.parse(data.toString('utf8')) as { Width?: number; Height?: number };
        if (r.Width && r.Height) size = { width: r.Width, height: r.Height };
      } catch {
        // a malformed resize is ignored, as kubelet does
      }
      if (!s) return begin();
      if (size) s.resize(size.width, size.height);
      return;
    }
    if (!s) return void early.push(m);
    if (ch === CH.stdin && data.length) s.stdin?.write(data);
    else if (v5 && ch === CH.close && data[0] === CH.stdin) s.stdin?.end();
  };
  const begin = () => {
    if (s || !ws.isOpen) return;
    const session = start(size);
    s = session;
    const out = (channel: number, stream: Readable | undefined) =>
      new Promise<void>((resolve) => {
        if (!stream) return resolve();
        stream.on('data', (d: Buffer) => {
          ws.send(Buffer.concat([Buffer.of(channel), d]));
          if (!ws.isOpen) return;
          stream.pause();
          void ws.waitDrain().then(() => stream.resume());
        });
        stream.once('end', () => resolve());
        stream.once('error', () => resolve());
        stream.once('close', () => resolve());
      });
    const outputs = Promise.all([out(CH.stdout, session.stdout), out(CH.stderr, session.stderr)]);
    session.stdin?.on('error', () => {}); // the process may exit before reading all of stdin
    for (const m of early.splice(0)) onMessage(m);
    void (async () => {
      const code = await session.exited;
      await outputs;
      ws.send(Buffer.concat([Buffer.of(CH.error), Buffer.from(JSON.stringify(exitStatus(code, command)))]));
      ws.close();
    })().catch((err: unknown) => {
      log.warn({ err: String(err) }, 'exec session failed');
      ws.close(1011);
    });
  };
  ws.on('message', onMessage);
  ws.on('close', () => s?.kill());
  if (!tty) begin();
  else setTimeout(begin, TTY_SIZE_WAIT_MS).unref();
}

/** The final Status kubelet sends; kubectl exits with the code in the ExitCode cause. */
export function exitStatus(code: number, command: string[]): Record<string, unknown> {
  if (code === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

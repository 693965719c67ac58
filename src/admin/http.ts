// A small HTTP listener with a graceful close, shared by the admin, metrics and readiness servers.
import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { logger } from '../common/log.ts';
import { AdminListenError } from './errors.ts';

// Not `import http from 'node:http'`: an ES import of a builtin reads every one of its exports, and
// node:http's lazy WebSocket, CloseEvent and MessageEvent then load Node's bundled undici, which
// these servers never use (~2 MB of ztunnel's RSS, ~1 MB of its heap; issue 16). getBuiltinModule reads nothing.
const { createServer } = process.getBuiltinModule('node:http');

const log = logger('admin');

export type Handler = (req: http.IncomingMessage, url: URL, res: http.ServerResponse) => void | Promise<void>;

export interface Listener {
  /** The bound address (the real port when 0 was asked). */
  readonly host: string;
  readonly port: number;
  /** Stops accepting, lets requests in flight finish for up to `graceMs` (default 5 s, well
   * under a pod's 30 s termination grace), then drops what is left. Idempotent. */
  close(graceMs?: number): Promise<void>;
}

export function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

export function sendJson(res: http.ServerResponse, status: number, value: unknown, replacer?: (k: string, v: unknown) => unknown): void {
  send(res, status, `${JSON.stringify(value, replacer as never, 2)}\n`, 'application/json');
}

export async function listen(name: string, host: string, port: number, handler: Handler, hint: string): Promise<Listener> {
  const server = createServer((req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      return send(res, 400, 'bad request target\n');
    }
    Promise.resolve()
      .then(() => handler(req, url, res))
      .catch((err: Error) => {
        log.warn({ server: name, path: url.pathname, err: err.message }, 'admin request failed');
        if (!res.headersSent) send(res, 500, `${err.message}\n`);
        else res.destroy(err);
      });
  });
  // Probes and scrapers keep connections alive; a short timeout bounds what a close must wait for.
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE' ? `port ${port} is in use — is another ztunnel (or ${hint}) running on this node?` : err.code === 'EACCES' ? `not allowed to bind ${host}:${port}` : err.message;
      reject(new AdminListenError(`${name} server cannot listen on ${host}:${port}: ${why}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  log.info({ server: name, address: `${addr.address}:${addr.port}` }, 'listening');
  let closing: Promise<void> | undefined;
  return {
    host: addr.address,
    port: addr.port,
    close(graceMs = 5_000) {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

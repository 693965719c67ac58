// meshctl's line to the running local-cluster daemon, for what only the daemon can do (it owns
// the component processes): a unix socket <state dir>/daemon.sock, root-only like the state
// directory. One JSON request per connection; the daemon answers with progress lines and one
// final line:  → {"op":"rollout","component":"controller"}
//              ← {"progress":"…"}* then {"done":true,"result":…} or {"error":"…"}
import { chmodSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { LocalError } from './errors.ts';

export interface DaemonRequest {
  readonly op: string;
  readonly [k: string]: unknown;
}

/** Handles one request; `progress` reaches the caller as it happens. */
export type DaemonHandler = (req: DaemonRequest, progress: (m: string) => void) => Promise<unknown>;

export function controlSocketPath(stateDir: string): string {
  return join(stateDir, 'daemon.sock');
}

/** Serves requests on the control socket; returns a function that stops serving. */
export async function serveDaemonControl(stateDir: string, handlers: Readonly<Record<string, DaemonHandler>>): Promise<() => Promise<void>> {
  const path = controlSocketPath(stateDir);
  rmSync(path, { force: true });
  const server = net.createServer((conn) => {
    const send = (o: object) => conn.writable && conn.write(`${JSON.stringify(o)}\n`);
    conn.on('error', () => undefined);
    const lines = createInterface({ input: conn });
    lines.once('line', (line) => {
      lines.close();
      let req: DaemonRequest;
      try {
        req = JSON.parse(line) as DaemonRequest;
      } catch {
        send({ error: 'the request is not JSON' });
        conn.end();
        return;
      }
      const handler = handlers[req.op];
      if (!handler) {
        send({ error: `the daemon does not know "${String(req.op)}" (it knows: ${Object.keys(handlers).join(', ')}); is meshctl from the same checkout as the running daemon?` });
        conn.end();
        return;
      }
      handler(req, (m) => send({ progress: m })).then(
        (result) => {
          send({ done: true, result });
          conn.end();
        },
        (e: Error) => {
          send({ error: e.message });
          conn.end();
        },
      );
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
  chmodSync(path, 0o600);
  return () => new Promise((r) => server.close(() => r()));
}

/** Sends one request to the daemon of `stateDir`, calls `onProgress` per line, returns the result. */
export function daemonRequest(stateDir: string, req: DaemonRequest, onProgress: (m: string) => void): Promise<unknown> {
  const path = controlSocketPath(stateDir);
  return new Promise((resolve, reject) => {
    const conn = net.connect(path);
    let settled = false;
    const fail = (e: Error) => {
      if (!settled) reject(e);
      settled = true;
    };
    conn.once('error', (e: NodeJS.ErrnoException) =>
      fail(
        e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
          ? new LocalError('MESH_ERR_LOCAL_DAEMON', `no local cluster daemon answers on ${path}: is one running (\`meshctl dev status --state-dir ${stateDir}\`)?`, e)
          : e,
      ),
    );
    conn.write(`${JSON.stringify(req)}\n`);
    const lines = createInterface({ input: conn });
    lines.on('line', (line) => {
      const m = JSON.parse(line) as { progress?: string; done?: boolean; result?: unknown; error?: string };
      if (m.progress !== undefined) onProgress(m.progress);
      else if (m.error !== undefined) fail(new LocalError('MESH_ERR_LOCAL_DAEMON', m.error));
      else if (m.done) {
        settled = true;
        resolve(m.result);
      }
    });
    lines.once('close', () => fail(new LocalError('MESH_ERR_LOCAL_DAEMON', `the daemon closed the connection before it answered (see ${join(stateDir, 'daemon.log')})`)));
  });
}

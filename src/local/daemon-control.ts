// The local cluster daemon's control socket (<state dir>/daemon.sock): how `meshctl dev rollout`
// asks the daemon, which owns the mesh's processes, to roll a component out. One request per
// connection, newline-delimited JSON both ways: progress lines, then the result or an error, and
// (when asked) one line per old process as it finishes draining.
import { chmodSync, rmSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { logger } from '../common/log.ts';
import { controlPath } from './daemon-state.ts';
import type { LocalMesh } from './mesh.ts';
import { rollout } from './rollout/index.ts';

const log = logger('local');

export interface RolloutRequest {
  op: 'rollout';
  component: string;
  node?: string;
  drainTimeoutMs?: number;
  /** Keep the connection until every old process has exited, with a line for each. */
  waitDrained?: boolean;
}

export type ControlReply =
  | { progress: string }
  | { rolledOut: { node?: string; oldPid?: number; newPid: number; handoverMs: number }[] }
  | { drained: { node?: string; pid?: number; ms: number; code: number | null } }
  | { error: string }
  | { done: true };

export async function serveControl(stateDir: string, mesh: LocalMesh): Promise<net.Server> {
  const path = controlPath(stateDir);
  rmSync(path, { force: true });
  const server = net.createServer((c) => {
    c.on('error', () => {});
    const send = (r: ControlReply) => {
      if (!c.destroyed) c.write(`${JSON.stringify(r)}\n`);
    };
    const rl = createInterface({ input: c });
    rl.on('error', () => {}); // the socket's own, re-emitted: c's listener above has them
    rl.once('line', (line) => {
      rl.close();
      void handle(line, mesh, send).finally(() => c.end());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, resolve);
  });
  chmodSync(path, 0o600);
  return server;
}

async function handle(line: string, mesh: LocalMesh, send: (r: ControlReply) => void): Promise<void> {
  let req: RolloutRequest;
  try {
    req = JSON.parse(line) as RolloutRequest;
  } catch {
    return send({ error: 'the request is not JSON' });
  }
  if (req.op !== 'rollout') return send({ error: `unknown request '${String(req.op)}'` });
  try {
    log.info({ component: req.component, node: req.node }, 'rollout requested');
    const results = await rollout(mesh, req.component, { node: req.node, drainTimeoutMs: req.drainTimeoutMs }, (m) => send({ progress: m }));
    send({ rolledOut: results.map(({ drained: _, ...r }) => r) });
    if (req.waitDrained) {
      await Promise.all(results.map((r) => r.drained.then((d) => send({ drained: { ...(r.node ? { node: r.node } : {}), ...(r.oldPid ? { pid: r.oldPid } : {}), ...d } }))));
    }
    send({ done: true });
  } catch (e) {
    send({ error: (e as Error).message });
  }
}

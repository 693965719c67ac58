// A node agent rollout on the local cluster. The agent carries no traffic: capture is pinned in
// bpffs and ztunnel keeps serving while no agent runs, reconnecting to ZDS when the new one is up
// (ARCHITECTURE.md "Restarts and upgrades"). Its sockets (ZDS, control) have fixed paths, so the
// old agent stops before the new one starts, as the DaemonSet's agent container is replaced.
import { once } from 'node:events';
import type { LocalMesh } from '../mesh.ts';
import type { RolloutResult } from './types.ts';

const STOP_TIMEOUT_MS = 10_000;

export async function rolloutAgent(mesh: LocalMesh, node: string, say: (m: string) => void): Promise<RolloutResult> {
  const old = mesh.retire('agent', node);
  const started = Date.now();
  if (old) {
    say(`${node}: stopping agent pid ${old.pid} (capture stays pinned; ztunnel keeps serving)`);
    const exited = once(old, 'exit');
    old.kill('SIGTERM');
    const stopped = await Promise.race([exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), STOP_TIMEOUT_MS))]);
    if (!stopped) {
      say(`${node}: agent pid ${old.pid} did not stop within ${STOP_TIMEOUT_MS / 1000} s; killing it`);
      old.kill('SIGKILL');
      await exited;
    }
  }
  const fresh = await mesh.startProcess('agent', node);
  const ms = Date.now() - started;
  say(`${node}: agent pid ${fresh.pid} running (${ms} ms)`);
  return { node, ...(old ? { oldPid: old.pid! } : {}), newPid: fresh.pid!, handoverMs: ms, drained: Promise.resolve({ ms: 0, code: 0 }) };
}

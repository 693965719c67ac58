// A ztunnel rollout on one node of the local cluster, as the node DaemonSet's rolling update
// (maxSurge 1, maxUnavailable 0) does it on a real one: the new ztunnel starts beside the old,
// takes every enrolled pod over (its inbound sockets swapped into the sockmap, its outbound
// listeners sharing the port), and once its readiness says so the old one gets SIGTERM and
// drains: it serves its established connections until they end (MESH_DRAIN_TIMEOUT), then exits.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { LocalMesh } from '../mesh.ts';
import { waitFor } from '../mesh.ts';
import type { RolloutResult } from './types.ts';

/** How long the new ztunnel may take to serve every pod before the rollout gives up (the old one
 * then goes on serving: nothing was taken from it). */
const READY_TIMEOUT_MS = 60_000;

export async function rolloutZtunnel(mesh: LocalMesh, node: string, say: (m: string) => void, opts: { drainTimeoutMs?: number } = {}): Promise<RolloutResult> {
  const old = mesh.retire('ztunnel', node);
  say(`${node}: starting a new ztunnel${old ? ` beside pid ${old.pid}` : ''}`);
  const started = Date.now();
  let fresh: ChildProcess;
  try {
    fresh = await mesh.startProcess('ztunnel', node, opts);
    const port = mesh.ztunnelPort(node, 'readiness');
    let last = '';
    await waitFor(
      `the new ztunnel on ${node} to serve every pod`,
      async () => {
        const r = await fetch(`http://127.0.0.1:${port}/healthz/ready`);
        last = await r.text();
        return r.ok ? true : undefined;
      },
      READY_TIMEOUT_MS,
    ).catch((e: Error) => {
      throw new Error(`${e.message} (its readiness says: ${last.trim() || 'nothing'}); the old ztunnel keeps serving`, { cause: e });
    });
  } catch (e) {
    // The old one never stopped accepting: put it back in its slot.
    if (old) mesh.processes.set(`ztunnel-${node}`, old);
    throw e;
  }
  const handoverMs = Date.now() - started;
  if (!old) {
    say(`${node}: ztunnel pid ${fresh.pid} serving (there was none before)`);
    return { node, newPid: fresh.pid!, handoverMs, drained: Promise.resolve({ ms: 0, code: null }) };
  }
  say(`${node}: ztunnel pid ${fresh.pid} serves every pod (${handoverMs} ms); pid ${old.pid} drains its established connections`);
  const drainStart = Date.now();
  const exited = once(old, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  old.kill('SIGTERM');
  mesh.writeEndpoints();
  const drained = exited.then(([code]) => ({ ms: Date.now() - drainStart, code }));
  return { node, oldPid: old.pid!, newPid: fresh.pid!, handoverMs, drained };
}

// The node's unix sockets (control, ZDS, L7 flows) live in a host directory that an old and a new
// node pod share while a DaemonSet rolls with surge: the new agent binds the same paths (removing
// the old files) while the old agent still runs. When the old agent closes its servers, libuv
// unlinks each server's path (uv__pipe_close) — by then the new agent's socket — and a ztunnel
// started after that finds no ZDS socket. So, on a stop, a path whose file is no longer the one
// this process bound is kept aside across the close and put back.
import { linkSync, renameSync, rmSync, statSync } from 'node:fs';

/** The inode of each socket path as this process bound it. */
export function boundSockets(paths: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const p of paths) {
    try {
      m.set(p, statSync(p).ino);
    } catch {
      // not bound (optional server)
    }
  }
  return m;
}

/**
 * Runs `close` (which closes the servers bound at `bound`), keeping the socket files that another
 * process has bound at those paths since: each is hard-linked aside first and renamed back after.
 */
export async function closeKeepingOthers(bound: Map<string, number>, close: () => Promise<void> | void): Promise<string[]> {
  const kept: [string, string][] = [];
  for (const [path, ino] of bound) {
    try {
      if (statSync(path).ino === ino) continue;
    } catch {
      continue; // nobody there
    }
    const aside = `${path}.keep-${process.pid}`;
    rmSync(aside, { force: true });
    linkSync(path, aside);
    kept.push([aside, path]);
  }
  await close();
  // libuv unlinks when the handles close, after close() has returned: give it a turn.
  await new Promise((r) => setTimeout(r, 50));
  for (const [aside, path] of kept) renameSync(aside, path);
  return kept.map(([, p]) => p);
}

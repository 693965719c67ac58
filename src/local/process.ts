// Waiting for, stopping and collecting the output of processes started in pods.

import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ExecResult {
  /** Exit status, or null when a signal ended the process (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

// Long enough for a server to close its listeners on SIGTERM, short enough for test teardown.
const GRACE_MS = 1000;

function running(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

function exited(child: ChildProcess): Promise<void> {
  if (!running(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** SIGTERM, then SIGKILL to whatever is left after a grace period; each by its own PID. */
export async function stopChildren(children: readonly ChildProcess[]): Promise<void> {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    const live = children.filter(running);
    if (live.length === 0) return;
    for (const child of live) child.kill(signal);
    await Promise.race([Promise.all(live.map(exited)), sleep(GRACE_MS)]);
  }
}

/** Feeds `input` to a child spawned with piped stdio and collects its output until it closes. */
export function collect(
  child: ChildProcess,
  opts: { input?: string; timeoutMs?: number },
): Promise<ExecResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
  });
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  child.stdin?.on('error', () => {}); // EPIPE when the command ignores its input
  child.stdin?.end(opts.input ?? '');
  const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

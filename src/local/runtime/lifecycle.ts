// Stopping a container as kubelet does (pkg/kubelet/kuberuntime killContainer): the preStop hook
// first (exec, httpGet or sleep), within the grace period; then SIGTERM; then SIGKILL when the
// rest of the grace period is gone. The hook's time counts against the period, and the signal
// always gets at least MIN_TERM_MS (kubelet's minimumGracePeriodInSeconds, 2 s).
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as k8s from '@kubernetes/client-node';
import type { ContainerEvent } from './containers.ts';
import { type ProbeTarget, runProbe } from './probes.ts';

const MIN_TERM_MS = 2000;

export interface StopTarget {
  /** Runs a command in the container (exec hook); undefined when it cannot. */
  exec(command: string[]): ChildProcess | undefined;
  probe: ProbeTarget;
  record: ContainerEvent;
}

/** Waits for `child` to exit (its code; -1 when it could not start), killing it after `ms`. */
export function waitExit(child: ChildProcess, ms: number): Promise<number> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.stdout?.resume();
    child.stderr?.resume();
    child.once('error', () => resolve(-1));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal ? 137 : -1));
    });
  });
}

/**
 * Runs the container's preStop hook, giving up when `budgetMs` is spent; records
 * FailedPreStopHook (kubelet's reason) when it fails. Resolves when the hook is done.
 */
export async function runPreStop(c: k8s.V1Container, target: StopTarget, budgetMs: number): Promise<void> {
  const hook = c.lifecycle?.preStop;
  if (!hook || budgetMs <= 0) return;
  const failed = (why: string) => target.record('Warning', 'FailedPreStopHook', `PreStopHook failed: ${why}`);
  if (hook.exec?.command?.length) {
    const child = target.exec(hook.exec.command);
    if (!child) return failed('the container is not running');
    const code = await waitExit(child, budgetMs);
    if (code !== 0) failed(`command '${hook.exec.command.join(' ')}' exited with ${code}`);
  } else if (hook.httpGet) {
    const seconds = Math.max(1, Math.ceil(budgetMs / 1000));
    const r = await runProbe({ httpGet: hook.httpGet, timeoutSeconds: seconds }, target.probe);
    if (!r.ok) failed(`HTTP lifecycle hook (${hook.httpGet.path ?? '/'}) for Container "${c.name}" failed - error: ${r.message ?? ''}`);
  } else if (hook.sleep) {
    await sleep(Math.min(hook.sleep.seconds * 1000, budgetMs));
  }
}

/** How long SIGTERM gets once the hook took `hookMs` of a `graceMs` period. */
export function termGraceMs(graceMs: number, hookMs: number): number {
  if (graceMs <= 0) return 0;
  return Math.max(graceMs - hookMs, MIN_TERM_MS);
}

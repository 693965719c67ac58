// One container of a local-cluster pod: its command run as a process in the pod's netns and
// cgroup, its output appended to a log file, restarted per the pod's restartPolicy with a capped
// exponential backoff (kubelet: 10 s doubling to 5 min; ours is shorter, for a dev loop).
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import { logger } from '../../common/log.ts';
import { LogTimes } from './logtimes.ts';

const log = logger('kubelet');

const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
// A container that ran this long before exiting starts over at the shortest backoff.
const BACKOFF_RESET_MS = 60_000;
const STOP_GRACE_MS = 5000;

export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';

export interface ContainerState {
  name: string;
  state:
    | { waiting: { reason: string; message?: string } }
    | { running: { startedAt: string } }
    | { terminated: { exitCode: number; signal?: number; reason: string; message?: string; startedAt: string; finishedAt: string } };
  lastState: ContainerState['state'] | Record<string, never>;
  ready: boolean;
  restartCount: number;
  started: boolean;
}

/** What the kubelet records as an Event about this container (reason and message as kubelet's). */
export type ContainerEvent = (type: 'Normal' | 'Warning', reason: string, message: string) => void;

/** Starts the container's process; the runtime decides where (pod netns or node netns). */
export type Launch = (cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; stdio: StdioOptions }) => ChildProcess;

/** Where in the log file one instance of the container wrote (end undefined: still writing). */
export interface LogRange {
  start: number;
  end: number | undefined;
}

export class Container {
  readonly name: string;
  private readonly command: string[];
  private readonly env: NodeJS.ProcessEnv;
  private readonly cwd: string | undefined;
  readonly logPath: string;
  /** The current (or last) instance's part of the log, and the one before it (kubectl logs --previous). */
  logRange: LogRange | undefined;
  previousLog: LogRange | undefined;
  /** When each part of the log file was written (kubectl logs --timestamps, --since). */
  readonly logTimes = new LogTimes();
  private readonly policy: RestartPolicy;
  private readonly launch: Launch;
  private readonly onChange: () => void;
  private readonly onEvent: ContainerEvent;
  private readonly pod: string;
  private readonly runtimeError: ((exitCode: number, lastLine: string) => string | undefined) | undefined;
  private readonly oomKills: (() => number) | undefined;
  private oomAtStart = 0;
  private child: ChildProcess | undefined;
  private timer: NodeJS.Timeout | undefined;
  private backoff = BACKOFF_START_MS;
  private stopping = false;
  private startedAt = '';
  /** A pending look for a missing image (images.ts); cleared by stop(). */
  retryTimer: NodeJS.Timeout | undefined;
  st: ContainerState;

  constructor(opts: {
    name: string;
    command: string[];
    env: NodeJS.ProcessEnv;
    cwd?: string;
    logPath: string;
    policy: RestartPolicy;
    launch: Launch;
    onChange: () => void;
    onEvent?: ContainerEvent;
    /** The pod as kubelet names it in messages: name_namespace(uid). */
    pod?: string;
    /** The launcher's own failure (the runtime's, not the container's): given the exit code and
     * the last line it wrote, the runtime's error, else undefined (oci.ts runtimeError). */
    runtimeError?: (exitCode: number, lastLine: string) => string | undefined;
    /** The kernel's OOM kills so far in the container's cgroup (memory.events oom_kill). */
    oomKills?: () => number;
  }) {
    this.name = opts.name;
    this.command = opts.command;
    this.env = opts.env;
    this.cwd = opts.cwd;
    this.logPath = opts.logPath;
    this.policy = opts.policy;
    this.launch = opts.launch;
    this.onChange = opts.onChange;
    this.onEvent = opts.onEvent ?? (() => {});
    this.pod = opts.pod ?? '';
    this.runtimeError = opts.runtimeError;
    this.oomKills = opts.oomKills;
    this.st = { name: opts.name, state: { waiting: { reason: 'ContainerCreating' } }, lastState: {}, ready: false, restartCount: 0, started: false };
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** When the current instance started (ms since the epoch); undefined before the first start. */
  get startedAtMs(): number | undefined {
    return this.startedAt ? Date.parse(this.startedAt) : undefined;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    if (this.stopping || this.child) return;
    const [cmd, ...args] = this.command;
    if (!cmd) return;
    const logFd = openSync(this.logPath, 'a');
    const at = fstatSync(logFd).size;
    if (this.logRange) this.previousLog = { start: this.logRange.start, end: at };
    this.logRange = { start: at, end: undefined };
    this.logTimes.note(at);
    this.logTimes.watch(this.logPath);
    let child: ChildProcess;
    try {
      child = this.launch(cmd, args, { env: this.env, ...(this.cwd ? { cwd: this.cwd } : {}), stdio: ['ignore', logFd, logFd] });
    } finally {
      closeSync(logFd); // the child holds its own copy
    }
    this.child = child;
    this.onEvent('Normal', 'Created', `Created container ${this.name}`);
    this.onEvent('Normal', 'Started', `Started container ${this.name}`);
    this.startedAt = new Date().toISOString();
    this.oomAtStart = this.oomKills?.() ?? 0;
    this.st = { ...this.st, state: { running: { startedAt: this.startedAt } }, started: true };
    const began = Date.now();
    child.once('error', (err) => {
      log.warn({ container: this.name, err: err.message }, 'container failed to start');
    });
    child.once('exit', (code, signal) => {
      this.child = undefined;
      this.logTimes.note(sizeOf(this.logPath));
      const exitCode = code ?? 128 + signalNumber(signal);
      // The runtime could not start the process (runc refused the spec): kubelet reports that as
      // StartError with the runtime's message, and an Event, rather than as the app's exit.
      const startError = code !== null && this.runtimeError ? this.runtimeError(exitCode, lastLine(this.logPath, this.logRange?.start ?? 0)) : undefined;
      if (startError) this.onEvent('Warning', 'Failed', `Error: ${startError}`);
      // Killed by the kernel's OOM killer (SIGKILL, or 137 through podman): kubelet's OOMKilled.
      const oom = !startError && (signal === 'SIGKILL' || exitCode === 137) && this.oomKills !== undefined && this.oomKills() > this.oomAtStart;
      const oomMessage = `the kernel killed container ${this.name} for going over its memory limit (memory.events oom_kill)`;
      if (oom) this.onEvent('Warning', 'OOMKilled', oomMessage);
      const terminated = {
        terminated: {
          exitCode,
          reason: startError ? 'StartError' : oom ? 'OOMKilled' : exitCode === 0 ? 'Completed' : signal ? 'Killed' : 'Error',
          ...(startError ? { message: startError } : oom ? { message: oomMessage } : {}),
          startedAt: this.startedAt,
          finishedAt: new Date().toISOString(),
        },
      };
      if (this.stopping) {
        this.st = { ...this.st, state: terminated, ready: false };
        this.onChange();
        return;
      }
      const restart = this.policy === 'Always' || (this.policy === 'OnFailure' && exitCode !== 0);
      if (Date.now() - began > BACKOFF_RESET_MS) this.backoff = BACKOFF_START_MS;
      if (restart) {
        this.st = {
          ...this.st,
          lastState: terminated,
          state: { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${this.backoff / 1000}s restarting failed container=${this.name}` } },
          ready: false,
        };
        this.onEvent('Warning', 'BackOff', `Back-off restarting failed container ${this.name} in pod ${this.pod}`);
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.st = { ...this.st, restartCount: this.st.restartCount + 1 };
          this.start();
          this.onChange();
        }, this.backoff);
        this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
      } else {
        this.st = { ...this.st, state: terminated, ready: false };
      }
      this.onChange();
    });
  }

  /**
   * Runs `command` beside the container's process, as `kubectl exec` does: same namespaces and
   * cgroup (the launcher's), same environment and working directory; stdio is piped.
   */
  exec(command: string[]): ChildProcess {
    const [cmd, ...args] = command;
    if (!cmd) throw new TypeError('exec needs a command');
    return this.launch(cmd, args, { env: this.env, ...(this.cwd ? { cwd: this.cwd } : {}), stdio: 'pipe' });
  }

  /** Marks the container as unable to start (e.g. no command) without running anything. */
  fail(reason: string, message: string): void {
    this.st = { ...this.st, state: { waiting: { reason, message } } };
  }

  /** No more restarts (the pod is terminating); the process, if any, keeps running. */
  beginStop(): void {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  /**
   * Stops this instance for a failed liveness or startup probe — SIGTERM, SIGKILL after
   * `graceMs` — and lets restartPolicy decide what follows, as for any exit.
   */
  restartKill(graceMs: number, opts: { term?: boolean } = {}): void {
    const child = this.child;
    if (!child) return;
    if (opts.term !== false) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => clearTimeout(timer));
  }

  /** SIGKILL now (a shortened grace period, or a force delete, during a stop). */
  kill(): void {
    this.child?.kill('SIGKILL');
  }

  /**
   * SIGTERM, then SIGKILL after the grace period; resolves when the process is gone. `term: false`
   * when something else delivers the SIGTERM (`podman stop` for an image container: one signal,
   * as kubelet sends one — a second would kill a process whose handler is still at work).
   */
  async stop(graceMs = STOP_GRACE_MS, opts: { term?: boolean } = {}): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const child = this.child;
    if (!child) return this.logTimes.close();
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    this.onEvent('Normal', 'Killing', `Stopping container ${this.name}`);
    if (opts.term !== false) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
    this.logTimes.note(sizeOf(this.logPath));
    this.logTimes.close();
  }
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? (constants.signals[signal] ?? 0) : 0;
}

/** The last non-empty line written to `path` since `from` (at most the last 4 KiB of it). */
function lastLine(path: string, from: number): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const start = Math.max(from, size - 4096);
    const buf = Buffer.alloc(Math.max(0, size - start));
    readSync(fd, buf, 0, buf.length, start);
    return buf.toString('utf8').split('\n').map((l) => l.trim()).filter(Boolean).at(-1) ?? '';
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** oom_kill from a cgroup v2 directory's memory.events (0 when unreadable). */
export function cgroupOomKills(cgroupDir: string): number {
  try {
    const m = /^oom_kill (\d+)$/m.exec(readFileSync(`${cgroupDir}/memory.events`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

// The kubelets' side of the API server's streaming subresources (apiserver/streaming.ts): a
// container's log read from the file the kubelet writes, and exec beside a running container.
// On a real node this is kubelet's streaming server; here the API server calls it in-process.
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, type ExecRequest, type ExecSession, type ForwardConnection, type KubeObject, type LogRequest, type PodStreams, type StartExec, type TerminalSize } from '../apiserver/index.ts';
import type { Container, LogRange } from './containers.ts';
import { rfc3339Nano } from './logtimes.ts';
import type { Kubelet } from './kubelet.ts';

const FOLLOW_POLL_MS = 100;
const READ_CHUNK = 64 * 1024;
// util-linux, by absolute path: npm puts node_modules/.bin first on PATH (ARCHITECTURE.md).
const SCRIPT = '/usr/bin/script';
const STTY = '/usr/bin/stty';

/**
 * How a runtime runs a command in a running container. The host-command runtime does it with
 * Container.exec (a process in the pod's netns and cgroup, with the container's env and cwd); an
 * OCI runtime implements the same with `runc exec`.
 */
export interface ExecTarget {
  exec(command: string[]): ChildProcess;
  /** With a terminal the runtime makes itself (podman exec -t); undefined: script(1) makes one. */
  execTty?(command: string[]): ChildProcess | undefined;
}

const badRequest = (message: string) => new ApiError(400, 'BadRequest', message);

export class KubeletStreams implements PodStreams {
  private readonly kubelets: () => readonly Kubelet[];

  constructor(kubelets: () => readonly Kubelet[]) {
    this.kubelets = kubelets;
  }

  private kubelet(pod: KubeObject): Kubelet | undefined {
    const node = (pod.spec as { nodeName?: string } | undefined)?.nodeName;
    return this.kubelets().find((k) => k.node.name === node);
  }

  /** OCI containers exec through the kubelet (podman exec); host commands through their launcher. */
  private target(pod: KubeObject, c: Container, stdin: boolean): ExecTarget {
    const k = this.kubelet(pod)!;
    const { namespace = '', name = '' } = pod.metadata;
    // Kubelet.exec is undefined for a host-command container.
    const oci = (command: string[], tty: boolean) => k.exec(namespace, name, c.name, command, { tty, stdin: stdin || tty });
    return { exec: (command) => oci(command, false) ?? c.exec(command), execTty: (command) => oci(command, true) };
  }

  private find(pod: KubeObject, name: string): Container {
    const node = (pod.spec as { nodeName?: string } | undefined)?.nodeName;
    const container = this.kubelet(pod)?.container(pod.metadata.uid ?? '', name);
    if (!container) {
      const status = (pod.status as { containerStatuses?: { name: string; state?: { waiting?: { reason?: string } } }[] } | undefined)?.containerStatuses?.find((s) => s.name === name);
      const reason = status?.state?.waiting?.reason ?? (node ? 'ContainerCreating' : 'Pending (not scheduled)');
      throw badRequest(`container "${name}" in pod "${pod.metadata.name}" is waiting to start: ${reason}`);
    }
    return container;
  }

  async *logs(pod: KubeObject, req: LogRequest, signal: AbortSignal): AsyncIterable<Buffer> {
    const c = this.find(pod, req.container);
    const range: LogRange | undefined = req.previous ? c.previousLog : c.logRange;
    if (req.previous && !range) throw badRequest(`previous terminated container "${req.container}" in pod "${pod.metadata.name}" not found`);
    if (!range) throw badRequest(`container "${req.container}" in pod "${pod.metadata.name}" is waiting to start: ${'waiting' in c.st.state ? c.st.state.waiting.reason : 'ContainerCreating'}`);
    const instance = range;
    let offset = range.start;
    let limit = req.limitBytes ?? Infinity;
    const end = () => instance.end ?? fileSize(c.logPath);
    if (req.tailLines !== undefined) offset = tailOffset(c.logPath, range.start, end(), req.tailLines);
    // With --timestamps or --since the output goes line by line, each line's time from LogTimes.
    const byLine = req.timestamps || req.sinceMs !== undefined;
    let partial = Buffer.alloc(0);
    const lines = (chunk: Buffer, chunkEnd: number, flush: boolean): Buffer => {
      const data = partial.length ? Buffer.concat([partial, chunk]) : chunk;
      const out: Buffer[] = [];
      let from = 0;
      const startOffset = chunkEnd - data.length;
      for (;;) {
        const nl = data.indexOf(0x0a, from);
        const stop = nl >= 0 ? nl + 1 : flush && from < data.length ? data.length : -1;
        if (stop < 0) break;
        const at = c.logTimes.timeOf(startOffset + stop);
        if (req.sinceMs === undefined || at >= req.sinceMs) {
          if (req.timestamps) out.push(Buffer.from(`${rfc3339Nano(at)} `));
          out.push(data.subarray(from, stop));
        }
        from = stop;
      }
      partial = Buffer.from(data.subarray(from));
      return Buffer.concat(out);
    };
    for (;;) {
      const stop = end();
      const current = c.logRange === instance && c.running;
      while (offset < stop && limit > 0) {
        let chunk = readAt(c.logPath, offset, Math.min(stop - offset, READ_CHUNK, byLine ? READ_CHUNK : limit));
        if (chunk.length === 0) break;
        offset += chunk.length;
        if (byLine) chunk = lines(chunk, offset, !current && offset >= stop).subarray(0, limit);
        limit -= chunk.length;
        if (chunk.length) yield chunk;
      }
      // Follow ends with the instance: when it exits, or when a newer one has started.
      if (!req.follow || req.previous || limit <= 0 || signal.aborted || (!current && offset >= end())) {
        if (byLine && partial.length && limit > 0) yield lines(Buffer.alloc(0), offset, true).subarray(0, limit);
        return;
      }
      await sleep(FOLLOW_POLL_MS, undefined, { signal }).catch(() => {});
    }
  }

  /** Port-forward as kubelet does it, in the pod's netns: a small connector run beside its containers. */
  portForward(pod: KubeObject): (port: number) => ForwardConnection {
    const names = ((pod.spec as { containers?: { name: string }[] } | undefined)?.containers ?? []).map((c) => c.name);
    const running = names.map((n) => this.find(pod, n)).find((c) => c.running);
    const kubelet = this.kubelet(pod);
    if (!running || !kubelet) throw badRequest(`unable to forward ports: no container of pod ${pod.metadata.name} is running`);
    return (port) => {
      const child = kubelet.spawnInPod(pod.metadata.uid ?? '', process.execPath, ['-e', CONNECTOR, String(port)]);
      if (!child) throw badRequest(`pod ${pod.metadata.name} is no longer on node ${kubelet.node.name}`);
      let why = '';
      child.stderr?.on('data', (d: Buffer) => (why += d.toString()));
      const failed = new Promise<string | undefined>((resolve) => {
        child.once('error', (e) => resolve(e.message));
        child.once('close', (code) => resolve(code ? why.trim() || `exit code ${code}` : undefined));
      });
      return { input: child.stdin!, output: child.stdout!, failed, close: () => child.kill() };
    };
  }

  exec(pod: KubeObject, req: ExecRequest): StartExec {
    const c = this.find(pod, req.container);
    if (!c.running) throw badRequest(`container ${req.container} is not running in pod ${pod.metadata.name}`);
    if (req.command.length === 0) return this.attach(pod, c, req);
    const target = this.target(pod, c, req.stdin);
    return (size) => startSession(target, req.command, req.tty ? (size ?? null) : undefined, req.stdin);
  }

  /**
   * kubectl attach: the container's output from now on, until it exits (its stdout and stderr
   * share the log file, so both arrive on stdout). Containers run with no stdin or terminal of
   * their own, so -i and -t are refused with the reason.
   */
  private attach(pod: KubeObject, c: Container, req: ExecRequest): StartExec {
    if (req.stdin || req.tty) throw badRequest(`attach -i/-t is not supported by the local kubelet: container ${req.container} runs without stdin or a terminal (spec.containers[].stdin/tty are not honoured); attach without -i, or use kubectl exec -it ${pod.metadata.name} -- sh`);
    return () => {
      const abort = new AbortController();
      const stdout = Readable.from(this.logs(pod, { container: req.container, follow: true, previous: false, tailLines: 0, limitBytes: undefined, timestamps: false, sinceMs: undefined }, abort.signal));
      const exited = new Promise<number>((resolve) => {
        stdout.once('end', () => resolve('terminated' in c.st.state ? c.st.state.terminated.exitCode : 0));
        stdout.once('error', () => resolve(1));
      });
      return { stdin: undefined, stdout, stderr: undefined, exited, resize: () => {}, kill: () => abort.abort() };
    };
  }
}

// Connects to 127.0.0.1:<argv[1]> and pipes stdin/stdout to it; the failure goes to stderr.
const CONNECTOR = `const s = require('node:net').connect(Number(process.argv[1]), '127.0.0.1');
process.stdin.pipe(s); s.pipe(process.stdout);
s.on('error', (e) => { process.stderr.write(e.message); process.exit(1); });`;

/**
 * A session over a child process. With a tty (`tty` not undefined; null when the size is not
 * known) the command runs under script(1), which gives it a pseudo-terminal; the first size is set
 * inside that terminal before the command starts, later ones with stty -F on it.
 */
function startSession(target: ExecTarget, command: string[], tty: TerminalSize | null | undefined, stdin: boolean): ExecSession {
  const quoted = command.map(shellQuote).join(' ');
  const sized = tty ? `stty rows ${tty.height} cols ${tty.width} 2>/dev/null; exec ${quoted}` : quoted;
  const child = tty === undefined ? target.exec(command) : (target.execTty?.(command) ?? target.exec([SCRIPT, '-q', '-e', '-f', '-c', sized, '/dev/null']));
  if (!stdin) child.stdin?.end();
  const exited = new Promise<number>((resolve) => {
    child.once('error', () => resolve(126));
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 + (signalNumbers[signal] ?? 0) : 1)));
  });
  return {
    stdin: stdin ? child.stdin ?? undefined : undefined,
    stdout: child.stdout!,
    stderr: tty !== undefined ? (child.stderr?.resume(), undefined) : child.stderr!,
    exited,
    resize(width, height) {
      if (tty === undefined || !child.pid) return;
      const pts = terminalOf(child.pid);
      if (pts) execFile(STTY, ['-F', pts, 'rows', String(height), 'cols', String(width)], () => {});
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The pseudo-terminal script(1) opened for its child: fd 0 of that child. */
function terminalOf(scriptPid: number): string | undefined {
  try {
    for (const task of readdirSync(`/proc/${scriptPid}/task`)) {
      for (const pid of readFileSync(`/proc/${scriptPid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
        const fd0 = readlinkSync(`/proc/${pid}/fd/0`);
        if (fd0.startsWith('/dev/pts/')) return fd0;
      }
    }
  } catch {
    // the process is gone
  }
  return undefined;
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const n = readSync(fd, buf, 0, length, offset);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** The offset of the last `lines` lines in [start, end) (a final line without newline counts). */
function tailOffset(path: string, start: number, end: number, lines: number): number {
  if (lines === 0) return end;
  let pos = end;
  let seen = 0;
  let first = true;
  while (pos > start) {
    const from = Math.max(start, pos - READ_CHUNK);
    const buf = readAt(path, from, pos - from);
    for (let i = buf.length - 1; i >= 0; i--) {
      if (buf[i] !== 0x0a) {
        first = false;
        continue;
      }
      if (first) {
        first = false; // the newline ending the last line
        continue;
      }
      if (++seen === lines) return from + i + 1;
    }
    pos = from;
  }
  return start;
}

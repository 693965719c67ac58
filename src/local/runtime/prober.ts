// When a container is probed and what the results do, as kubelet's prober (pkg/kubelet/prober):
// - startupProbe: until it succeeds the container is not `started`, and liveness and readiness
//   are not probed; failureThreshold failures in a row kill the container (restartPolicy decides
//   whether it runs again).
// - livenessProbe: failureThreshold failures in a row kill the container, with an Unhealthy and
//   a Killing Event ("failed liveness probe, will be restarted").
// - readinessProbe: Ready after successThreshold successes, not Ready after failureThreshold
//   failures; Unhealthy Events on failures. Without one a started container is Ready.
// Defaults are the API's: periodSeconds 10, timeoutSeconds 1, successThreshold 1,
// failureThreshold 3, initialDelaySeconds 0 (counted from the container's start). A container
// that restarts starts over: not started, not Ready, counters cleared.
import type * as k8s from '@kubernetes/client-node';
import type { Container, ContainerEvent } from './containers.ts';
import { type ProbeTarget, runProbe } from './probes.ts';

// How often a probe looks whether its container (re)started while it waits for it.
const IDLE_MS = 500;

type Kind = 'startup' | 'liveness' | 'readiness';
const TITLE: Record<Kind, string> = { startup: 'Startup', liveness: 'Liveness', readiness: 'Readiness' };

export interface ProberHost {
  target: ProbeTarget;
  record: ContainerEvent;
  /** Kills the container for a failed liveness or startup probe (it restarts per restartPolicy). */
  kill(why: string): void;
  /** Readiness or started changed: write the pod's status. */
  changed(): void;
}

export class ContainerProber {
  private readonly spec: k8s.V1Container;
  private readonly container: Container;
  private readonly host: ProberHost;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly counts = { startup: { ok: 0, bad: 0 }, liveness: { ok: 0, bad: 0 }, readiness: { ok: 0, bad: 0 } };
  private instance: number | undefined; // the container start the state below belongs to
  private stopped = false;
  private startedOk = false;
  private readyOk = false;

  constructor(spec: k8s.V1Container, container: Container, host: ProberHost) {
    this.spec = spec;
    this.container = container;
    this.host = host;
  }

  /** Whether the container counts as started (its startup probe, if any, has succeeded). */
  get started(): boolean {
    this.sync();
    return this.container.running && (!this.spec.startupProbe || this.startedOk);
  }

  /** Whether the container is Ready: started, and its readiness probe (if any) holds. */
  get ready(): boolean {
    this.sync();
    return this.started && (!this.spec.readinessProbe || this.readyOk);
  }

  start(): void {
    for (const kind of ['startup', 'liveness', 'readiness'] as const) {
      const probe = this.probeOf(kind);
      if (probe) this.schedule(kind, probe, 0);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.splice(0)) clearTimeout(t);
  }

  private probeOf(kind: Kind): k8s.V1Probe | undefined {
    return kind === 'startup' ? this.spec.startupProbe : kind === 'liveness' ? this.spec.livenessProbe : this.spec.readinessProbe;
  }

  /** A new container instance: state starts over. */
  private sync(): void {
    const at = this.container.startedAtMs;
    if (at === this.instance) return;
    this.instance = at;
    this.startedOk = false;
    this.readyOk = false;
    for (const c of Object.values(this.counts)) c.ok = c.bad = 0;
  }

  private schedule(kind: Kind, probe: k8s.V1Probe, ms: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers.splice(this.timers.indexOf(t), 1);
      void this.tick(kind, probe);
    }, ms);
    this.timers.push(t);
  }

  private async tick(kind: Kind, probe: k8s.V1Probe): Promise<void> {
    const period = (probe.periodSeconds ?? 10) * 1000;
    this.sync();
    const c = this.container;
    const since = Date.now() - (c.startedAtMs ?? Date.now());
    const delay = (probe.initialDelaySeconds ?? 0) * 1000;
    const gated = kind === 'startup' ? this.startedOk : Boolean(this.spec.startupProbe) && !this.startedOk;
    if (!c.running || gated) return this.schedule(kind, probe, IDLE_MS);
    if (since < delay) return this.schedule(kind, probe, delay - since);
    const instance = this.instance;
    const result = await runProbe(probe, this.host.target);
    if (this.stopped) return;
    this.sync();
    if (instance !== this.instance || !c.running) return this.schedule(kind, probe, IDLE_MS);
    const n = this.counts[kind];
    if (result.ok) {
      n.ok++;
      n.bad = 0;
    } else {
      n.bad++;
      n.ok = 0;
      this.host.record('Warning', 'Unhealthy', `${TITLE[kind]} probe failed: ${result.message ?? ''}`);
    }
    const failed = n.bad >= (probe.failureThreshold ?? 3);
    if (kind === 'startup') {
      if (result.ok && !this.startedOk) {
        this.startedOk = true;
        this.host.changed();
      } else if (failed) {
        n.bad = 0;
        this.host.record('Normal', 'Killing', `Container ${c.name} failed startup probe, will be restarted`);
        this.host.kill('startup probe');
      }
    } else if (kind === 'liveness') {
      if (failed) {
        n.bad = 0;
        this.host.record('Normal', 'Killing', `Container ${c.name} failed liveness probe, will be restarted`);
        this.host.kill('liveness probe');
      }
    } else {
      const wasReady = this.readyOk;
      if (result.ok && n.ok >= (probe.successThreshold ?? 1)) this.readyOk = true;
      if (failed) this.readyOk = false;
      if (wasReady !== this.readyOk) this.host.changed();
    }
    // A killed container's next instance starts at the IDLE look; others at the period.
    this.schedule(kind, probe, period);
  }
}

// The drain of a ztunnel that a new one replaced (ARCHITECTURE.md "ztunnel handover"): it stops
// accepting — the new process took the in-pod sockets over first — and serves what it has
// established until the last connection ends, or until the deadline (MESH_DRAIN_TIMEOUT; 0 waits
// for ever), when it resets what is left and says how many. Visible while it lasts: admin
// (/config_dump's `drain`), metrics, readiness (not ready) and `meshctl status`.
import { Gauge, type Registry } from '../common/prom.ts';
import { logger } from '../common/log.ts';
import type { ConnectionManager } from './connection-manager.ts';

const log = logger('ztunnel');

/** What admin and meshctl show of a drain. */
export interface DrainStatus {
  phase: 'serving' | 'draining' | 'drained';
  /** Connections accepted and not yet ended. */
  connections: number;
  /** ISO time the drain began. */
  since?: string;
  /** ISO time it resets what is left; absent when unbounded. */
  deadline?: string;
  /** Connections reset at the deadline. */
  reset?: number;
}

export interface DrainOutcome {
  /** Connections reset at the deadline (0 when the last one ended before it). */
  reset: number;
  /** How long the drain lasted, ms. */
  ms: number;
}

export class Drain {
  private readonly connections: ConnectionManager;
  private started: { at: number; deadline: number | undefined } | undefined;
  private result: DrainOutcome | undefined;
  private running: Promise<DrainOutcome> | undefined;

  constructor(connections: ConnectionManager, registry: Registry) {
    this.connections = connections;
    const draining = () => (this.started && !this.result ? 1 : 0);
    const deadline = () => (this.started?.deadline ? this.started.deadline / 1000 : 0);
    new Gauge({
      name: 'mesh_ztunnel_connections_open',
      help: 'Connections this ztunnel accepted that have not ended (while draining: the connections left)',
      registers: [registry],
      collect(this: Gauge) {
        this.set(connections.open);
      },
    });
    new Gauge({
      name: 'mesh_ztunnel_draining',
      help: '1 while this ztunnel drains after a newer one took over its pods (then it exits)',
      registers: [registry],
      collect(this: Gauge) {
        this.set(draining());
      },
    });
    new Gauge({
      name: 'mesh_ztunnel_drain_deadline_seconds',
      help: 'Unix time at which a draining ztunnel resets the connections left (0: not draining, or no deadline)',
      registers: [registry],
      collect(this: Gauge) {
        this.set(deadline());
      },
    });
  }

  get draining(): boolean {
    return this.started !== undefined;
  }

  status(): DrainStatus {
    const s = this.started;
    if (!s) return { phase: 'serving', connections: this.connections.open };
    return {
      phase: this.result ? 'drained' : 'draining',
      connections: this.connections.open,
      since: new Date(s.at).toISOString(),
      ...(s.deadline ? { deadline: new Date(s.deadline).toISOString() } : {}),
      ...(this.result ? { reset: this.result.reset } : {}),
    };
  }

  /**
   * Runs the drain once (later calls get the same outcome): `stopAccepting` has already handed
   * new connections over; this waits for the held ones, up to `timeoutMs` (0: no limit).
   */
  run(timeoutMs: number): Promise<DrainOutcome> {
    this.running ??= this.wait(timeoutMs);
    return this.running;
  }

  private async wait(timeoutMs: number): Promise<DrainOutcome> {
    const at = Date.now();
    this.started = { at, deadline: timeoutMs > 0 ? at + timeoutMs : undefined };
    log.info({ connections: this.connections.open, deadline: this.started.deadline ? new Date(this.started.deadline).toISOString() : 'none' }, 'draining: new connections go to the new ztunnel; serving the established ones until they end');
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      // setTimeout holds at most 2^31-1 ms (24.8 days); a longer deadline re-arms.
      const arm = () => {
        const left = this.started!.deadline! - Date.now();
        if (left <= 0) return resolve('deadline');
        timer = setTimeout(arm, Math.min(left, 2 ** 31 - 1));
      };
      if (this.started!.deadline) arm();
    });
    const outcome = await Promise.race([this.connections.whenIdle().then(() => 'idle' as const), deadline]);
    clearTimeout(timer);
    let reset = 0;
    if (outcome === 'deadline') {
      reset = this.connections.resetAll();
      log.warn({ reset, timeoutMs }, `drain deadline passed: reset ${reset} connection${reset === 1 ? '' : 's'} still open`);
    } else {
      log.info({ ms: Date.now() - at }, 'drained: the last connection ended');
    }
    this.result = { reset, ms: Date.now() - at };
    return this.result;
  }
}

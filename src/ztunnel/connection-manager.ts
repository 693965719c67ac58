// ztunnel's connection manager (istio/ztunnel proxy/connection_manager): the connections that are
// open now (for /config_dump and `meshctl ztunnel-config connections`), their byte counts as they
// flow, and the inbound ones with the rule that admitted them — re-judged on every config change,
// and closed when the rule no longer allows them.
import type { SpliceCounter } from '../hbone/index.ts';
import { logger } from '../common/log.ts';
import type { TrackedConnection } from './telemetry/index.ts';

const log = logger('ztunnel');

export interface LiveConnection {
  readonly direction: string;
  readonly src: string;
  readonly dst: string;
  readonly pod: string;
  readonly since: string;
}

interface Guard {
  /** Why the connection may no longer stay open, or undefined. */
  recheck(): string | undefined;
  kill(reason: string): void;
}

export class ConnectionManager {
  /** Live connections with their start (ms); `since` is formatted only when listed. */
  private readonly live = new Map<Omit<LiveConnection, 'since'>, number>();
  private readonly guarded = new Set<Guard>();
  /** Every connection ztunnel accepted and has not seen end, from accept() on (before its
   * destination is even known): what a drain waits for. Each value resets its connection. */
  private readonly held = new Set<() => void>();
  private idle: (() => void)[] = [];

  /**
   * Holds a connection ztunnel accepted (an app's outbound or plaintext connection, a peer's
   * HBONE tunnel) until `ended` fires; `reset` ends it abruptly (drain deadline).
   */
  hold(ended: { on(ev: 'close', fn: () => void): unknown }, reset: () => void): void {
    this.held.add(reset);
    ended.on('close', () => {
      this.held.delete(reset);
      if (this.held.size === 0) for (const fn of this.idle.splice(0)) fn();
    });
  }

  /** Connections accepted and not yet ended. */
  get open(): number {
    return this.held.size;
  }

  /** Resolves when no accepted connection is left (at once if none is). */
  whenIdle(): Promise<void> {
    return this.held.size === 0 ? Promise.resolve() : new Promise((r) => this.idle.push(r));
  }

  /** Resets every connection still held; returns how many. */
  resetAll(): number {
    const n = this.held.size;
    for (const reset of [...this.held]) reset();
    return n;
  }

  /**
   * Lists the connection as live until the returned `done` closes its record (once). `count` is
   * what splice() tells of every chunk (a = the client's side): request bytes are
   * istio_tcp_received_bytes_total, response bytes istio_tcp_sent_bytes_total. Counting rides
   * on splice's own 'data' handler: a listener of our own per side read every chunk twice.
   */
  track(tracked: TrackedConnection, info: Omit<LiveConnection, 'since'>): { done: (error?: Error) => void; count: SpliceCounter } {
    const entry = info;
    this.live.set(entry, Date.now());
    let done = false;
    return {
      count: { aToB: (n) => tracked.addReceived(n), bToA: (n) => tracked.addSent(n) },
      done: (error?: Error) => {
        if (done) return;
        done = true;
        this.live.delete(entry);
        tracked.close(error ? { error } : {});
      },
    };
  }

  /** Keeps an established inbound connection under the rule that admitted it; returns the release. */
  guard(recheck: () => string | undefined, kill: (reason: string) => void): () => void {
    const g: Guard = { recheck, kill };
    this.guarded.add(g);
    return () => void this.guarded.delete(g);
  }

  /** Closes the guarded connections that the current config no longer allows. */
  recheck(): void {
    for (const g of this.guarded) {
      const deny = g.recheck();
      if (!deny) continue;
      this.guarded.delete(g);
      log.info({ reason: deny }, 'closing a live connection the policy no longer allows');
      g.kill(deny);
    }
  }

  list(): LiveConnection[] {
    return [...this.live].map(([c, since]) => ({ ...c, since: new Date(since).toISOString() }));
  }
}

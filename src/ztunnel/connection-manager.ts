// ztunnel's connection manager (istio/ztunnel proxy/connection_manager): the connections that are
// open now (for /config_dump and `meshctl ztunnel-config connections`), their byte counts as they
// flow, and the inbound ones with the rule that admitted them — re-judged on every config change,
// and closed when the rule no longer allows them.
import type net from 'node:net';
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
  private readonly live = new Set<LiveConnection>();
  private readonly guarded = new Set<Guard>();
  /** Every connection ztunnel accepted and has not seen end, from accept() on (before its
   * destination is even known): what a drain waits for. Each value resets its connection. */
  private readonly held = new Set<() => void>();
  private idle: (() => void)[] = [];

  /**
   * Holds a connection ztunnel accepted (an app's outbound or plaintext connection, a peer's
   * HBONE tunnel) until `ended` fires; `reset` ends it abruptly (drain deadline).
   */
  hold(ended: { once(ev: 'close', fn: () => void): unknown }, reset: () => void): void {
    this.held.add(reset);
    ended.once('close', () => {
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

  /** Counts bytes as they flow both ways; the returned function closes the record, once. */
  track(tracked: TrackedConnection, clientSide: net.Socket | NodeJS.ReadableStream, serverSide: NodeJS.ReadableStream, info: Omit<LiveConnection, 'since'>): (error?: Error) => void {
    const entry = { ...info, since: new Date().toISOString() };
    this.live.add(entry);
    clientSide.on('data', (b: Buffer) => tracked.addReceived(b.length));
    serverSide.on('data', (b: Buffer) => tracked.addSent(b.length));
    let done = false;
    return (error?: Error) => {
      if (done) return;
      done = true;
      this.live.delete(entry);
      tracked.close(error ? { error } : {});
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
    return [...this.live];
  }
}

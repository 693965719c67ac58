// The access log: one JSON line per completed connection with ztunnel's field names
// (istio/ztunnel src/proxy/metrics.rs, ConnectionResult::record: src.addr, src.workload,
// src.namespace, src.identity, dst.addr, dst.hbone_addr, dst.service, dst.workload,
// dst.namespace, dst.identity, direction, bytes_sent, bytes_recv, duration, error), at info
// when the connection ended cleanly and at error when it did not, message "connection complete".
// Fields ztunnel would leave empty are omitted. `duration` is ztunnel's "<n>ms" string;
// `duration_ms` adds the number for log pipelines that should not parse it.
//
// Its own pino instance (not a child of the component logger) so that it can go to its own
// destination and be turned off (level "silent") without touching the other logs; its logger is
// exposed so the admin /logging endpoint can change its level under the name "access".
import { LineBatch, LOG_BATCH } from '../../common/line-batch.ts';
import type { AccessLogEntry } from '../../telemetry/index.ts';
import { pino, type DestinationStream, type Level, type Logger } from 'pino';


export interface AccessLogOptions {
  /** Default: stdout, asynchronous (pino.destination with sync: false) — a write never blocks
   * the proxy's event loop — and batched: lines go out in ~8 KiB writes, or 250 ms after the
   * first when traffic is light (one write per line cost ~9% of ztunnel's CPU under connection
   * churn). A destination given here gets each line as it is made. */
  destination?: DestinationStream;
  /** Default "info"; "silent" turns the log off. */
  level?: Level | 'silent';
}

export class AccessLog {
  readonly logger: Logger;
  readonly #dest: DestinationStream;
  /** Lines not yet handed to the destination (the default one only). */
  readonly #batch: LineBatch | undefined;

  constructor(opts: AccessLogOptions = {}) {
    // The lines are gathered here and joined, not in SonicBoom's own buffer (minLength): its
    // write() measures the byte length of the whole buffered text on every line, which flattens
    // the growing string each time — ~50 µs a line by 8 KiB, 2.5% of ztunnel's CPU under
    // connection churn (issue 16).
    const dest = opts.destination ?? pino.destination({ dest: 1, sync: false });
    this.#dest = dest;
    this.#batch = opts.destination ? undefined : new LineBatch((text) => void dest.write(text), LOG_BATCH);
    this.logger = pino({ level: opts.level ?? 'info', base: { component: 'access' }, timestamp: pino.stdTimeFunctions.isoTime }, this.#dest);
  }

  /**
   * One line, as pino would write it for this logger (level, time, component, the fields, msg),
   * built here as one object and one JSON.stringify: through pino it was ~4% of ztunnel's CPU
   * under connection churn (issue 16). The level still comes from `logger`, which the admin
   * /logging endpoint changes.
   */
  write(e: AccessLogEntry): void {
    const level = e.error ? 'error' : 'info';
    if (!this.logger.isLevelEnabled(level)) return;
    // One object literal of one shape for every line (JSON.stringify leaves out the undefined
    // fields): cheaper to build and to serialize than fields added one by one.
    const rec = {
      level: e.error ? 50 : 30,
      time: new Date().toISOString(),
      component: 'access',
      'src.addr': e.src.addr,
      'src.workload': known(e.src.workload),
      'src.namespace': known(e.src.namespace),
      'src.identity': known(e.src.identity),
      'dst.addr': e.dst.addr,
      'dst.hbone_addr': known(e.dst.hboneAddr),
      'dst.service': known(e.dst.service),
      'dst.workload': known(e.dst.workload),
      'dst.namespace': known(e.dst.namespace),
      'dst.identity': known(e.dst.identity),
      direction: e.direction,
      bytes_sent: e.bytesSent,
      bytes_recv: e.bytesRecv,
      duration: `${Math.round(e.durationMs)}ms`,
      duration_ms: Math.round(e.durationMs),
      error: e.error || undefined,
      msg: 'connection complete',
    };
    const line = `${JSON.stringify(rec)}\n`;
    if (this.#batch) this.#batch.push(line);
    else this.#dest.write(line);
  }

  /** Writes out what is buffered (on drain, before exit). */
  flush(): Promise<void> {
    this.#batch?.flush();
    return new Promise((resolve) => {
      const d = this.#dest as DestinationStream & { flush?: (cb?: (err?: Error) => void) => void };
      if (typeof d.flush !== 'function') return resolve();
      try {
        d.flush(() => resolve());
      } catch {
        // SonicBoom throws when it is not ready yet; nothing was written then.
        resolve();
      }
    });
  }
}

/** A field ztunnel would leave out: empty, or "unknown". */
function known(v: string | undefined): string | undefined {
  return v && v !== 'unknown' ? v : undefined;
}

// Istio's L4 metrics (istio_tcp_*) on a registry of our own.
//
// Counting is ztunnel's design (src/proxy/metrics.rs, ConnectionResult): the series of a
// connection is looked up once when it opens and bytes are added to it as they flow, so a scrape
// in the middle of a long transfer sees the bytes so far. Here a series is a plain object with
// number fields, and prom-client reads them at scrape time (Counter `collect`): adding bytes costs
// one addition, not a label hash per chunk.
//
// Byte direction follows Istio's definitions, for both reporters: istio_tcp_received_bytes_total
// counts bytes of the request direction (client → server), istio_tcp_sent_bytes_total bytes of
// the response direction (server → client) ("sent during response", metrics.rs HELP text).
//
// Cardinality: label values come from workload and service names (Deployment names, not pod
// names), which are bounded by the cluster; still, past `maxSeries` distinct label sets, new
// ones fold into a series whose workload-level labels read "overflow" (namespaces, reporter,
// flags and security policy stay exact), counted by mesh_ztunnel_metric_series_overflow_total.
import { Counter, Gauge, Registry } from '../../common/prom.ts';
import { emptyLabels, LABEL_NAMES, OVERFLOW, overflowLabels, type Reporter, type ResponseFlag, seriesKey, type TrafficLabels } from '../../telemetry/labels.ts';

export { OVERFLOW };

/** Defaults with their reasons. */
export const METRICS_DEFAULTS = Object.freeze({
  /** 23 labels a series; 10k series is a few MB of scrape text, far past what one node's
   * workload pairs produce, low enough that a label bug cannot exhaust memory. */
  maxSeries: 10_000,
});

interface Series {
  readonly labels: TrafficLabels;
  opened: number;
  closed: number;
  failed: number;
  sent: number;
  received: number;
  /** Which families have seen the series (ztunnel creates a family's series on first use). */
  inOpened: boolean;
  inClosed: boolean;
  inFailed: boolean;
  inBytes: boolean;
}

/** One connection's handle: add bytes as they flow, close once. */
export interface ConnectionMetrics {
  readonly labels: Readonly<TrafficLabels>;
  /** Request-direction bytes (client → server) so far. */
  readonly received: number;
  /** Response-direction bytes (server → client) so far. */
  readonly sent: number;
  readonly isClosed: boolean;
  /** Bytes toward the client (response direction). */
  addSent(n: number): void;
  /** Bytes from the client (request direction). */
  addReceived(n: number): void;
  /**
   * Records the close, once (later calls are ignored). A flag other than "-" also counts the
   * connection in istio_tcp_connections_failed_total: pass "-" for a connection that was
   * established and then ended with an error (the access log carries the error), so the failed
   * counter means what its HELP says — failed to establish.
   */
  closed(flags?: ResponseFlag): void;
}

export interface TcpMetricsOptions {
  /** Defaults to a new Registry: ztunnel's metrics must not mix with a library's default ones. */
  registry?: Registry;
  maxSeries?: number;
}

export class TcpMetrics {
  readonly registry: Registry;
  readonly maxSeries: number;
  readonly #series = new Map<string, Series>();
  readonly #overflow: Counter;

  constructor(opts: TcpMetricsOptions = {}) {
    this.registry = opts.registry ?? new Registry();
    this.maxSeries = opts.maxSeries ?? METRICS_DEFAULTS.maxSeries;
    const series = this.#series;
    const family = (name: string, help: string, value: (s: Series) => number, present: (s: Series) => boolean): void => {
      new Counter({
        name,
        help,
        labelNames: LABEL_NAMES,
        registers: [this.registry],
        collect(this: Counter) {
          this.reset();
          for (const s of series.values()) if (present(s)) this.inc(s.labels, value(s));
        },
      });
    };
    // HELP texts are ztunnel's.
    family('istio_tcp_connections_opened_total', 'The total number of TCP connections opened', (s) => s.opened, (s) => s.inOpened);
    family('istio_tcp_connections_closed_total', 'The total number of TCP connections closed', (s) => s.closed, (s) => s.inClosed);
    family('istio_tcp_connections_failed_total', 'The total number of TCP connections that failed to establish (unstable)', (s) => s.failed, (s) => s.inFailed);
    family('istio_tcp_received_bytes_total', 'The size of total bytes received during request in case of a TCP connection', (s) => s.received, (s) => s.inBytes);
    family('istio_tcp_sent_bytes_total', 'The size of total bytes sent during response in case of a TCP connection', (s) => s.sent, (s) => s.inBytes);
    this.#overflow = new Counter({
      name: 'mesh_ztunnel_metric_series_overflow_total',
      help: `Label sets folded into an "${OVERFLOW}" series because the istio_tcp_* families reached their series limit`,
      registers: [this.registry],
    });
    new Gauge({
      name: 'mesh_ztunnel_metric_series',
      help: 'Distinct label sets held by the istio_tcp_* families',
      registers: [this.registry],
      collect(this: Gauge) {
        this.set(series.size);
      },
    });
  }

  /** Counts a connection as opened and returns its handle. Missing labels read "unknown". */
  connectionOpened(labels: Partial<TrafficLabels> & Pick<TrafficLabels, 'reporter'>): ConnectionMetrics {
    const full = emptyLabels(labels.reporter as Reporter);
    for (const n of LABEL_NAMES) {
      const v = labels[n];
      if (v) full[n] = v;
    }
    full.response_flags = '-';
    const open = this.#get(full);
    open.opened++;
    open.inOpened = true;
    open.inBytes = true;
    return new Handle(open, full, (l) => this.#get(l));
  }

  /** Text exposition, as /metrics serves it. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  #get(l: TrafficLabels): Series {
    let key = keyOf(l);
    let s = this.#series.get(key);
    if (s) return s;
    if (this.#series.size >= this.maxSeries) {
      this.#overflow.inc();
      const folded = overflowLabels(l);
      key = keyOf(folded);
      s = this.#series.get(key);
      if (s) return s;
      l = folded;
    }
    s = { labels: Object.freeze({ ...l }), opened: 0, closed: 0, failed: 0, sent: 0, received: 0, inOpened: false, inClosed: false, inFailed: false, inBytes: false };
    this.#series.set(key, s);
    return s;
  }
}

/** A class, not an object literal with getters and closures: a connection opens in ~1 µs. */
class Handle implements ConnectionMetrics {
  sent = 0;
  received = 0;
  isClosed = false;
  readonly labels: Readonly<TrafficLabels>;
  readonly #open: Series;
  readonly #full: TrafficLabels;
  readonly #get: (l: TrafficLabels) => Series;

  constructor(open: Series, full: TrafficLabels, get: (l: TrafficLabels) => Series) {
    this.labels = open.labels;
    this.#open = open;
    this.#full = full;
    this.#get = get;
  }

  addSent(n: number): void {
    if (!(n > 0)) return;
    this.sent += n;
    this.#open.sent += n;
  }

  addReceived(n: number): void {
    if (!(n > 0)) return;
    this.received += n;
    this.#open.received += n;
  }

  closed(flags: ResponseFlag = '-'): void {
    if (this.isClosed) return;
    this.isClosed = true;
    const s = flags === '-' ? this.#open : this.#get({ ...this.#full, response_flags: flags });
    s.closed++;
    s.inClosed = true;
    if (flags !== '-') {
      s.failed++;
      s.inFailed = true;
    }
  }
}

function keyOf(l: TrafficLabels): string {
  return seriesKey(l, LABEL_NAMES);
}

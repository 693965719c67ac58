// Request telemetry at the waypoint: Istio's request metrics with reporter="waypoint", one
// access-log line per request, and an L7 flow for `meshctl flows --protocol http`.
//
// Metrics are Istio's standard ones (istio.io "Istio Standard Metrics"; istio/proxy
// istio_stats.cc): istio_requests_total, istio_request_duration_milliseconds,
// istio_request_bytes, istio_response_bytes, with the label set of src/telemetry/labels.ts
// (requestLabels). Histograms use Envoy's default buckets, which Istio keeps for all three unless
// a pod asks otherwise (envoy_bootstrap.json sets histogram_bucket_settings only from the
// sidecar.istio.io/statsHistogramBuckets annotation; envoy stats.proto lists the defaults).
//
// Labels: the source is the verified peer identity (RequestInfo.source.principal) and the
// workload at the request's source address — only when that workload runs as that identity, so
// a forged address cannot borrow another workload's labels. The destination is the endpoint the
// request went to (by uid, else by address) and the Service it addressed.
//
// Counting is ztunnel's design (src/ztunnel/telemetry/metrics.ts): a series is a plain object
// found by one key per request, and prom-client reads the series at scrape time. prom-client's
// own observe() hashed and validated 25 labels per call, per family: ~20 µs of a request's
// budget, against ~2 µs this way. Past `maxSeries` label sets, new ones fold into an "overflow"
// series (overflowLabels), counted by mesh_waypoint_metric_series_overflow_total.
import { Counter, Histogram, type Registry } from 'prom-client';
import { parseSpiffeId, type SpiffeId } from '../identity/index.ts';
import { formatAddr, overflowLabels, REQUEST_LABEL_NAMES, requestLabels, seriesKey, type DerivedSource, type RequestLabels } from '../telemetry/index.ts';
import type { RequestTrace } from '../tracing/index.ts';
import type { Service, Workload } from '../xds/index.ts';
import type { L7ResponseFlag, RequestInfo } from './request.ts';

/** Envoy's default histogram buckets (config/metrics/v3/stats.proto, HistogramBucketSettings). */
export const ISTIO_BUCKETS: readonly number[] = Object.freeze([0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000]);

/** One request as the proxy finished it. */
export interface CompletedRequest {
  req: RequestInfo;
  /** The status sent to the client; 0 when none was (the client went away first). */
  status: number;
  /** grpc-status of a gRPC response (trailer or trailers-only header), '' if none. */
  grpcStatus: string;
  flags: L7ResponseFlag;
  durationMs: number;
  /** Request body bytes received from the client. */
  requestBytes: number;
  /** Response body bytes sent to the client. */
  responseBytes: number;
  /** The endpoint the (last) attempt went to; null when the request never left the waypoint. */
  destination: { service: string /* ns/hostname or '' */; workloadUid: string; ip: string; port: number } | null;
  /** The rule that routed it ("HTTPRoute/ns/name/0"), '' for the Service's default route. */
  route: string;
  /** The W3C traceparent sent upstream ('' if none). */
  traceparent: string;
  /** This hop's span, ended by record() with the request's labels. */
  trace?: RequestTrace;
  /** The client's port, when the proxy knows it (the HBONE `forwarded` header); 0 or absent: unknown. */
  sourcePort?: number;
  /** "namespace/name" of the authorization policy that allowed or denied it, if one decided. */
  policy?: string;
}

/** What the telemetry needs of the mesh: MeshState (src/state) fits. */
export interface TelemetryLookup {
  workloadByIp(ip: string): Workload | undefined;
  /** By uid (workloadName()). */
  readonly workloads: ReadonlyMap<string, Workload>;
  /** By "namespace/hostname" (serviceName()). */
  readonly services: ReadonlyMap<string, Service>;
}

export type L7Verdict = 'FORWARDED' | 'DROPPED';

export interface L7FlowEndpoint {
  /** The workload (Deployment, …) name; '' when unknown. */
  workload: string;
  /** The pod; '' when unknown. */
  pod: string;
  namespace: string;
  ip: string;
  /** 0 when unknown. */
  port: number;
  /** SPIFFE URI; '' when unknown. */
  identity: string;
}

/** One request as an L7 flow, for the node's flow ring (`meshctl flows --protocol http`); joined
 * to its L4 flow by the source and destination addresses and the time. */
export interface L7Flow {
  /** When the request arrived, ns since the epoch (the Flow proto's time_unix_nano). */
  timeUnixNano: number;
  /** The waypoint that saw it: "namespace/name". */
  waypoint: string;
  source: L7FlowEndpoint;
  /** The endpoint the request went to; for a request that went nowhere, the address the client
   * dialled. */
  destination: L7FlowEndpoint & { service: string };
  /** What the client dialled (a Service VIP or a pod): its L4 flow's destination. */
  dialled: { ip: string; port: number };
  protocol: 'http' | 'grpc';
  /** HTTP/1.1 or HTTP/2 between the client and the waypoint (Hubble prints "HTTP/1.1 200 …"). */
  httpVersion: '1.1' | '2';
  method: string;
  /** As received, query included. */
  path: string;
  authority: string;
  /** 0 when no response was sent. */
  status: number;
  grpcStatus: string;
  responseFlags: L7ResponseFlag;
  latencyMs: number;
  /** The trace id of the traceparent (32 hex digits), '' without a valid one. */
  traceId: string;
  /** DROPPED when authorization policy denied the request (403, flag RBAC). */
  verdict: L7Verdict;
  route: string;
  /** "namespace/name" of the authorization policy that decided ('' when none did). */
  policy?: string;
}

/** Defaults with their reasons. */
export const REQUEST_TELEMETRY_DEFAULTS = Object.freeze({
  /** As ztunnel's: far past what one waypoint's workload pairs × response codes produce, low
   * enough that a label bug cannot exhaust memory. */
  maxSeries: 10_000,
  /** Principals parsed once and kept; cleared when full. */
  identityCache: 1024,
});

/** Observations of one histogram series: per-bucket (not cumulative) counts, +Inf last. */
interface Observations {
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

interface Series {
  readonly labels: Readonly<RequestLabels>;
  requests: number;
  readonly duration: Observations;
  readonly requestBytes: Observations;
  readonly responseBytes: Observations;
}

function observations(): Observations {
  return { counts: new Float64Array(ISTIO_BUCKETS.length + 1), sum: 0, count: 0 };
}

function observe(o: Observations, v: number): void {
  let i = 0;
  // Prometheus buckets are upper-inclusive (le).
  while (i < ISTIO_BUCKETS.length && v > ISTIO_BUCKETS[i]!) i++;
  o.counts[i]!++;
  o.sum += v;
  o.count++;
}

/**
 * A prom-client Histogram whose values come from our series at scrape time, in the shape
 * prom-client's own Histogram.get() returns (cumulative le buckets, +Inf, _sum, _count).
 */
class SeriesHistogram extends Histogram<string> {
  readonly #metricName: string;
  readonly #helpText: string;
  readonly #read: () => Iterable<[Readonly<RequestLabels>, Observations]>;

  constructor(name: string, help: string, registry: Registry, read: () => Iterable<[Readonly<RequestLabels>, Observations]>) {
    super({ name, help, labelNames: REQUEST_LABEL_NAMES, buckets: [...ISTIO_BUCKETS], registers: [registry] });
    this.#metricName = name;
    this.#helpText = help;
    this.#read = read;
  }

  /** What the text exposition reads (Registry.getMetricsAsString prefers it to get()). */
  getForPromString(): ReturnType<Histogram<string>['get']> {
    return this.get();
  }

  override async get(): ReturnType<Histogram<string>['get']> {
    const bucket = `${this.#metricName}_bucket`;
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const [labels, o] of this.#read()) {
      let cumulative = 0;
      for (let i = 0; i < ISTIO_BUCKETS.length; i++) {
        cumulative += o.counts[i]!;
        values.push({ labels: { le: ISTIO_BUCKETS[i]!, ...labels }, value: cumulative, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf', ...labels }, value: o.count, metricName: bucket });
      values.push({ labels: { ...labels }, value: o.sum, metricName: `${this.#metricName}_sum` });
      values.push({ labels: { ...labels }, value: o.count, metricName: `${this.#metricName}_count` });
    }
    // prom-client's typings say `type` is its MetricType enum; at run time (and in the text
    // exposition's "# TYPE" line) it is the string, as its own Histogram returns it.
    const metric = { name: this.#metricName, help: this.#helpText, type: 'histogram', values, aggregator: 'sum', collect: () => undefined };
    return metric as unknown as Awaited<ReturnType<Histogram<string>['get']>>;
  }
}

export interface RequestTelemetryOptions {
  registry: Registry;
  lookup: TelemetryLookup;
  waypoint: { namespace: string; name: string };
  /** Receives one JSON line per request (no trailing newline). */
  accessLog?: (line: string) => void;
  onFlow?: (flow: L7Flow) => void;
  /** Wall clock, ms since the epoch; for tests. */
  now?: () => number;
  maxSeries?: number;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}/;

/** The trace id of a W3C traceparent (Trace Context §3.2), '' when it is not one. */
export function traceIdOf(traceparent: string): string {
  const m = TRACEPARENT.exec(traceparent);
  return m && m[1] !== '00000000000000000000000000000000' ? m[1]! : '';
}

function header(req: RequestInfo, name: string): string | null {
  const h = req.headers[name];
  if (h === undefined) return null;
  return typeof h === 'string' ? h : h.join(',');
}

/** The Service's own name when it is not known: the hostname's first label. */
function shortName(hostname: string): string {
  const i = hostname.indexOf('.');
  return i < 0 ? hostname : hostname.slice(0, i);
}

function principalOf(w: Workload): string {
  return w.trustDomain && w.serviceAccount ? `spiffe://${w.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}` : '';
}

/**
 * A request span's attributes: OpenTelemetry's HTTP semantic conventions, and the mesh's own
 * (both workloads, both identities, the Service, the route, Envoy's response flags) from the same
 * labels the request metrics carry, so a span and its series agree.
 */
export function spanAttributes(r: CompletedRequest, l: RequestLabels): Record<string, string | number> {
  const q = r.req.path.indexOf('?');
  const a: Record<string, string | number> = {
    'http.request.method': r.req.method,
    'url.path': q < 0 ? r.req.path : r.req.path.slice(0, q),
    'server.address': r.req.authority,
    'network.protocol.version': r.req.version,
    'http.response.status_code': r.status,
    'mesh.reporter': 'waypoint',
    'mesh.source.workload': l.source_workload,
    'mesh.source.namespace': l.source_workload_namespace,
    'mesh.source.principal': l.source_principal,
    'mesh.destination.workload': l.destination_workload,
    'mesh.destination.namespace': l.destination_workload_namespace,
    'mesh.destination.principal': l.destination_principal,
    'mesh.destination.service': l.destination_service,
    'mesh.response_flags': l.response_flags,
    'mesh.request_protocol': l.request_protocol,
  };
  if (q >= 0) a['url.query'] = r.req.path.slice(q + 1);
  if (r.route) a['mesh.route'] = r.route;
  if (r.grpcStatus) a['rpc.grpc.status_code'] = Number(r.grpcStatus);
  const d = r.destination;
  if (d) {
    a['server.port'] = d.port;
    a['network.peer.address'] = d.ip;
  }
  return a;
}

export class RequestTelemetry {
  readonly #lookup: TelemetryLookup;
  readonly #waypoint: string;
  readonly #accessLog: ((line: string) => void) | undefined;
  readonly #onFlow: ((flow: L7Flow) => void) | undefined;
  readonly #now: () => number;
  readonly #maxSeries: number;
  readonly #series = new Map<string, Series>();
  readonly #identities = new Map<string, SpiffeId | undefined>();
  readonly #overflow: Counter<string>;

  constructor(opts: RequestTelemetryOptions) {
    this.#lookup = opts.lookup;
    this.#waypoint = `${opts.waypoint.namespace}/${opts.waypoint.name}`;
    this.#accessLog = opts.accessLog;
    this.#onFlow = opts.onFlow;
    this.#now = opts.now ?? Date.now;
    this.#maxSeries = opts.maxSeries ?? REQUEST_TELEMETRY_DEFAULTS.maxSeries;
    const series = this.#series;
    const registry = opts.registry;
    // HELP texts follow istio.io's "Istio Standard Metrics".
    new Counter({
      name: 'istio_requests_total',
      help: 'The total number of requests handled by an Istio proxy',
      labelNames: REQUEST_LABEL_NAMES,
      registers: [registry],
      collect(this: Counter<string>) {
        this.reset();
        for (const s of series.values()) this.inc(s.labels, s.requests);
      },
    });
    const family = (pick: (s: Series) => Observations) =>
      function* (): Iterable<[Readonly<RequestLabels>, Observations]> {
        for (const s of series.values()) yield [s.labels, pick(s)];
      };
    new SeriesHistogram('istio_request_duration_milliseconds', 'The duration of requests', registry, family((s) => s.duration));
    new SeriesHistogram('istio_request_bytes', 'HTTP request body sizes', registry, family((s) => s.requestBytes));
    new SeriesHistogram('istio_response_bytes', 'HTTP response body sizes', registry, family((s) => s.responseBytes));
    this.#overflow = new Counter({
      name: 'mesh_waypoint_metric_series_overflow_total',
      help: 'Label sets folded into an "overflow" series because the istio_request* families reached their series limit',
      registers: [registry],
    });
  }

  /** Counts the request, writes its access-log line and emits its flow (in that order). */
  record(r: CompletedRequest): void {
    const src = this.#source(r.req);
    const dst = this.#destination(r);
    const labels: RequestLabels = requestLabels({
      reporter: 'waypoint',
      source: src.workload,
      sourceIdentity: src.identity,
      derivedSource: src.derived,
      destination: dst.workload,
      destinationService: dst.service,
      // The waypoint only takes HBONE: every request arrived over mutual TLS.
      mtls: true,
      protocol: r.req.protocol,
      responseCode: r.status,
      grpcStatus: r.grpcStatus,
      flags: r.flags,
    });
    // A span's attributes only for a span that is recorded (most are not: sampling, or no exporter).
    if (r.trace?.recording) r.trace.end(spanAttributes(r, labels), { durationMs: r.durationMs, error: r.status === 0 || r.status >= 500, ...(r.flags !== '-' ? { statusMessage: r.flags } : {}) });
    const s = this.#get(labels);
    s.requests++;
    observe(s.duration, r.durationMs);
    observe(s.requestBytes, r.requestBytes);
    observe(s.responseBytes, r.responseBytes);
    if (!this.#accessLog && !this.#onFlow) return;
    const start = this.#now() - r.durationMs;
    if (this.#accessLog) this.#accessLog(this.#line(r, start, labels, dst.hostname));
    if (this.#onFlow) this.#onFlow(this.#flow(r, start, src.workload, dst.workload, dst.key));
  }

  #get(labels: RequestLabels): Series {
    let key = seriesKey(labels, REQUEST_LABEL_NAMES);
    let s = this.#series.get(key);
    if (s) return s;
    if (this.#series.size >= this.#maxSeries) {
      this.#overflow.inc();
      labels = overflowLabels(labels);
      key = seriesKey(labels, REQUEST_LABEL_NAMES);
      s = this.#series.get(key);
      if (s) return s;
    }
    s = { labels: Object.freeze({ ...labels }), requests: 0, duration: observations(), requestBytes: observations(), responseBytes: observations() };
    this.#series.set(key, s);
    return s;
  }

  #identity(principal: string): SpiffeId | undefined {
    if (!principal) return undefined;
    if (this.#identities.has(principal)) return this.#identities.get(principal);
    let id: SpiffeId | undefined;
    try {
      id = parseSpiffeId(`spiffe://${principal}`);
    } catch {
      id = undefined;
    }
    if (this.#identities.size >= REQUEST_TELEMETRY_DEFAULTS.identityCache) this.#identities.clear();
    this.#identities.set(principal, id);
    return id;
  }

  #source(req: RequestInfo): { workload: Workload | undefined; identity: SpiffeId | undefined; derived: DerivedSource | undefined } {
    const identity = this.#identity(req.source.principal);
    const w = req.source.ip ? this.#lookup.workloadByIp(req.source.ip) : undefined;
    const trusted = w && (!identity || (w.namespace === identity.namespace && w.serviceAccount === identity.serviceAccount)) ? w : undefined;
    const ns = identity?.namespace || req.source.namespace;
    return { workload: trusted, identity, derived: !trusted && ns ? { namespace: ns } : undefined };
  }

  #destination(r: CompletedRequest): { workload: Workload | undefined; service: Pick<Service, 'hostname' | 'name' | 'namespace'> | undefined; key: string; hostname: string } {
    const d = r.destination;
    const workload = d ? ((d.workloadUid ? this.#lookup.workloads.get(d.workloadUid) : undefined) ?? (d.ip ? this.#lookup.workloadByIp(d.ip) : undefined)) : undefined;
    const key = d?.service || r.req.destination.service;
    if (!key) return { workload, service: undefined, key: '', hostname: '' };
    const known = this.#lookup.services.get(key);
    if (known) return { workload, service: known, key, hostname: known.hostname };
    const slash = key.indexOf('/');
    const hostname = key.slice(slash + 1);
    return { workload, service: { namespace: key.slice(0, slash), hostname, name: shortName(hostname) }, key, hostname };
  }

  /** Envoy's access-log fields in its JSON names (the default format's operators, snake_case as
   * Istio's JSON encoding prints them); null where Envoy prints "-". */
  #line(r: CompletedRequest, start: number, labels: RequestLabels, hostname: string): string {
    const req = r.req;
    const d = r.destination;
    return JSON.stringify({
      start_time: new Date(start).toISOString(),
      method: req.method,
      path: req.path,
      protocol: req.version === '2' ? 'HTTP/2' : 'HTTP/1.1',
      response_code: r.status,
      response_flags: r.flags,
      grpc_status: r.grpcStatus || null,
      duration: Math.round(r.durationMs),
      bytes_received: r.requestBytes,
      bytes_sent: r.responseBytes,
      upstream_host: d ? formatAddr(d.ip, d.port) : null,
      upstream_cluster: hostname ? `outbound|${req.destination.port}||${hostname}` : null,
      authority: req.authority || null,
      x_forwarded_for: header(req, 'x-forwarded-for'),
      user_agent: header(req, 'user-agent'),
      request_id: header(req, 'x-request-id'),
      traceparent: r.traceparent || null,
      downstream_remote_address: r.sourcePort ? formatAddr(req.source.ip, r.sourcePort) : req.source.ip || null,
      downstream_local_address: formatAddr(req.destination.ip, req.destination.port),
      source_principal: labels.source_principal === 'unknown' ? null : labels.source_principal,
      source_workload: labels.source_workload === 'unknown' ? null : labels.source_workload,
      source_namespace: labels.source_workload_namespace === 'unknown' ? null : labels.source_workload_namespace,
      destination_service: labels.destination_service === 'unknown' ? null : labels.destination_service,
      route_name: r.route || null,
      waypoint: this.#waypoint,
    });
  }

  #flow(r: CompletedRequest, start: number, src: Workload | undefined, dst: Workload | undefined, serviceKey: string): L7Flow {
    const req = r.req;
    const d = r.destination;
    const dropped = r.flags === 'RBAC';
    return {
      timeUnixNano: Math.round(start * 1e6),
      waypoint: this.#waypoint,
      source: {
        workload: src?.workloadName ?? '',
        pod: src?.name ?? '',
        namespace: src?.namespace ?? req.source.namespace,
        ip: req.source.ip,
        port: r.sourcePort ?? 0,
        identity: req.source.principal ? `spiffe://${req.source.principal}` : '',
      },
      destination: {
        workload: dst?.workloadName ?? '',
        pod: dst?.name ?? '',
        namespace: dst?.namespace ?? (serviceKey ? serviceKey.slice(0, serviceKey.indexOf('/')) : ''),
        ip: d ? d.ip : req.destination.ip,
        port: d ? d.port : req.destination.port,
        identity: dst ? principalOf(dst) : '',
        service: serviceKey,
      },
      dialled: { ip: req.destination.ip, port: req.destination.port },
      protocol: req.protocol,
      httpVersion: req.version,
      method: req.method,
      path: req.path,
      authority: req.authority,
      status: r.status,
      grpcStatus: r.grpcStatus,
      responseFlags: r.flags,
      latencyMs: r.durationMs,
      traceId: traceIdOf(r.traceparent),
      verdict: dropped ? 'DROPPED' : 'FORWARDED',
      route: r.route,
      ...(r.policy ? { policy: r.policy } : {}),
    };
  }
}

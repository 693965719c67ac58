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
import type { Registry } from 'prom-client';
import { Counter, Histogram } from 'prom-client';
import { parseSpiffeId, type SpiffeId } from '../identity/index.ts';
import { formatAddr, REQUEST_LABEL_NAMES, requestLabels, type DerivedSource, type RequestLabels } from '../telemetry/index.ts';
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
  /** The client's port, when the proxy knows it (the HBONE `forwarded` header); 0 or absent: unknown. */
  sourcePort?: number;
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
  protocol: 'http' | 'grpc';
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

export class RequestTelemetry {
  readonly #lookup: TelemetryLookup;
  readonly #waypoint: string;
  readonly #accessLog: ((line: string) => void) | undefined;
  readonly #onFlow: ((flow: L7Flow) => void) | undefined;
  readonly #now: () => number;
  readonly #requests: Counter<string>;
  readonly #duration: Histogram<string>;
  readonly #requestBytes: Histogram<string>;
  readonly #responseBytes: Histogram<string>;

  constructor(opts: RequestTelemetryOptions) {
    this.#lookup = opts.lookup;
    this.#waypoint = `${opts.waypoint.namespace}/${opts.waypoint.name}`;
    this.#accessLog = opts.accessLog;
    this.#onFlow = opts.onFlow;
    this.#now = opts.now ?? Date.now;
    const registers = [opts.registry];
    const labelNames = REQUEST_LABEL_NAMES;
    const buckets = [...ISTIO_BUCKETS];
    // HELP texts follow istio.io's "Istio Standard Metrics".
    this.#requests = new Counter({ name: 'istio_requests_total', help: 'The total number of requests handled by an Istio proxy', labelNames, registers });
    this.#duration = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'The duration of requests', labelNames, buckets, registers });
    this.#requestBytes = new Histogram({ name: 'istio_request_bytes', help: 'HTTP request body sizes', labelNames, buckets, registers });
    this.#responseBytes = new Histogram({ name: 'istio_response_bytes', help: 'HTTP response body sizes', labelNames, buckets, registers });
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
    this.#requests.inc(labels);
    this.#duration.observe(labels, r.durationMs);
    this.#requestBytes.observe(labels, r.requestBytes);
    this.#responseBytes.observe(labels, r.responseBytes);
    if (!this.#accessLog && !this.#onFlow) return;
    const start = this.#now() - r.durationMs;
    if (this.#accessLog) this.#accessLog(this.#line(r, start, labels, dst.hostname));
    if (this.#onFlow) this.#onFlow(this.#flow(r, start, src.workload, dst.workload, dst.key));
  }

  #source(req: RequestInfo): { workload: Workload | undefined; identity: SpiffeId | undefined; derived: DerivedSource | undefined } {
    let identity: SpiffeId | undefined;
    if (req.source.principal) {
      try {
        identity = parseSpiffeId(`spiffe://${req.source.principal}`);
      } catch {
        identity = undefined;
      }
    }
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
      protocol: req.protocol,
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
    };
  }
}

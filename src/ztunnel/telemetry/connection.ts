// One connection's telemetry from open to close: the metrics handle plus the access-log line
// written when it completes — ztunnel's ConnectionResult.
import { formatAddr, type AccessLogEntry } from '../../telemetry/index.ts';
import type { ConnectionPolicy, ConnectionRecord } from '../../zds/protocol.ts';
import { AccessLog } from './access-log.ts';
import { trafficLabels, type ResponseFlag, type TrafficLabelInput, type TrafficLabels } from '../../telemetry/labels.ts';
import { TcpMetrics, type ConnectionMetrics } from './metrics.ts';
// Types only: ztunnel loads the tracing module (OpenTelemetry) only when L4 spans are on (main.ts).
import type { SpanKind } from '@opentelemetry/api';
import type { MeshTracer } from '../../tracing/index.ts';

export interface SocketAddress {
  ip: string;
  port: number;
}

export interface OpenedConnection extends TrafficLabelInput {
  /** The client's address as this ztunnel saw it. */
  src: SocketAddress;
  /** The address connected to: the destination pod (inbound) or the original destination
   * (outbound, a pod IP or a service VIP). */
  dst: SocketAddress;
  /** The HBONE :authority ("podIP:port") when the connection is tunnelled. */
  hboneAddr?: string | undefined;
  /** Outbound: the application socket's cookie (from the datapath), which names the kernel's
   * CAPTURED event for the same connection. */
  sockCookie?: bigint | undefined;
  /** Inbound: the TCP connection the kernel steered to ztunnel ("ip:port" both ends) — for HBONE,
   * the pooled outer connection that carries this stream. */
  outer?: { src: string; dst: string } | undefined;
  /** Inbound HBONE: the W3C traceparent of the CONNECT, which the source's L4 span sent. */
  traceparent?: string | undefined;
}

/** One completed connection, as the node agent's flows receive it. */

export interface TrackedConnection {
  readonly labels: Readonly<TrafficLabels>;
  /** With L4 spans on: the traceparent naming this connection's span, for the HBONE CONNECT; ''
   * otherwise. */
  readonly traceparent: string;
  readonly metrics: ConnectionMetrics;
  /** Response-direction bytes (server → client). */
  addSent(n: number): void;
  /** Request-direction bytes (client → server). */
  addReceived(n: number): void;
  /** Records the close and writes the access-log line, once. `error` makes the line an error;
   * `flags` is the response_flags label ("-" unless it failed to establish; see
   * ConnectionMetrics.closed). */
  close(result?: { flags?: ResponseFlag; error?: Error | string; refused?: boolean }): void;
  /** Names the policy that admitted or refused the connection, for its flow. */
  decidedBy(policy: ConnectionPolicy | undefined): void;
}

export interface TelemetryOptions {
  metrics?: TcpMetrics;
  /** Omit for no access log. */
  accessLog?: AccessLog | undefined;
  /** Milliseconds clock, for tests. */
  now?: () => number;
  /** Called once per completed connection (the node agent's flows). */
  onClose?: ((r: ConnectionRecord) => void) | undefined;
  /** L4 spans: one per connection (MESH_TRACING_OTLP_ENDPOINT set for ztunnel). */
  tracer?: MeshTracer | undefined;
}

// OpenTelemetry's SpanKind values (api SpanKind.SERVER / CLIENT), without importing the API here.
const SPAN_SERVER = 1 as SpanKind;
const SPAN_CLIENT = 2 as SpanKind;

export class Telemetry {
  readonly metrics: TcpMetrics;
  readonly accessLog: AccessLog | undefined;
  readonly #now: () => number;
  /** Set by the owner once it knows where records go (ztunnel: the agent's ZDS socket). */
  onClose: ((r: ConnectionRecord) => void) | undefined;
  /** Set by the owner when L4 spans are on. */
  tracer: MeshTracer | undefined;

  constructor(opts: TelemetryOptions = {}) {
    this.metrics = opts.metrics ?? new TcpMetrics();
    this.accessLog = opts.accessLog;
    this.#now = opts.now ?? (() => performance.now());
    this.onClose = opts.onClose;
    this.tracer = opts.tracer;
  }

  connectionOpened(c: OpenedConnection): TrackedConnection {
    const start = this.#now();
    const labels = trafficLabels(c);
    const m = this.metrics.connectionOpened(labels);
    const log = this.accessLog;
    const now = this.#now;
    const startMs = Date.now();
    const sink = () => this.onClose;
    const mtls = labels.connection_security_policy === 'mutual_tls';
    // An L4 span: CLIENT at the source (its context rides the HBONE CONNECT), SERVER at the
    // destination (continuing the CONNECT's), named after the address connected to.
    const span = this.tracer?.start(`${formatAddr(c.dst.ip, c.dst.port)}`, c.traceparent ? { traceparent: c.traceparent } : {}, labels.reporter === 'source' ? SPAN_CLIENT : SPAN_SERVER);
    let policy: ConnectionPolicy | undefined;
    return {
      decidedBy(p) {
        policy = p;
      },
      labels: m.labels,
      traceparent: span?.traceparent ?? '',
      metrics: m,
      addSent: (n) => m.addSent(n),
      addReceived: (n) => m.addReceived(n),
      close(result = {}) {
        if (m.isClosed) return;
        m.closed(result.flags ?? '-');
        if (span) {
          const err = result.error === undefined ? undefined : typeof result.error === 'string' ? result.error : result.error.message;
          span.end(
            {
              'network.transport': 'tcp',
              'mesh.reporter': labels.reporter,
              'mesh.source.workload': labels.source_workload,
              'mesh.source.namespace': labels.source_workload_namespace,
              'mesh.source.principal': labels.source_principal,
              'mesh.destination.workload': labels.destination_workload,
              'mesh.destination.namespace': labels.destination_workload_namespace,
              'mesh.destination.principal': labels.destination_principal,
              'mesh.destination.service': labels.destination_service,
              'mesh.connection_security_policy': labels.connection_security_policy,
              'mesh.response_flags': result.flags ?? '-',
              'mesh.bytes_sent': m.sent,
              'mesh.bytes_received': m.received,
            },
            { durationMs: now() - start, error: err !== undefined, ...(err !== undefined ? { statusMessage: err } : {}) },
          );
        }
        const report = sink();
        if (!log && !report) return;
        const outbound = labels.reporter === 'source';
        const err = result.error;
        const entry: AccessLogEntry = {
          direction: outbound ? 'outbound' : 'inbound',
          src: { addr: formatAddr(c.src.ip, c.src.port), workload: c.source?.name || labels.source_canonical_service, namespace: labels.source_workload_namespace, identity: mtls ? labels.source_principal : undefined },
          dst: {
            addr: formatAddr(c.dst.ip, c.dst.port),
            hboneAddr: c.hboneAddr,
            service: labels.destination_service,
            workload: c.destination?.name || labels.destination_canonical_service,
            namespace: labels.destination_workload_namespace,
            identity: mtls ? labels.destination_principal : undefined,
          },
          bytesSent: outbound ? m.received : m.sent,
          bytesRecv: outbound ? m.sent : m.received,
          durationMs: now() - start,
          error: err === undefined ? undefined : typeof err === 'string' ? err : err.message,
        };
        log?.write(entry);
        report?.({ ...entry, startMs, mtls, flags: result.flags ?? '-', sockCookie: c.sockCookie === undefined ? undefined : String(c.sockCookie), outer: c.outer, refused: result.refused, policy });
      },
    };
  }
}

// ztunnel's L4 telemetry: Istio's istio_tcp_* metrics and the per-connection access log.
export { AccessLog, formatAddr, type AccessLogEntry, type AccessLogOptions } from './access-log.ts';
export { Telemetry, type ConnectionRecord, type OpenedConnection, type SocketAddress, type TelemetryOptions, type TrackedConnection } from './connection.ts';
export {
  emptyLabels,
  LABEL_NAMES,
  RESPONSE_FLAGS,
  trafficLabels,
  UNKNOWN,
  workloadPrincipal,
  type DerivedSource,
  type LabelName,
  type Reporter,
  type ResponseFlag,
  type SecurityPolicy,
  type TrafficLabelInput,
  type TrafficLabels,
} from './labels.ts';
export { METRICS_DEFAULTS, OVERFLOW, TcpMetrics, type ConnectionMetrics, type TcpMetricsOptions } from './metrics.ts';

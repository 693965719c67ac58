// ztunnel's L4 telemetry: Istio's istio_tcp_* metrics and the per-connection access log.
export { AccessLog, type AccessLogOptions } from './access-log.ts';
export { formatAddr, type AccessLogEntry } from '../../telemetry/index.ts';
export type { ConnectionRecord } from '../../zds/protocol.ts';
export { Telemetry, type OpenedConnection, type SocketAddress, type TelemetryOptions, type TrackedConnection } from './connection.ts';
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
} from '../../telemetry/labels.ts';
export { METRICS_DEFAULTS, OVERFLOW, TcpMetrics, type ConnectionMetrics, type TcpMetricsOptions } from './metrics.ts';

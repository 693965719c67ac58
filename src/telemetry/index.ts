// Istio's telemetry vocabulary (metric label names and values), shared by the proxies that report
// in Istio's names: ztunnel's L4 series now, the waypoint's request series later.
export * from './labels.ts';
export { formatAddr, type AccessLogEntry } from './access-log-entry.ts';
export { registerBuildInfo } from './build-info.ts';

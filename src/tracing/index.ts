// Trace context and spans for the proxies (the waypoint always; ztunnel when L4 spans are on).
// Its own room, not part of telemetry/: it loads OpenTelemetry's API, core and B3 propagator
// (~18 MB, ~50 ms), which a ztunnel without tracing must not pay at start.
export { createTracer, dropB3, extractContext, type Headers, type MeshTracer, propagatingTracer, type RequestTrace, type TracingSettings } from './tracing.ts';

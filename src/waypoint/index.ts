// The waypoint: an L7 proxy for the Services and workloads that opt into it. L7Proxy serves each
// stream the HBONE server terminates; the rest are its parts, exported for the process wiring
// and tests.
export { L7Proxy, type L7ProxyOptions, type StreamMeta } from './proxy.ts';
export { normalizeTarget } from './path.ts';
export { Balancer } from './balancer.ts';
export { REPLAY_LIMIT, RequestBody } from './body.ts';
export { classify, detect, type Detected } from './detect.ts';
export { UpstreamConnectError, UpstreamResetError, WaypointError, type WaypointErrorCode } from './errors.ts';
export { hostOf, mirrorSampled, modifyHeaders, modifyPath, redirectLocation, rewriteUrl, type HeaderMap } from './filters.ts';
export { NO_RESILIENCE, type Authorize, type AuthzDecision, type CompletedRequest, type ResiliencePort, type TelemetryPort, type WaypointView } from './ports.ts';
export type { HttpProtocol, L7ResponseFlag, RequestInfo } from './request.ts';
export { pathMatches, pickBackend, prefixMatches, selectRule, type RouteDecision, type RoutableRequest } from './router.ts';
export { asSocket, UpstreamPool, type InboundResponse, type OutboundRequest, type Upstream, type UpstreamProtocol, type UpstreamTarget } from './upstream.ts';

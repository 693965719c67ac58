// The waypoint: an L7 proxy for the Services and workloads that opt into it. Its parts, exported
// for the process wiring and tests.
export { Balancer } from './balancer.ts';
export { REPLAY_LIMIT, RequestBody } from './body.ts';
export { classify, detect, type Detected } from './detect.ts';
export { hostOf, mirrorSampled, modifyHeaders, modifyPath, redirectLocation, rewriteUrl, type HeaderMap } from './filters.ts';
export type { HttpProtocol, L7ResponseFlag, RequestInfo } from './request.ts';
export { pathMatches, pickBackend, prefixMatches, selectRule, type RouteDecision, type RoutableRequest } from './router.ts';

// The waypoint's resources on the config stream: the L7 routes of each Service (compiled by the
// controller from Gateway API HTTPRoutes and GRPCRoutes attached to the Service — GAMMA — and
// the networking.mesh.io TrafficPolicy that targets it), and the L7 AuthorizationPolicies handed
// to waypoints. Shapes follow the Gateway API v1 spec (gateway-api/apis/v1/httproute_types.go)
// and Istio's AuthorizationPolicy, already validated, defaulted and resolved by the controller,
// as @grpc/proto-loader decodes them (every field present: '' / 0 / [] / null for unset).
import { TYPE_URL_PREFIX } from './resources.ts';

export const ROUTE = `${TYPE_URL_PREFIX}Route` as const;
export const L7_AUTHORIZATION = `${TYPE_URL_PREFIX}L7Authorization` as const;

/** Every route and the traffic policy of one Service; stored under routeName(). */
export interface Route {
  /** The Service the routes attach to: "namespace/hostname", as serviceName() names a Service. */
  service: string;
  namespace: string;
  hostname: string;
  /**
   * The rules of every accepted HTTPRoute and GRPCRoute attached to the Service, in Gateway API
   * precedence order (the first rule with a matching match wins). A request no rule matches goes
   * to the Service itself, as if there were no route; with no rules at all the Service is its
   * own only backend.
   */
  rules: RouteRule[];
  /** The TrafficPolicy targeting the Service, if any. */
  resilience: Resilience | null;
}

export interface RouteRule {
  /** Where the rule comes from, for logs, status and metrics: "HTTPRoute/ns/name/rule-index". */
  origin: string;
  kind: 'HTTP' | 'GRPC';
  /** The parentRef's port: the rule applies to requests for this Service port only; 0 = every port. */
  port: number;
  /** OR-ed; each match AND-s its fields. Empty: every request (Gateway API's default "/" prefix). */
  matches: RouteMatch[];
  /** Applied in order, as listed in the rule. */
  filters: RouteFilter[];
  /** Weighted; weight 0 receives nothing. Empty, or all weights 0 → 500 (Gateway API). */
  backends: Backend[];
  /** HTTPRouteTimeouts, in milliseconds; 0 = no timeout. */
  timeouts: Timeouts;
  /** HTTPRouteRetry; null = no retries. */
  retry: Retry | null;
}

export interface Timeouts {
  /** The whole request, all retries included → 504 when it runs out. */
  requestMs: number;
  /** One attempt to a backend → 504 (retried when 504 is a retry code). */
  backendRequestMs: number;
}

export interface Retry {
  /** Additional attempts after the first. */
  attempts: number;
  /** The response codes that are retried (connection failures always are). */
  codes: number[];
  /** Between attempts; 0 = none. */
  backoffMs: number;
}

export interface RouteMatch {
  path: PathMatch | null;
  /** HTTP method, upper case; '' = any. */
  method: string;
  /** AND-ed. Header names lower case. */
  headers: ValueMatch[];
  /** AND-ed. */
  queryParams: ValueMatch[];
  /** GRPCRoute's method match (path /service/method); null = any. */
  grpc: GrpcMethodMatch | null;
}

export interface PathMatch {
  type: 'EXACT' | 'PATH_PREFIX' | 'REGULAR_EXPRESSION';
  value: string;
}

export interface ValueMatch {
  type: 'EXACT' | 'REGULAR_EXPRESSION';
  name: string;
  value: string;
}

export interface GrpcMethodMatch {
  type: 'EXACT' | 'REGULAR_EXPRESSION';
  /** '' = any service. */
  service: string;
  /** '' = any method. */
  method: string;
}

export interface Header {
  name: string;
  value: string;
}

export interface HeaderModifier {
  set: Header[];
  add: Header[];
  remove: string[];
}

export interface PathModifier {
  type: 'REPLACE_FULL_PATH' | 'REPLACE_PREFIX_MATCH';
  value: string;
}

export interface UrlRewrite {
  /** '' = keep. */
  hostname: string;
  path: PathModifier | null;
}

export interface Redirect {
  /** '' = keep. */
  scheme: string;
  hostname: string;
  path: PathModifier | null;
  /** 0 = keep (or the scheme's default when the scheme changes). */
  port: number;
  /** 301 or 302 (default 302). */
  statusCode: number;
}

export interface Mirror {
  backend: Backend;
  /** 0–100 (Gateway API's percent / fraction); 100 when the route did not say. */
  percent: number;
}

export type FilterType = 'REQUEST_HEADER_MODIFIER' | 'RESPONSE_HEADER_MODIFIER' | 'URL_REWRITE' | 'REQUEST_REDIRECT' | 'REQUEST_MIRROR';

/** Exactly the field named by `type` is set. */
export interface RouteFilter {
  type: FilterType;
  requestHeaderModifier: HeaderModifier | null;
  responseHeaderModifier: HeaderModifier | null;
  urlRewrite: UrlRewrite | null;
  requestRedirect: Redirect | null;
  requestMirror: Mirror | null;
}

export interface Backend {
  /**
   * The backend Service: "namespace/hostname" (serviceName()). '' for a backendRef the controller
   * could not resolve (missing Service, wrong kind, cross-namespace without a ReferenceGrant): the
   * share of requests its weight receives is answered 500 (Gateway API HTTPBackendRef).
   */
  service: string;
  /** The Service port to send to. */
  port: number;
  weight: number;
}

/** networking.mesh.io/v1alpha1 TrafficPolicy, compiled (docs/traffic-policy.md). */
export interface Resilience {
  /** "TrafficPolicy/ns/name". */
  origin: string;
  fault: Fault | null;
  connectionPool: ConnectionPool | null;
  outlierDetection: OutlierDetection | null;
  rateLimit: RateLimit | null;
}

export interface Fault {
  delayMs: number;
  /** 0–100: the share of requests delayed. */
  delayPercent: number;
  /** The HTTP status of an injected abort; 0 = no abort. */
  abortStatus: number;
  /** 0–100: the share of requests aborted. */
  abortPercent: number;
}

/** 0 = unlimited, in each field. Over a limit: 503 with response flag UO (Envoy's overflow). */
export interface ConnectionPool {
  /** Connections (HBONE streams) open to the Service's endpoints at once. */
  maxConnections: number;
  /** Requests waiting for a connection. */
  maxPendingRequests: number;
  /** Requests carried by one upstream connection before it is closed. */
  maxRequestsPerConnection: number;
}

export interface OutlierDetection {
  /** 5xx (and connect failures) in a row that eject an endpoint. */
  consecutive5xxErrors: number;
  /** How long the first ejection lasts; the nth lasts n times as long. */
  baseEjectionMs: number;
  /** At most this share (0–100) of the endpoints is ejected at once. */
  maxEjectionPercent: number;
}

/** A token bucket shared by every request to the Service on this waypoint; empty → 429 (flag RL). */
export interface RateLimit {
  maxTokens: number;
  tokensPerFill: number;
  fillIntervalMs: number;
}

/**
 * An AuthorizationPolicy enforced by waypoints (Istio's security/v1 AuthorizationPolicy, HTTP
 * fields included). Stored under "namespace/name".
 */
export interface L7Authorization {
  name: string;
  namespace: string;
  /**
   * What it applies to: "Gateway/ns/name" (every request the waypoint takes) or
   * "Service/ns/hostname" (requests for that Service), from targetRefs — or, for a selector
   * policy handed to a waypoint, "Service/…" entries of the Services of the selected workloads.
   */
  targets: string[];
  action: 'ALLOW' | 'DENY';
  /** OR-ed. An ALLOW with no rules allows nothing; a DENY with no rules denies nothing (Istio). */
  rules: L7Rule[];
  dryRun: boolean;
}

/**
 * A rule matches when some `from` matches (or there is none), some `to` matches (or there is
 * none), and every `when` holds. Strings use Istio's matching: exact, "prefix*", "*suffix", "*";
 * paths also "/x/*" as prefix "/x/".
 */
export interface L7Rule {
  from: L7Source[];
  to: L7Operation[];
  when: L7Condition[];
}

/** Each non-empty list must match (AND); within a list any value (OR); not* lists must not. */
export interface L7Source {
  principals: string[];
  notPrincipals: string[];
  namespaces: string[];
  notNamespaces: string[];
  /** CIDRs or addresses. */
  ipBlocks: string[];
  notIpBlocks: string[];
}

export interface L7Operation {
  hosts: string[];
  notHosts: string[];
  ports: number[];
  notPorts: number[];
  methods: string[];
  notMethods: string[];
  paths: string[];
  notPaths: string[];
}

/** Istio's `when`: key "request.headers[name]", "source.principal", "source.namespace", "source.ip", "destination.port", … */
export interface L7Condition {
  key: string;
  values: string[];
  notValues: string[];
}

export function routeName(r: Pick<Route, 'service'>): string {
  return r.service;
}

export function l7AuthorizationName(a: Pick<L7Authorization, 'namespace' | 'name'>): string {
  return `${a.namespace}/${a.name}`;
}

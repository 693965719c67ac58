// What the proxy needs of the parts beside it, stated structurally: the mesh state, the L7
// authorizer (authz.ts), per-Service resilience (resilience.ts) and request telemetry
// (telemetry.ts). Their real classes satisfy these shapes; the process wiring passes them in, and
// tests pass small fakes.
import type { Service, Workload } from '../xds/index.ts';
import type { ServiceEndpoint } from '../state/index.ts';
import type { RequestInfo } from './request.ts';
import type { CompletedRequest } from './telemetry.ts';

/** The read-only part of MeshState the waypoint routes with. */
export interface WaypointView {
  serviceByVip(ip: string): Service | undefined;
  workloadByIp(ip: string): Workload | undefined;
  /** HEALTHY workloads backing "namespace/hostname" on a service port, with their target port. */
  endpoints(service: string, servicePort: number): readonly ServiceEndpoint[];
}

export interface AuthzDecision {
  allowed: boolean;
  /** "ns/name" of the policy that decided; '' when none did. */
  policy: string;
}

/** L7Authorizer.decide. `targets`: "Gateway/ns/name" and, for a Service, "Service/ns/hostname". */
export type Authorize = (req: RequestInfo, targets: string[]) => AuthzDecision;

/** ServiceResilience (resilience.ts): one Service's fault, rate limit, circuit breaker, outliers. */
export interface ResiliencePort {
  /** 0 = unlimited. */
  readonly maxRequestsPerConnection: number;
  /** 0 = none, in each field. */
  fault(): { delayMs: number; abortStatus: number };
  /** false → 429 (RL). */
  takeToken(): boolean;
  /**
   * A release function, or null when over a limit (→ 503 UO). Aborting `signal` (the client went
   * away) takes a waiting request out of the queue and resolves null.
   */
  admit(signal?: AbortSignal): Promise<(() => void) | null>;
  /** One attempt's outcome at an endpoint: ok = neither 5xx nor a connection failure. */
  record(endpointKey: string, ok: boolean): void;
  ejected(endpointKey: string): boolean;
}

/** One finished request, as RequestTelemetry.record takes it. */
export type { CompletedRequest };

export interface TelemetryPort {
  record(r: CompletedRequest): void;
}

/** For a pod dialled directly: no Service, so no TrafficPolicy. */
export const NO_RESILIENCE: ResiliencePort = Object.freeze({
  maxRequestsPerConnection: 0,
  fault: () => ({ delayMs: 0, abortStatus: 0 }),
  takeToken: () => true,
  admit: () => Promise.resolve(() => {}),
  record: () => {},
  ejected: () => false,
});

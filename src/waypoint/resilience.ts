// The resilience of one Service at the waypoint, from its TrafficPolicy (docs/traffic-policy.md,
// src/xds/routes.ts Resilience): fault injection, a local rate limit, circuit breaking and
// outlier detection — what Istio spreads over VirtualService.fault, DestinationRule
// connectionPool/outlierDetection and Envoy's local_ratelimit filter. One instance per Service
// per waypoint; the proxy asks it on every request and attempt.
//
// Nothing here runs a timer: the token bucket refills and ejections end when someone looks,
// computed from the clock, so an idle Service costs nothing.
import type { Resilience } from '../xds/routes.ts';

export interface FaultDecision {
  /** Delay before forwarding; 0 = none. */
  delayMs: number;
  /** Answer with this status instead of forwarding; 0 = none. */
  abortStatus: number;
}

export interface ResilienceOptions {
  /** Milliseconds, monotonic. Default performance.now(); tests pass their own. */
  now?: () => number;
  /** [0, 1). Default Math.random. */
  random?: () => number;
}

/** Per endpoint: Envoy's outlier detector state for consecutive 5xx. */
interface EndpointState {
  consecutiveErrors: number;
  /** Times ejected so far: the nth ejection lasts n × baseEjectionMs (Envoy's num_ejections). */
  ejections: number;
  /** When the current ejection ends; 0 = not ejected. */
  ejectedUntil: number;
}

interface Waiter {
  resolve: (release: (() => void) | null) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

const NO_FAULT: Readonly<FaultDecision> = Object.freeze({ delayMs: 0, abortStatus: 0 });

export class ServiceResilience {
  #cfg: Resilience | null = null;
  readonly #now: () => number;
  readonly #random: () => number;

  // Token bucket (Envoy's local rate limit: starts full, adds tokensPerFill every fillInterval,
  // never above maxTokens).
  #tokens = 0;
  #lastFill = 0;

  // Circuit breaker.
  #active = 0;
  readonly #pending: Waiter[] = [];

  // Outlier detection.
  readonly #endpoints = new Map<string, EndpointState>();
  #ejectedCount = 0;

  constructor(cfg: Resilience | null, opts: ResilienceOptions = {}) {
    this.#now = opts.now ?? (() => performance.now());
    this.#random = opts.random ?? Math.random;
    this.update(cfg);
  }

  /**
   * Takes a new TrafficPolicy (null: none). What is running keeps going: requests admitted stay
   * admitted and queued ones stay queued (a raised maxConnections admits them now), the bucket
   * keeps its tokens (at most the new maxTokens; full when the limit is new), endpoints keep
   * their error counts and ejections.
   */
  update(cfg: Resilience | null): void {
    const before = this.#cfg?.rateLimit ?? null;
    const rl = cfg?.rateLimit ?? null;
    if (rl) {
      if (!before) {
        this.#tokens = rl.maxTokens;
        this.#lastFill = this.#now();
      } else {
        this.#refill(before);
        this.#tokens = Math.min(this.#tokens, rl.maxTokens);
      }
    }
    this.#cfg = cfg;
    this.#drain();
  }

  /** Requests one upstream connection may carry before it is closed; 0 = unlimited. */
  get maxRequestsPerConnection(): number {
    return this.#cfg?.connectionPool?.maxRequestsPerConnection ?? 0;
  }

  /** Whether to delay and/or abort this request, each decided on its own by its percentage
   * (Istio's HTTPFaultInjection: a request can be both delayed and then aborted). */
  fault(): FaultDecision {
    const f = this.#cfg?.fault;
    if (!f) return NO_FAULT;
    const delayMs = f.delayMs > 0 && this.#roll(f.delayPercent) ? f.delayMs : 0;
    const abortStatus = f.abortStatus > 0 && this.#roll(f.abortPercent) ? f.abortStatus : 0;
    return delayMs === 0 && abortStatus === 0 ? NO_FAULT : { delayMs, abortStatus };
  }

  /** Takes a token from the Service's bucket; false: over the limit, answer 429 (flag RL). */
  takeToken(): boolean {
    const rl = this.#cfg?.rateLimit;
    if (!rl) return true;
    this.#refill(rl);
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }

  /**
   * Circuit breaking (Istio's connectionPool): resolves with a release function once the request
   * may go upstream — at once while fewer than maxConnections are active, else after waiting in
   * a FIFO queue of at most maxPendingRequests — or with null when the queue is full too (answer
   * 503, flag UO). Call the release exactly once when the upstream exchange ends (extra calls are
   * ignored). A caller that stops waiting passes `signal`: aborting it takes the request out of
   * the queue and resolves null; without one, it must still call the release it gets.
   */
  admit(signal?: AbortSignal): Promise<(() => void) | null> {
    const max = this.#cfg?.connectionPool?.maxConnections ?? 0;
    if (max === 0 || this.#active < max) return Promise.resolve(this.#grant());
    const maxPending = this.#cfg?.connectionPool?.maxPendingRequests ?? 0;
    if ((maxPending !== 0 && this.#pending.length >= maxPending) || signal?.aborted) return Promise.resolve(null);
    return new Promise((resolve) => {
      const w: Waiter = { resolve, signal, onAbort: undefined };
      if (signal) {
        w.onAbort = () => {
          const i = this.#pending.indexOf(w);
          if (i >= 0) this.#pending.splice(i, 1);
          resolve(null);
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.#pending.push(w);
    });
  }

  /** Requests holding a slot / waiting for one (for admin and tests). */
  get inFlight(): { active: number; pending: number } {
    return { active: this.#active, pending: this.#pending.length };
  }

  /**
   * The outcome of one attempt to an endpoint ("ip:port" or a workload uid — the caller's key):
   * ok false for a 5xx or a failed connection. consecutive5xxErrors failures in a row eject it,
   * while less than maxEjectionPercent of the endpoints seen are out (at least one may always be).
   */
  record(endpointKey: string, ok: boolean): void {
    const od = this.#cfg?.outlierDetection;
    // Without outlier detection nothing is tracked: a Service without it costs no memory.
    if (!od || od.consecutive5xxErrors <= 0) return;
    let s = this.#endpoints.get(endpointKey);
    if (!s) {
      s = { consecutiveErrors: 0, ejections: 0, ejectedUntil: 0 };
      this.#endpoints.set(endpointKey, s);
    }
    if (ok) {
      s.consecutiveErrors = 0;
      return;
    }
    s.consecutiveErrors++;
    if (s.consecutiveErrors < od.consecutive5xxErrors) return;
    const now = this.#now();
    if (this.#isEjected(s, now)) return;
    this.#expire(now);
    // As Envoy: an ejection happens while the share already out is below maxEjectionPercent, and
    // one endpoint may always be ejected (so the default 10 % works for small Services too).
    if (this.#ejectedCount > 0 && this.#ejectedCount * 100 >= od.maxEjectionPercent * this.#endpoints.size) return;
    s.ejections++;
    s.ejectedUntil = now + od.baseEjectionMs * s.ejections;
    s.consecutiveErrors = 0;
    this.#ejectedCount++;
  }

  /** Whether the load balancer must skip this endpoint now. */
  ejected(endpointKey: string): boolean {
    if (!this.#cfg?.outlierDetection) return false;
    const s = this.#endpoints.get(endpointKey);
    return s !== undefined && this.#isEjected(s, this.#now());
  }

  /** Forgets endpoints that are gone from the Service, so they no longer count toward
   * maxEjectionPercent. Optional: the proxy calls it when the Service's endpoints change. */
  retain(endpointKeys: Iterable<string>): void {
    const keep = new Set(endpointKeys);
    const now = this.#now();
    for (const [k, s] of this.#endpoints) {
      if (keep.has(k)) continue;
      if (this.#isEjected(s, now)) this.#ejectedCount--;
      this.#endpoints.delete(k);
    }
  }

  #roll(percent: number): boolean {
    return percent > 0 && (percent >= 100 || this.#random() * 100 < percent);
  }

  #refill(rl: NonNullable<Resilience['rateLimit']>): void {
    const now = this.#now();
    if (rl.fillIntervalMs <= 0 || rl.tokensPerFill <= 0) return;
    const fills = Math.floor((now - this.#lastFill) / rl.fillIntervalMs);
    if (fills <= 0) return;
    this.#lastFill += fills * rl.fillIntervalMs;
    this.#tokens = Math.min(rl.maxTokens, this.#tokens + fills * rl.tokensPerFill);
  }

  #grant(): () => void {
    this.#active++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#active--;
      this.#drain();
    };
  }

  /** Hands free slots to the oldest waiters. */
  #drain(): void {
    const max = this.#cfg?.connectionPool?.maxConnections ?? 0;
    while (this.#pending.length > 0 && (max === 0 || this.#active < max)) {
      const w = this.#pending.shift()!;
      if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
      w.resolve(this.#grant());
    }
  }

  /** Ends an ejection whose time is up (lazily, when asked). */
  #isEjected(s: EndpointState, now: number): boolean {
    if (s.ejectedUntil === 0) return false;
    if (now < s.ejectedUntil) return true;
    s.ejectedUntil = 0;
    this.#ejectedCount--;
    return false;
  }

  #expire(now: number): void {
    if (this.#ejectedCount === 0) return;
    for (const s of this.#endpoints.values()) this.#isEjected(s, now);
  }
}

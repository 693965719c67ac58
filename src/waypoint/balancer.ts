// Endpoint choice: power of two choices over the requests in flight (Envoy's LEAST_REQUEST with
// choice_count 2, Istio's default). Two random candidates, the less busy one wins: nearly the
// spread of a full least-request scan at O(1), without every waypoint herding onto the one
// endpoint that looked idlest a moment ago (Mitzenmacher, "The Power of Two Choices in
// Randomized Load Balancing", 2001).

export class Balancer {
  /** Requests in flight by endpoint key. */
  private readonly active = new Map<string, number>();

  private readonly random: () => number;

  constructor(random: () => number = Math.random) {
    this.random = random;
  }

  /**
   * One of `candidates` (by key), or undefined when there is none. `avoid` (the endpoints earlier
   * attempts of a request failed on) is skipped while anything else is left, as Istio's default
   * retry host predicate (previous_hosts) does.
   */
  pick<T>(candidates: readonly T[], key: (c: T) => string, avoid?: ReadonlySet<string>): T | undefined {
    let list = candidates;
    if (avoid && avoid.size > 0) {
      const fresh = candidates.filter((c) => !avoid.has(key(c)));
      if (fresh.length > 0) list = fresh;
    }
    if (list.length <= 1) return list[0];
    const i = Math.floor(this.random() * list.length);
    let j = Math.floor(this.random() * (list.length - 1));
    if (j >= i) j++;
    const a = list[i]!;
    const b = list[j]!;
    return this.inFlight(key(b)) < this.inFlight(key(a)) ? b : a;
  }

  inFlight(key: string): number {
    return this.active.get(key) ?? 0;
  }

  /** Counts a request to the endpoint as in flight; the returned function ends it (idempotent). */
  start(key: string): () => void {
    this.active.set(key, this.inFlight(key) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = this.inFlight(key) - 1;
      if (n <= 0) this.active.delete(key);
      else this.active.set(key, n);
    };
  }
}

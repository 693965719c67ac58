import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { ServiceResilience } from '../../src/waypoint/resilience.ts';
import type { ConnectionPool, Fault, OutlierDetection, RateLimit, Resilience } from '../../src/xds/routes.ts';

function cfg(parts: { fault?: Partial<Fault>; connectionPool?: Partial<ConnectionPool>; outlierDetection?: Partial<OutlierDetection>; rateLimit?: Partial<RateLimit> }): Resilience {
  return {
    origin: 'TrafficPolicy/shop/cart',
    fault: parts.fault ? { delayMs: 0, delayPercent: 0, abortStatus: 0, abortPercent: 0, ...parts.fault } : null,
    connectionPool: parts.connectionPool ? { maxConnections: 0, maxPendingRequests: 0, maxRequestsPerConnection: 0, ...parts.connectionPool } : null,
    outlierDetection: parts.outlierDetection ? { consecutive5xxErrors: 5, baseEjectionMs: 30_000, maxEjectionPercent: 100, ...parts.outlierDetection } : null,
    rateLimit: parts.rateLimit ? { maxTokens: 10, tokensPerFill: 10, fillIntervalMs: 1000, ...parts.rateLimit } : null,
  };
}

/** A clock the test moves. */
function clock(start = 1000) {
  const c = { t: start, now: () => c.t };
  return c;
}

/** A deterministic [0,1) sequence that covers the range evenly. */
function sequence(n: number) {
  let i = 0;
  return () => ((i++ % n) + 0.5) / n;
}

test('no policy: no fault, no limit, no breaker, nobody ejected', async (t) => {
  const r = new ServiceResilience(null);
  t.deepEqual(r.fault(), { delayMs: 0, abortStatus: 0 });
  for (let i = 0; i < 1000; i++) t.true(r.takeToken());
  const releases = await Promise.all(Array.from({ length: 100 }, () => r.admit()));
  t.true(releases.every((x) => typeof x === 'function'));
  for (let i = 0; i < 10; i++) r.record('10.0.0.1:80', false);
  t.false(r.ejected('10.0.0.1:80'));
  t.is(r.maxRequestsPerConnection, 0);
});

test('fault: abort 50% of 1,000 requests, delay decided independently', (t) => {
  const r = new ServiceResilience(cfg({ fault: { abortStatus: 503, abortPercent: 50, delayMs: 200, delayPercent: 25 } }), { random: sequence(1000) });
  let aborted = 0;
  let delayed = 0;
  let both = 0;
  for (let i = 0; i < 1000; i++) {
    const f = r.fault();
    if (f.abortStatus) {
      t.is(f.abortStatus, 503);
      aborted++;
    }
    if (f.delayMs) {
      t.is(f.delayMs, 200);
      delayed++;
    }
    if (f.abortStatus && f.delayMs) both++;
  }
  t.true(Math.abs(aborted - 500) <= 50, `aborted ${aborted}`);
  t.true(Math.abs(delayed - 250) <= 50, `delayed ${delayed}`);
  t.true(both > 0, 'a request can be delayed and aborted');
});

test('fault percentages take fractions, 0 and 100', (t) => {
  const r = new ServiceResilience(cfg({ fault: { abortStatus: 500, abortPercent: 0.5 } }), { random: sequence(10_000) });
  let aborted = 0;
  for (let i = 0; i < 10_000; i++) if (r.fault().abortStatus) aborted++;
  t.is(aborted, 50);
  r.update(cfg({ fault: { abortStatus: 500, abortPercent: 100, delayMs: 10, delayPercent: 0 } }));
  for (let i = 0; i < 100; i++) t.deepEqual(r.fault(), { delayMs: 0, abortStatus: 500 });
});

test('rate limit: starts full, refills tokensPerFill per interval, never above maxTokens', (t) => {
  const c = clock();
  const r = new ServiceResilience(cfg({ rateLimit: { maxTokens: 3, tokensPerFill: 2, fillIntervalMs: 100 } }), { now: c.now });
  t.deepEqual([r.takeToken(), r.takeToken(), r.takeToken(), r.takeToken()], [true, true, true, false]);
  c.t += 99;
  t.false(r.takeToken());
  c.t += 1;
  t.deepEqual([r.takeToken(), r.takeToken(), r.takeToken()], [true, true, false]);
  c.t += 10_000;
  t.deepEqual([r.takeToken(), r.takeToken(), r.takeToken(), r.takeToken()], [true, true, true, false]);
  // Partial intervals are not lost: 50 + 50 ms make one fill.
  c.t += 50;
  t.false(r.takeToken());
  c.t += 50;
  t.true(r.takeToken());
});

test('rate limit in real time: a 20 ms interval refills', async (t) => {
  const r = new ServiceResilience(cfg({ rateLimit: { maxTokens: 2, tokensPerFill: 1, fillIntervalMs: 20 } }));
  t.true(r.takeToken());
  t.true(r.takeToken());
  t.false(r.takeToken());
  await sleep(45);
  t.true(r.takeToken());
});

test('rate limit update keeps the tokens left, capped at the new maximum', (t) => {
  const c = clock();
  const r = new ServiceResilience(cfg({ rateLimit: { maxTokens: 10, tokensPerFill: 1, fillIntervalMs: 1000 } }), { now: c.now });
  for (let i = 0; i < 8; i++) r.takeToken();
  r.update(cfg({ rateLimit: { maxTokens: 5, tokensPerFill: 1, fillIntervalMs: 1000 } }));
  t.deepEqual([r.takeToken(), r.takeToken(), r.takeToken()], [true, true, false]);
  r.update(cfg({ rateLimit: { maxTokens: 5, tokensPerFill: 1, fillIntervalMs: 1000 }, fault: { abortStatus: 500, abortPercent: 0 } }));
  t.false(r.takeToken(), 'an unrelated change does not refill the bucket');
  r.update(null);
  t.true(r.takeToken());
  r.update(cfg({ rateLimit: { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 1000 } }));
  t.deepEqual([r.takeToken(), r.takeToken()], [true, false], 'a new limit starts full');
});

test('circuit breaker: maxConnections at once, maxPendingRequests queued FIFO, the rest refused', async (t) => {
  const r = new ServiceResilience(cfg({ connectionPool: { maxConnections: 2, maxPendingRequests: 2 } }));
  const a = await r.admit();
  const b = await r.admit();
  t.truthy(a);
  t.truthy(b);
  const order: string[] = [];
  const c = r.admit().then((rel) => (order.push('c'), rel));
  const d = r.admit().then((rel) => (order.push('d'), rel));
  t.is(await r.admit(), null, 'queue full → 503 UO');
  t.deepEqual(r.inFlight, { active: 2, pending: 2 });
  a!();
  a!(); // a second release is ignored
  const cr = await c;
  t.truthy(cr);
  t.deepEqual(order, ['c']);
  t.deepEqual(r.inFlight, { active: 2, pending: 1 });
  b!();
  const dr = await d;
  t.deepEqual(order, ['c', 'd']);
  cr!();
  dr!();
  t.deepEqual(r.inFlight, { active: 0, pending: 0 });
});

test('circuit breaker: 0 pending means an unlimited queue; an aborted waiter leaves the queue', async (t) => {
  const r = new ServiceResilience(cfg({ connectionPool: { maxConnections: 1 } }));
  const first = await r.admit();
  const ac = new AbortController();
  const gaveUp = r.admit(ac.signal);
  const waiting = Array.from({ length: 50 }, () => r.admit());
  t.is(r.inFlight.pending, 51);
  ac.abort();
  t.is(await gaveUp, null);
  t.is(r.inFlight.pending, 50);
  first!();
  const next = await waiting[0]!;
  t.truthy(next);
  t.is(r.inFlight.active, 1);
  // Raising the limit admits the queue at once.
  r.update(cfg({ connectionPool: { maxConnections: 100 } }));
  const rest = await Promise.all(waiting.slice(1));
  t.true(rest.every((x) => typeof x === 'function'));
  t.deepEqual(r.inFlight, { active: 50, pending: 0 });
});

test('outlier detection: consecutive 5xx eject; a success resets the count', (t) => {
  const c = clock();
  const r = new ServiceResilience(cfg({ outlierDetection: { consecutive5xxErrors: 3, baseEjectionMs: 1000, maxEjectionPercent: 100 } }), { now: c.now });
  r.record('a', false);
  r.record('a', false);
  r.record('a', true);
  r.record('a', false);
  r.record('a', false);
  t.false(r.ejected('a'));
  r.record('a', false);
  t.true(r.ejected('a'));
  t.false(r.ejected('never-seen'));
});

test('outlier detection: the nth ejection lasts n × baseEjectionMs, and ends by itself', (t) => {
  const c = clock();
  const r = new ServiceResilience(cfg({ outlierDetection: { consecutive5xxErrors: 1, baseEjectionMs: 1000, maxEjectionPercent: 100 } }), { now: c.now });
  r.record('a', false);
  c.t += 999;
  t.true(r.ejected('a'));
  c.t += 1;
  t.false(r.ejected('a'));
  r.record('a', false);
  c.t += 1999;
  t.true(r.ejected('a'), 'second ejection: 2 s');
  c.t += 1;
  t.false(r.ejected('a'));
  r.record('a', false);
  c.t += 2999;
  t.true(r.ejected('a'), 'third ejection: 3 s');
  c.t += 1;
  t.false(r.ejected('a'));
});

test('outlier detection: ejects while less than maxEjectionPercent of the endpoints seen are out, and always one', (t) => {
  const c = clock();
  const r = new ServiceResilience(cfg({ outlierDetection: { consecutive5xxErrors: 1, baseEjectionMs: 1000, maxEjectionPercent: 50 } }), { now: c.now });
  for (const k of ['a', 'b', 'c', 'd']) r.record(k, true);
  r.record('a', false);
  r.record('b', false);
  r.record('c', false);
  t.deepEqual(['a', 'b', 'c', 'd'].map((k) => r.ejected(k)), [true, true, false, false]);
  // Envoy's rule: with 10 % of two endpoints, the one bad endpoint is still ejected.
  const small = new ServiceResilience(cfg({ outlierDetection: { consecutive5xxErrors: 1, baseEjectionMs: 1000, maxEjectionPercent: 10 } }), { now: c.now });
  small.record('x', true);
  small.record('y', false);
  t.deepEqual([small.ejected('x'), small.ejected('y')], [false, true]);
  small.record('x', false);
  t.false(small.ejected('x'), 'but not the second');
  // When an ejection ends, room opens for the next failing endpoint.
  c.t += 1000;
  r.record('c', false);
  t.deepEqual(['a', 'b', 'c', 'd'].map((k) => r.ejected(k)), [false, false, true, false]);
  // Endpoints that left the Service stop counting.
  r.retain(['c']);
  t.true(r.ejected('c'));
});

test('outlier detection in real time: a 30 ms ejection ends', async (t) => {
  const r = new ServiceResilience(cfg({ outlierDetection: { consecutive5xxErrors: 2, baseEjectionMs: 30, maxEjectionPercent: 100 } }));
  r.record('10.0.0.1:8080', false);
  r.record('10.0.0.1:8080', false);
  t.true(r.ejected('10.0.0.1:8080'));
  await sleep(50);
  t.false(r.ejected('10.0.0.1:8080'));
});

test('maxRequestsPerConnection follows updates', (t) => {
  const r = new ServiceResilience(cfg({ connectionPool: { maxRequestsPerConnection: 7 } }));
  t.is(r.maxRequestsPerConnection, 7);
  r.update(null);
  t.is(r.maxRequestsPerConnection, 0);
});

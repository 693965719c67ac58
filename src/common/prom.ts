// prom-client's Counter, Gauge and Registry, required from its lib/ files rather than its index.
// The index also loads Histogram, Summary (with tdigest), the Pushgateway (http, https, zlib),
// the cluster aggregator and the default metrics (with @opentelemetry/api): ~30 ms of a
// restarted ztunnel's module loading, before it can serve (ARCHITECTURE.md, "Crash"). These are
// the same classes as the index's (one module instance per file), so a registry made here
// collects metrics made from the index and the other way round.
import { createRequire } from 'node:module';
import type * as prom from 'prom-client';

const require = createRequire(import.meta.url);

export const Counter = require('prom-client/lib/counter.js') as typeof prom.Counter;
export const Gauge = require('prom-client/lib/gauge.js') as typeof prom.Gauge;
export const Registry = require('prom-client/lib/registry.js') as typeof prom.Registry;
export type Counter<T extends string = string> = prom.Counter<T>;
export type Gauge<T extends string = string> = prom.Gauge<T>;
export type Registry = prom.Registry;

/** prom-client's default metrics that come without a library of their own (lib/defaultMetrics.js's list). */
const DEFAULT_METRICS = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  'processResources',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
] as const;

/**
 * The process's own health on `registry`: the same series as prom-client's
 * collectDefaultMetrics (process_*, nodejs_*), without the index's other modules and without
 * @opentelemetry/api, which its CPU counters load only to put trace ids on exemplars (which
 * these registries never enable). Measured in ztunnel (issue 16): 1.5 MB of resident memory
 * that served nothing.
 */
export function collectProcessMetrics(registry: Registry): void {
  // process_cpu_*: lib/metrics/processCpuTotal.js's series, all three set by the first one's
  // collect at scrape time, as there.
  let last = process.cpuUsage();
  const registers = [registry];
  new Counter({
    name: 'process_cpu_user_seconds_total',
    help: 'Total user CPU time spent in seconds.',
    registers,
    collect() {
      const now = process.cpuUsage();
      const [user, sys] = [now.user - last.user, now.system - last.system];
      last = now;
      this.inc(user / 1e6);
      system.inc(sys / 1e6);
      total.inc((user + sys) / 1e6);
    },
  });
  const system = new Counter({ name: 'process_cpu_system_seconds_total', help: 'Total system CPU time spent in seconds.', registers });
  const total = new Counter({ name: 'process_cpu_seconds_total', help: 'Total user and system CPU time spent in seconds.', registers });
  for (const name of DEFAULT_METRICS) {
    (require(`prom-client/lib/metrics/${name}.js`) as (r: Registry, c: object) => void)(registry, { eventLoopMonitoringPrecision: 10 });
  }
}

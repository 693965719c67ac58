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

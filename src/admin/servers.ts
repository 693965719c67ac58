// ztunnel's three HTTP servers, on Istio's ports (REFERENCE.md "Istio ambient"):
//   - admin, 127.0.0.1:15000 — /config_dump, /logging, /healthz (local only: it shows every
//     workload and certificate on the node and can turn on debug logs);
//   - metrics, :15020 — /metrics and /stats/prometheus (the path Istio's scrape annotations use);
//   - readiness, :15021 — /healthz/ready, 200 only when the injected check says ready.
// Everything they show comes from injected providers, so they hold no state of their own.
import type { Registry } from 'prom-client';
import ipaddr from 'ipaddr.js';
import { logger } from '../common/log.ts';
import { listen, send, sendJson, type Listener } from './http.ts';
import { isLevel, LEVELS, type LogLevels } from './levels.ts';

const log = logger('admin');

/** Istio's ports, and why the hosts differ. */
export const ADMIN_DEFAULTS = Object.freeze({
  adminHost: '127.0.0.1',
  adminPort: 15000,
  /** Prometheus and the kubelet reach these from outside the ztunnel's netns. */
  metricsHost: '0.0.0.0',
  metricsPort: 15020,
  readinessHost: '0.0.0.0',
  readinessPort: 15021,
});

/** What /config_dump shows; each list is whatever the provider's owner keeps (ztunnel's dump
 * sections). Extra sections are passed through. */
export interface ConfigDump {
  workloads: unknown[];
  services: unknown[];
  policies: unknown[];
  certificates: unknown[];
  connections: unknown[];
  [section: string]: unknown;
}

export type Readiness = { ready: true } | { ready: false; reason: string };

// ---- admin ------------------------------------------------------------------------------------

export interface AdminServerOptions {
  host?: string;
  port?: number;
  configDump: () => ConfigDump | Promise<ConfigDump>;
  logLevels: LogLevels;
}

/**
 * JSON for config dumps: bytes fields of the config resources (addresses, CIDR addresses) as IP
 * text, other bytes as base64. JSON.stringify calls Buffer#toJSON before a replacer sees the
 * value, so the original is read from the holder.
 */
export function dumpReplacer(this: unknown, key: string, value: unknown): unknown {
  const orig = (this as Record<string, unknown> | null)?.[key];
  if (orig instanceof Uint8Array) {
    if (orig.length === 4 || orig.length === 16) return ipaddr.fromByteArray([...orig]).toString();
    return Buffer.from(orig).toString('base64');
  }
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Map) return Object.fromEntries(value);
  if (value instanceof Set) return [...value];
  return value;
}

const LOGGING_USAGE = `usage: POST /logging?level=<level> (every component), POST /logging?<component>=<level>, POST /logging?trace=<component>[,<component>…] (debug, like MESH_TRACE), POST /logging?reset; levels: ${LEVELS.join(', ')}\n`;

export function startAdminServer(o: AdminServerOptions): Promise<Listener> {
  return listen(
    'admin',
    o.host ?? ADMIN_DEFAULTS.adminHost,
    o.port ?? ADMIN_DEFAULTS.adminPort,
    async (req, url, res) => {
      switch (url.pathname) {
        case '/':
          return send(res, 200, ['/config_dump', '/logging', '/healthz'].join('\n') + '\n');
        case '/healthz':
          return send(res, 200, 'ok\n');
        case '/config_dump': {
          if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'use GET\n');
          const dump = await o.configDump();
          return sendJson(res, 200, dump, dumpReplacer);
        }
        case '/logging':
          return logging(req.method ?? 'GET', url, o.logLevels, res);
        default:
          return send(res, 404, `no such endpoint ${url.pathname}; try /config_dump, /logging, /healthz\n`);
      }
    },
    'a process with its admin port',
  );
}

function logging(method: string, url: URL, levels: LogLevels, res: import('node:http').ServerResponse): void {
  const params = [...url.searchParams];
  if (method === 'GET' && params.length === 0) return sendJson(res, 200, { levels: levels.levels() });
  if (method !== 'POST') return send(res, 405, `changing levels needs POST\n${LOGGING_USAGE}`);
  if (params.length === 0) return send(res, 400, LOGGING_USAGE);
  // Validate everything before changing anything: a bad request changes no level.
  const ops: (() => void)[] = [];
  for (const [k, v] of params) {
    if (k === 'reset') ops.push(() => levels.reset());
    else if (k === 'level') {
      if (!isLevel(v)) return send(res, 400, `unknown level "${v}"\n${LOGGING_USAGE}`);
      ops.push(() => levels.setAll(v));
    } else if (k === 'trace') {
      const names = v.split(',').map((s) => s.trim()).filter(Boolean);
      const unknown = names.filter((n) => n !== 'all' && !levels.has(n));
      if (unknown.length) return send(res, 400, `unknown component(s) ${unknown.join(', ')}; known: ${levels.components().join(', ')}\n`);
      ops.push(() => (names.includes('all') ? levels.setAll('debug') : names.forEach((n) => levels.set(n, 'debug'))));
    } else {
      if (!levels.has(k)) return send(res, 400, `unknown component "${k}"; known: ${levels.components().join(', ')}\n${LOGGING_USAGE}`);
      if (!isLevel(v)) return send(res, 400, `unknown level "${v}" for ${k}\n${LOGGING_USAGE}`);
      ops.push(() => levels.set(k, v));
    }
  }
  for (const op of ops) op();
  const now = levels.levels();
  log.info({ levels: now }, 'log levels changed');
  sendJson(res, 200, { levels: now });
}

// ---- metrics ----------------------------------------------------------------------------------

export interface MetricsServerOptions {
  host?: string;
  port?: number;
  /** Served in order; their metric names must not collide. */
  registries: Registry[];
}

export function startMetricsServer(o: MetricsServerOptions): Promise<Listener> {
  const type = o.registries[0]?.contentType ?? 'text/plain; version=0.0.4; charset=utf-8';
  return listen(
    'metrics',
    o.host ?? ADMIN_DEFAULTS.metricsHost,
    o.port ?? ADMIN_DEFAULTS.metricsPort,
    async (req, url, res) => {
      if (url.pathname !== '/metrics' && url.pathname !== '/stats/prometheus') return send(res, 404, 'metrics are at /metrics (and /stats/prometheus)\n');
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'use GET\n');
      const texts = await Promise.all(o.registries.map((r) => r.metrics()));
      send(res, 200, texts.map((t) => (t.endsWith('\n') || t === '' ? t : `${t}\n`)).join(''), type);
    },
    'Istio ztunnel',
  );
}

// ---- readiness --------------------------------------------------------------------------------

export interface ReadinessServerOptions {
  host?: string;
  port?: number;
  /** Whether ztunnel can serve: config synced, certificates ready, listeners up. */
  ready: () => Readiness | Promise<Readiness>;
}

export function startReadinessServer(o: ReadinessServerOptions): Promise<Listener> {
  return listen(
    'readiness',
    o.host ?? ADMIN_DEFAULTS.readinessHost,
    o.port ?? ADMIN_DEFAULTS.readinessPort,
    async (req, url, res) => {
      if (url.pathname !== '/healthz/ready') return send(res, 404, 'readiness is at /healthz/ready\n');
      let r: Readiness;
      try {
        r = await o.ready();
      } catch (e) {
        r = { ready: false, reason: `readiness check failed: ${(e as Error).message}` };
      }
      if (r.ready) return send(res, 200, 'ready\n');
      send(res, 503, `not ready: ${r.reason}\n`);
    },
    'Istio ztunnel',
  );
}

// ---- all three --------------------------------------------------------------------------------

export interface ZtunnelServersOptions {
  admin: AdminServerOptions;
  metrics: MetricsServerOptions;
  readiness: ReadinessServerOptions;
}

export interface ZtunnelServers {
  admin: Listener;
  metrics: Listener;
  readiness: Listener;
  /** Closes all three gracefully (readiness first, so probes fail while the rest drains). */
  close(graceMs?: number): Promise<void>;
}

export async function startZtunnelServers(o: ZtunnelServersOptions): Promise<ZtunnelServers> {
  const started: Listener[] = [];
  try {
    const readiness = await startReadinessServer(o.readiness);
    started.push(readiness);
    const admin = await startAdminServer(o.admin);
    started.push(admin);
    const metrics = await startMetricsServer(o.metrics);
    started.push(metrics);
    return {
      admin,
      metrics,
      readiness,
      async close(graceMs) {
        await readiness.close(graceMs);
        await Promise.all([admin.close(graceMs), metrics.close(graceMs)]);
      },
    };
  } catch (e) {
    await Promise.all(started.map((l) => l.close(0)));
    throw e;
  }
}

// The admin (15000), metrics (15020) and readiness (15021) HTTP servers of the mesh's proxies: ztunnel and the waypoint.
export { AdminListenError, type AdminErrorCode } from './errors.ts';
export type { Listener } from './http.ts';
export { isLevel, LEVELS, LogLevels, type LevelName } from './levels.ts';
export {
  ADMIN_DEFAULTS,
  dumpReplacer,
  startAdminServer,
  startMetricsServer,
  startReadinessServer,
  startZtunnelServers,
  type AdminServerOptions,
  type ConfigDump,
  type MetricsServerOptions,
  type Readiness,
  type ReadinessServerOptions,
  type ZtunnelServers,
  type ZtunnelServersOptions,
} from './servers.ts';

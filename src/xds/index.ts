// The config stream (proto/mesh/config.proto): a delta discovery server and client over gRPC,
// independent of Kubernetes. The controller fills a ConfigStore and serves it with ConfigServer;
// node agents and ztunnels follow it with ConfigClient.
export { ConfigClient } from './client.ts';
export type { ChangeEvent, ClientEntry, ClientStatus, ConfigClientOptions, RejectEvent, Validator } from './client.ts';
export { PROTO_PATH, TYPE_URLS } from './codec.ts';
export { XdsError } from './errors.ts';
export type { XdsErrorCode } from './errors.ts';
export * from './resources.ts';
export * from './routes.ts';
export { ConfigServer, uriSans } from './server.ts';
export type {
  AckEvent,
  Authorizer,
  ConfigServerOptions,
  NackEvent,
  NodeInfo,
  PeerInfo,
  Rejection,
  ResourceFilter,
  ServerStatus,
  StreamStatus,
  TypeStatus,
} from './server.ts';
export { ConfigStore, sameValue } from './store.ts';
export type { ChangeSet, Entry, Transaction } from './store.ts';

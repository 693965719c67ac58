// HBONE: HTTP/2 CONNECT over mutual TLS 1.3 (ALPN h2) on port 15008, as Istio's ztunnel speaks
// it. The server side (HboneServer) is what ztunnel inbound builds on; the client side (HbonePool)
// is what ztunnel outbound builds on. Both are transport only: authorization, addressing and
// metrics belong to their callers.
export {
  HboneArgumentError,
  HboneBadRequestError,
  HboneClosedError,
  HboneConnectError,
  HboneDeniedError,
  HboneError,
  HbonePeerIdentityError,
  HboneSessionError,
  HboneStatusError,
  HboneStreamError,
  HboneTlsError,
  HboneUpstreamError,
  type HboneErrorCode,
} from './errors.ts';
export {
  formatAuthority,
  formatBaggage,
  formatForwarded,
  parseAuthority,
  parseBaggage,
  parseForwarded,
  parseTraceparent,
  type ForwardedFor,
  type HostPort,
  type TraceParent,
} from './headers.ts';
export { CONNECTION_WINDOW, MAX_FRAME_SIZE, MAX_STREAMS, PING_INTERVAL_MS, STREAM_WINDOW } from './h2.ts';
export { HboneServer, type HboneDecision, type HboneHandler, type HboneServerOptions, type HboneTunnel, type TunnelResult } from './server.ts';
export { HbonePool, type DialHook, type HboneConnectOptions, type HbonePoolOptions, type HboneSource, type HboneStream, type PoolStats } from './pool.ts';
export { splice, type SpliceCounter, type SpliceResult } from './splice.ts';

// The typed face of the datapath: what the agent, ztunnel and the tests import.
export { AddressError, formatMeshAddress, meshAddress, parseCidr, rawAddress } from './addr.ts';
export { BpfMap, Datapath, type DatapathOptions, EVENT_BATCH_MS, MAP_NAMES, type MapName } from './datapath.ts';
export { DatapathError } from './errors.ts';
export type { DatapathEvent, OrigDst } from './layout.ts';
export * as layout from './layout.ts';
export { bpfObjectPath, native } from './native.ts';
export {
  boundPort,
  closeFd,
  DELIVERY_MARK,
  DELIVERY_RULE_PRIORITY,
  DELIVERY_TABLE,
  type InNetnsSocketOptions,
  netnsCookie,
  NetnsSockets,
  setDeliveryRouting,
  setNetnsSysctl,
  SYSCTL_NET_DIR,
  socketInNetns,
} from './netns.ts';
export { openPinnedMap, ZtunnelMaps } from './pinned.ts';

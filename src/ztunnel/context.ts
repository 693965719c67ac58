// What ztunnel's proxy paths (outbound, inbound HBONE, inbound plaintext) share: the settings, the
// mesh state, certificates, telemetry, the connection manager and the pods' pools. ztunnel.ts
// builds it; the paths take it and never reach into each other (istio/ztunnel's ProxyInputs).
import type { ZtunnelMaps } from '../datapath/index.ts';
import type { SecretManager, SpiffeId } from '../identity/index.ts';
import type { MeshState } from '../state/index.ts';
import type { Workload } from '../xds/index.ts';
import type { ConnectionPolicy } from '../zds/protocol.ts';
import type { ConnectionManager } from './connection-manager.ts';
import type { PodProxy } from './pod.ts';
import type { Telemetry } from './telemetry/index.ts';

export interface ZtunnelConfig {
  nodeName: string;
  xdsAddress: string;
  caAddress: string;
  serverName: string;
  trustDomain: string;
  caRoots: string;
  token: () => string | Promise<string>;
  bpffsDir: string;
  zdsSocket: string;
  /** SO_MARK on every socket ztunnel opens in a pod (listeners, dials, HBONE outer connections,
   * deliveries from 127.0.0.6): the mark the datapath was loaded with (MESH_MARK), or the capture
   * programs would take ztunnel's own connections for the app's. */
  mark: number;
  /** ztunnel's own identity on the config stream (the node DaemonSet's). */
  namespace: string;
  serviceAccount: string;
}

/** How long a connection accepted before the config has synced waits for it. */
export const SYNC_WAIT_MS = 10_000;

/** One inbound connection as the destination judges it. */
export interface InboundConnection {
  srcIp: string;
  srcIdentity: SpiffeId | undefined;
  dst: Workload;
  dstIp: string;
  dstPort: number;
}

/** A destination's decision: `deny` says why it refused (absent: allowed); `policy` names the
 * policy that decided, when one did (for the flow's --print-policy-names). */
export interface InboundDecision {
  deny?: string | undefined;
  policy?: ConnectionPolicy | undefined;
}

/** Decides an inbound connection at the destination: undefined allows, a string is the reason to
 * deny; a decision object also names the deciding policy. */
export type InboundPolicy = (conn: InboundConnection, state: MeshState) => string | InboundDecision | undefined;

export interface ProxyContext {
  readonly cfg: ZtunnelConfig;
  readonly state: MeshState;
  readonly telemetry: Telemetry;
  readonly secrets: SecretManager;
  readonly maps: ZtunnelMaps;
  readonly connections: ConnectionManager;
  readonly policy: InboundPolicy;
  /** Every type of the config has arrived: until then outbound is refused (fail closed). */
  configSynced(): boolean;
  /**
   * Resolves true once the config has synced, or false after `timeoutMs`. A connection accepted
   * by a ztunnel that has just started (a handover's new listeners, a restart after a crash)
   * waits for it rather than being refused.
   */
  whenSynced(timeoutMs: number): Promise<boolean>;
  /** The pod's Workload from the config stream, or what ZDS said about it while that is on its way. */
  workloadOf(pod: PodProxy): Workload | undefined;
  identityOf(w: Workload): SpiffeId;
}

/** A socket's address without the IPv4-mapped prefix of a dual-stack socket. */
export function plainAddr(a: string | undefined): string {
  return (a ?? '').replace(/^::ffff:/, '');
}

// Flows as @grpc/proto-loader decodes proto/mesh/observer.proto (camelCase fields, enums as
// their names, 64-bit integers as numbers: nanosecond times lose only sub-microsecond digits).
import { fileURLToPath } from 'node:url';
import * as loader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';

export const OBSERVER_PROTO = fileURLToPath(new URL('../../proto/mesh/observer.proto', import.meta.url));

export type Verdict = 'VERDICT_UNKNOWN' | 'FORWARDED' | 'DROPPED' | 'ERROR';
export type TrafficDirection = 'TRAFFIC_DIRECTION_UNKNOWN' | 'INGRESS' | 'EGRESS';
export type LostEventSource = 'UNKNOWN_LOST_EVENT_SOURCE' | 'KERNEL_RING_BUFFER' | 'FLOW_RING_BUFFER' | 'ZTUNNEL_RECORDS' | 'RELAY_NODE';

export interface Endpoint {
  namespace: string;
  podName: string;
  identity: string;
  serviceAccount: string;
  workload: string;
  nodeName: string;
  /** "key=value"; absent on flows made before labels were known (and always present once decoded). */
  labels?: string[];
}

/** An authorization policy that decided a flow (Hubble's flow.Policy). */
export interface PolicyRef {
  name: string;
  namespace: string;
  kind: 'AuthorizationPolicy' | 'PeerAuthentication' | string;
}

export type L7FlowType = 'UNKNOWN_L7_TYPE' | 'REQUEST' | 'RESPONSE';

export interface KernelDecision {
  decision: string;
  reason: string;
  socketCookie: number;
  redirectPort: number;
  timeUnixNano: number;
}

export interface Flow {
  timeUnixNano: number;
  uuid: string;
  nodeName: string;
  verdict: Verdict;
  dropReasonDesc: string;
  ip: { source: string; destination: string; ipVersion: number; encrypted: boolean };
  tcp: { sourcePort: number; destinationPort: number };
  source: Endpoint;
  destination: Endpoint;
  type: 'FLOW_TYPE_UNKNOWN' | 'L3_L4' | 'L7';
  trafficDirection: TrafficDirection;
  destinationService: string;
  reporter: string;
  protocol: string;
  bytesSent: number;
  bytesReceived: number;
  durationMs: number;
  responseFlags: string;
  summary: string;
  kernel: KernelDecision | null;
  l7: { latencyNs: number; http: { code: number; method: string; url: string; protocol: string } | null; type?: L7FlowType } | null;
  // Added for issue 17 (Hubble parity); optional so that records made before stay valid.
  sourceService?: string;
  ingressAllowedBy?: PolicyRef[];
  ingressDeniedBy?: PolicyRef[];
  egressAllowedBy?: PolicyRef[];
  egressDeniedBy?: PolicyRef[];
  /** Why the mesh did not capture this connection ('' when it did, or it is not known). */
  notCapturedReason?: string;
  traceId?: string;
}

export interface FlowFilter {
  sourcePod?: string[];
  destinationPod?: string[];
  sourceIp?: string[];
  destinationIp?: string[];
  sourceIdentity?: string[];
  destinationIdentity?: string[];
  verdict?: Verdict[];
  protocol?: string[];
  sourcePort?: number[];
  destinationPort?: number[];
  nodeName?: string[];
  trafficDirection?: TrafficDirection[];
  destinationService?: string[];
  sourceLabel?: string[];
  destinationLabel?: string[];
  sourceService?: string[];
  httpStatusCode?: string[];
  httpMethod?: string[];
  httpPath?: string[];
  eventType?: string[];
}

export interface GetFlowsRequest {
  number?: number;
  first?: boolean;
  follow?: boolean;
  whitelist?: FlowFilter[];
  blacklist?: FlowFilter[];
  sinceUnixNano?: number;
  untilUnixNano?: number;
}

export interface LostEvent {
  source: LostEventSource;
  numEventsLost: number;
  detail: string;
}

export interface NodeStatusEvent {
  state: string;
  nodeNames: string[];
  message: string;
}

export type GetFlowsResponse = { nodeName: string; timeUnixNano: number } & (
  | { responseTypes: 'flow'; flow: Flow }
  | { responseTypes: 'lostEvents'; lostEvents: LostEvent }
  | { responseTypes: 'nodeStatus'; nodeStatus: NodeStatusEvent }
);

export interface ServerStatus {
  numFlows: number;
  maxFlows: number;
  seenFlows: number;
  flowsRate: number;
  uptimeNs: number;
  numConnectedNodes: number;
  numUnavailableNodes: number;
  unavailableNodes: string[];
  kernelEventsLost: number;
  ztunnelRecordsLost: number;
  flowsOverwritten: number;
  version: string;
}

export interface NodeInfo {
  name: string;
  address: string;
  state: 'CONNECTED' | 'UNAVAILABLE';
  version: string;
  numFlows: number;
  maxFlows: number;
  seenFlows: number;
  uptimeNs: number;
  error: string;
  enrolledPods: number;
  ztunnelConnected: boolean;
  configClients: { id: string; inSync: boolean; resources: number; nacks: number; connectedAt: string }[];
}

const definition = loader.loadSync(OBSERVER_PROTO, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
const pkg = grpc.loadPackageDefinition(definition) as unknown as { mesh: { observer: { v1: { Observer: grpc.ServiceClientConstructor } } } };
export const ObserverService = pkg.mesh.observer.v1.Observer;

/** Nanoseconds since the epoch, now. */
export function nowNs(): number {
  return Date.now() * 1e6;
}

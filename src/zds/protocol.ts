// ZDS: how the node agent tells ztunnel which pods are in the mesh on this node (after Istio's
// ztunnel/CNI "zds" protocol, over newline-delimited JSON instead of protobuf). The agent serves a
// unix socket; ztunnel connects, receives a snapshot and then changes, and acknowledges each.
// Istio passes the pod's netns as an fd (SCM_RIGHTS); Node's net module cannot, so we pass the
// netns path and ztunnel opens its in-pod sockets at once (a socket keeps its netns alive).
// ztunnel also sends each completed connection back (ZdsFlow): the agent joins it with the
// kernel's decision into a flow.
import type { AccessLogEntry, ResponseFlag } from '../telemetry/index.ts';

/** A completed connection as ztunnel reports it to the agent: its access-log record and what the
 * flow needs besides (the agent joins it with the kernel's decision). */
export interface ConnectionRecord extends AccessLogEntry {
  /** Wall-clock milliseconds when the connection opened. */
  startMs: number;
  mtls: boolean;
  /** Istio's response_flags: "-" or why it failed (DENY, CONNECT, ...). */
  flags: ResponseFlag | '-';
  sockCookie?: string | undefined;
  outer?: { src: string; dst: string } | undefined;
  /** Refused before it was set up (no healthy endpoint, waypoint missing, config not synced…):
   * `error` says why. The agent shows it as a DROPPED flow. */
  refused?: boolean | undefined;
  /** The authorization policy that decided the connection at the destination, if one did. */
  policy?: ConnectionPolicy | undefined;
}

/** Which policy allowed or denied a connection ("namespace/name" split), for `--print-policy-names`. */
export interface ConnectionPolicy {
  namespace: string;
  name: string;
  kind: 'AuthorizationPolicy' | 'PeerAuthentication';
  allowed: boolean;
}


export interface ZdsPod {
  /** Kubernetes pod UID: ztunnel joins it with the Workload's podUid for identity and addresses. */
  uid: string;
  /** Empty in a snapshot when the agent has not located the pod's netns yet (just restarted):
   * ztunnel keeps serving the pod if it does, and opens nothing until an 'add' brings the path. */
  netnsPath: string;
  /** Decimal string: the key of this pod's entries in the datapath's maps. */
  netnsCookie: string;
  addresses: string[];
  /** The pod's name, namespace and service account, when the agent knows them before the
   * config stream does (enrolment at sandbox creation): ztunnel serves the pod with them. */
  workload?: { name: string; namespace: string; serviceAccount: string };
  /** The agent set up delivery routing in the pod's netns: ztunnel may connect to the app from
   * the client's own address, so the app sees who called it. Without it ztunnel uses 127.0.0.6. */
  transparent?: boolean;
}

/** agent → ztunnel */
export type ZdsMessage =
  | { type: 'snapshot'; pods: ZdsPod[] }
  | { type: 'add'; pod: ZdsPod }
  | { type: 'del'; uid: string; netnsCookie: string };

/** ztunnel → agent */
export interface ZdsAck {
  type: 'ack';
  uid: string;
  ok: boolean;
  error?: string;
}

/** ztunnel → agent: one completed connection, for the agent's flows. */
export interface ZdsFlow {
  type: 'flow';
  record: ConnectionRecord;
}

/** ztunnel → agent: records ztunnel had to drop (agent away, or not reading fast enough). */
export interface ZdsLost {
  type: 'lost';
  count: number;
}

export type ZdsReport = ZdsAck | ZdsFlow | ZdsLost;

// ztunnel's inbound decision: the controller's Authorizations (incl. compiled PeerAuthentication),
// evaluated at the destination with Istio's L4 semantics (src/authz).
import { logger } from '../common/log.ts';
import { evaluate } from '../authz/index.ts';
import type { ConnectionPolicy } from '../zds/protocol.ts';
import type { MeshState } from '../state/index.ts';
import type { InboundConnection, InboundDecision } from './context.ts';

const log = logger('authz');

/** Why the connection is denied (undefined: allowed). */
export const policyFromState = (conn: InboundConnection, state: MeshState): string | undefined => decisionFromState(conn, state).deny;

/** The decision with the policy that made it: what ztunnel enforces and reports in its flows. */
export const decisionFromState = (conn: InboundConnection, state: MeshState): InboundDecision => {
  // Fail closed in every window: before the policies have arrived, nothing is known to be allowed.
  if (!state.synced) return { deny: 'ztunnel has not yet received its full config (workloads, services and policies) from the controller; refused until it has (fail closed)' };
  const d = evaluate(
    { srcIp: conn.srcIp, srcIdentity: conn.srcIdentity, dstWorkload: conn.dst, dstIp: conn.dstIp, dstPort: conn.dstPort },
    state.policies(),
  );
  if (!d.allowed) log.debug({ src: conn.srcIp, dst: `${conn.dstIp}:${conn.dstPort}`, policy: d.policy, reason: d.reason }, 'connection denied');
  const policy = d.policy ? policyRef(d.policy, d.kind === 'strict-mtls' ? 'PeerAuthentication' : 'AuthorizationPolicy', d.allowed) : undefined;
  return d.allowed ? { policy } : { deny: d.reason, policy };
};

/** "namespace/name" → the flow's policy reference. */
function policyRef(key: string, kind: ConnectionPolicy['kind'], allowed: boolean): ConnectionPolicy {
  const i = key.indexOf('/');
  return { namespace: i < 0 ? '' : key.slice(0, i), name: i < 0 ? key : key.slice(i + 1), kind, allowed };
}

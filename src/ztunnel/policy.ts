// ztunnel's inbound decision: the controller's Authorizations (incl. compiled PeerAuthentication),
// evaluated at the destination with Istio's L4 semantics (src/authz).
import { logger } from '../common/log.ts';
import { evaluate } from '../authz/index.ts';
import type { InboundPolicy } from './context.ts';

const log = logger('authz');

export const policyFromState: InboundPolicy = (conn, state) => {
  // Fail closed in every window: before the policies have arrived, nothing is known to be allowed.
  if (!state.synced) return 'ztunnel has not yet received its full config (workloads, services and policies) from the controller; refused until it has (fail closed)';
  const d = evaluate(
    { srcIp: conn.srcIp, srcIdentity: conn.srcIdentity, dstWorkload: conn.dst, dstIp: conn.dstIp, dstPort: conn.dstPort },
    state.policies(),
  );
  if (!d.allowed) log.debug({ src: conn.srcIp, dst: `${conn.dstIp}:${conn.dstPort}`, policy: d.policy, reason: d.reason }, 'connection denied');
  return d.allowed ? undefined : d.reason;
};

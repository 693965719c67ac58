// Inbound plaintext (istio/ztunnel proxy/inbound_passthrough): a connection to a pod of this node
// from a client outside the mesh, steered by sk_lookup to ztunnel's in-pod socket on 15006. It
// has no identity: the waypoint admits nothing, STRICT refuses it, and the L4 policies decide.
import type net from 'node:net';
import { ZTUNNEL_PORTS } from '../common/constants.ts';
import { logger } from '../common/log.ts';
import { splice } from '../hbone/index.ts';
import { type InboundConnection, plainAddr, type ProxyContext, SYNC_WAIT_MS } from './context.ts';
import { decideInbound, deliverAdmitted } from './inbound.ts';
import type { PodProxy } from './pod.ts';
import { formatAddr } from './telemetry/index.ts';

const log = logger('ztunnel');

export async function plaintextInbound(ctx: ProxyContext, pod: PodProxy, conn: net.Socket): Promise<void> {
  conn.on('error', () => {});
  // Judged with the full config only (policies included): a ztunnel that has just started waits.
  if (!ctx.configSynced() && !(await ctx.whenSynced(SYNC_WAIT_MS))) {
    log.info({ src: conn.remoteAddress }, 'plaintext connection refused: the config stream has not synced yet');
    conn.resetAndDestroy();
    return;
  }
  const dst = ctx.state.workloadByPodUid(pod.uid);
  const dstIp = plainAddr(conn.localAddress);
  const dstPort = conn.localPort ?? 0;
  const srcIp = plainAddr(conn.remoteAddress);
  const tracked = ctx.telemetry.connectionOpened({
    reporter: 'destination',
    source: ctx.state.workloadByIp(srcIp),
    destination: dst,
    mtls: false,
    src: { ip: srcIp, port: conn.remotePort ?? 0 },
    dst: { ip: dstIp, port: dstPort },
    outer: { src: formatAddr(srcIp, conn.remotePort ?? 0), dst: formatAddr(dstIp, dstPort) },
  });
  const c: InboundConnection | undefined = dst ? { srcIp, srcIdentity: undefined, dst, dstIp, dstPort } : undefined;
  // Delivering to one of ztunnel's own ports would come back to ztunnel (the delivery is made
  // inside the pod, where sk_lookup does not steer): a loop of connections. Refuse it.
  const decision = ZTUNNEL_PORTS.has(dstPort) ? { deny: `port ${dstPort} is one of ztunnel's own: not a destination` } : c ? decideInbound(ctx, c) : { deny: 'unknown destination workload' };
  tracked.decidedBy(decision.policy);
  const deny = decision.deny;
  if (deny || !c) {
    log.info({ src: srcIp, dst: `${dstIp}:${dstPort}`, reason: deny }, 'plaintext connection denied');
    tracked.close({ flags: 'DENY', error: deny });
    conn.destroy();
    return;
  }
  try {
    const { upstream, done, count, release } = await deliverAdmitted(ctx, pod, tracked, c, { port: conn.remotePort, close: () => conn.destroy() });
    const result = await splice(conn, upstream, count);
    release();
    done(result.error);
  } catch (e) {
    tracked.close({ flags: 'CONNECT', error: e as Error });
    conn.destroy();
  }
}

// Inbound (istio/ztunnel proxy/inbound): an HBONE tunnel to a pod of this node, its mutual TLS
// already verified by the pod's HboneServer. Admission (waypoint, then L4 policy) and delivery to
// the app are shared with the plaintext path (inbound-passthrough.ts).
import net from 'node:net';
import { HBONE_PORT, ZTUNNEL_PORTS } from '../common/constants.ts';
import { logger } from '../common/log.ts';
import type { HboneTunnel, SpliceCounter } from '../hbone/index.ts';
import { formatSpiffeId } from '../identity/index.ts';
import { type InboundConnection, type InboundDecision, type ProxyContext, SYNC_WAIT_MS } from './context.ts';
import type { PodProxy } from './pod.ts';
import { formatAddr, type TrackedConnection } from './telemetry/index.ts';

const log = logger('ztunnel');
/** How long ztunnel waits for the application to accept a connection it delivers. */
const DELIVERY_TIMEOUT_MS = 10_000;

/**
 * Whether an inbound connection may reach the app, at the destination: a workload behind a
 * waypoint (its own, or a Service's on that port) accepts only that waypoint's identities, so
 * dialling the pod directly cannot skip it (with the waypoint missing: nothing); then the L4
 * policies. Both inbound paths and their re-checks on config changes ask this one question.
 */
export function admitInbound(ctx: ProxyContext, c: InboundConnection): string | undefined {
  return decideInbound(ctx, c).deny;
}

/** admitInbound's answer with the policy that decided it, when one did. */
export function decideInbound(ctx: ProxyContext, c: InboundConnection): InboundDecision {
  for (const { via, address } of ctx.state.waypointsOf(c.dst, c.dstPort)) {
    const st = ctx.state.waypoint(address, ctx.cfg.trustDomain);
    if (st.problem) return { deny: `${via} uses ${st.problem}: refused until it is ready (fail closed)` };
    if (!c.srcIdentity || !st.identities.includes(formatSpiffeId(c.srcIdentity))) {
      return { deny: `${via} is behind waypoint ${st.hostname} and accepts connections only from it (${st.identities.join(', ')}); the peer is ${c.srcIdentity ? formatSpiffeId(c.srcIdentity) : 'unauthenticated'}` };
    }
  }
  const d = ctx.policy(c, ctx.state);
  return typeof d === 'string' ? { deny: d } : (d ?? {});
}

/**
 * Delivers an admitted connection to the app, counts its bytes, and keeps it under the rule that
 * admitted it: when a config change means it would no longer be admitted, `closeClient` and the
 * delivery are closed. The caller releases the guard when the connection ends.
 */
export async function deliverAdmitted(
  ctx: ProxyContext,
  pod: PodProxy,
  tracked: TrackedConnection,
  c: InboundConnection,
  client: { port?: number | undefined; close(): void },
): Promise<{ upstream: net.Socket; done: (error?: Error) => void; count: SpliceCounter; release: () => void }> {
  const upstream = await deliver(pod, c.dstIp, c.dstPort, c.srcIp, client.port);
  const { done, count } = ctx.connections.track(tracked, { direction: 'inbound', src: c.srcIp, dst: `${c.dstIp}:${c.dstPort}`, pod: pod.uid });
  const release = ctx.connections.guard(
    () => {
      const now = ctx.state.workloadByPodUid(pod.uid);
      return now ? admitInbound(ctx, { ...c, dst: now }) : 'the workload left the mesh';
    },
    (reason) => {
      client.close();
      upstream.destroy();
      done(new Error(`closed by policy: ${reason}`));
    },
  );
  return { upstream, done, count, release };
}

/** An HBONE tunnel to this pod: 200 with the delivered socket, or a refusal. */
export async function inboundHbone(ctx: ProxyContext, pod: PodProxy, t: HboneTunnel) {
  // Judged with the full config only (policies included): a ztunnel that has just started waits.
  if (!ctx.configSynced() && !(await ctx.whenSynced(SYNC_WAIT_MS))) return { status: 503 as const, reason: 'the destination ztunnel has not received its config yet' };
  const dst = ctx.state.workloadByPodUid(pod.uid);
  // The outer connection is made inside the source pod's netns, so its peer address is the
  // source pod's IP; `forwarded` is the client's claim and is not trusted for policy.
  const srcIp = t.peerAddress.host.replace(/^::ffff:/, '');
  const tracked = ctx.telemetry.connectionOpened({
    reporter: 'destination',
    source: ctx.state.workloadByIp(srcIp),
    sourceIdentity: t.peerIdentity,
    destination: dst,
    mtls: true,
    src: { ip: srcIp, port: t.forwardedFor?.port ?? t.peerAddress.port },
    dst: { ip: t.target.host, port: t.target.port },
    hboneAddr: `${t.target.host}:${t.target.port}`,
    outer: { src: formatAddr(srcIp, t.peerAddress.port), dst: formatAddr(t.target.host, HBONE_PORT) },
    ...(t.traceparent ? { traceparent: `${t.traceparent.version}-${t.traceparent.traceId}-${t.traceparent.parentId}-${t.traceparent.flags}` } : {}),
  });
  // A tunnel refused before it is set up is a flow too (DROPPED, with the reason), not only a 400.
  const bad = !dst || !pod.addresses.includes(t.target.host) ? `${t.target.host} is not an address of this pod` : ZTUNNEL_PORTS.has(t.target.port) ? `port ${t.target.port} is one of ztunnel's own: not a destination` : undefined;
  if (bad || !dst) {
    const reason = bad ?? 'unknown destination workload';
    tracked.close({ flags: 'CONNECT', error: reason, refused: true });
    return { status: 400 as const, reason };
  }
  const c: InboundConnection = { srcIp, srcIdentity: t.peerIdentity, dst, dstIp: t.target.host, dstPort: t.target.port };
  const decision = decideInbound(ctx, c);
  tracked.decidedBy(decision.policy);
  const deny = decision.deny;
  if (deny) {
    log.info({ src: srcIp, identity: formatSpiffeId(t.peerIdentity), dst: `${c.dstIp}:${c.dstPort}`, reason: deny }, 'HBONE connection denied');
    tracked.close({ flags: 'DENY', error: deny });
    return { status: 401 as const, reason: deny };
  }
  try {
    const { upstream, done, count, release } = await deliverAdmitted(ctx, pod, tracked, c, { close: () => t.abort() });
    upstream.on('close', () => {
      release();
      done();
    });
    return { status: 200 as const, upstream, count };
  } catch (e) {
    tracked.close({ flags: 'CONNECT', error: e as Error });
    return { status: 503 as const, reason: `the application at ${t.target.host}:${t.target.port} is unreachable: ${(e as Error).message}` };
  }
}

/**
 * Connects to the app inside the pod. From the client's own address when the pod has delivery
 * routing (the app sees who called it, as without the mesh); otherwise, or for a client of the
 * other address family, from 127.0.0.6 (::1), which sk_lookup leaves alone.
 */
function deliver(pod: PodProxy, ip: string, port: number, client: string, clientPort?: number): Promise<net.Socket> {
  const v6 = net.isIPv6(ip);
  let fd: number | undefined;
  let forget: (() => void) | undefined;
  if (pod.transparent && net.isIP(client) && net.isIPv6(client) === v6) {
    try {
      ({ fd, forget } = pod.deliverySocket(client, { ip, port }, clientPort));
    } catch (e) {
      log.warn({ pod: pod.uid, client, err: (e as Error).message }, 'cannot deliver from the client\'s address; using 127.0.0.6');
    }
  }
  fd ??= pod.dialSocket(v6 ? 6 : 4, v6 ? '::1' : '127.0.0.6');
  const sock = new net.Socket({ fd, readable: true, writable: true });
  sock.setNoDelay(true); // what we relay was already segmented by the client; Nagle only delays it
  // The tuple stays named until the socket closes: while it exists (and in TIME_WAIT) the kernel
  // matches the tuple to it before sk_lookup runs, so nothing from outside can use the name, and
  // a handshake that ends late (SYN cookies) still finds it.
  if (forget) sock.on('close', forget);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => sock.destroy(new Error(`no answer from the application within ${DELIVERY_TIMEOUT_MS} ms`)), DELIVERY_TIMEOUT_MS);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.connect({ host: ip, port });
  });
}

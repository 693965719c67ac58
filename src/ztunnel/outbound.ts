// Outbound (istio/ztunnel proxy/outbound): a connection the app made, redirected by connect4 to
// ztunnel's 127.0.0.1:15001 inside the app's pod. Its original destination comes from the
// datapath; a mesh destination is reached over HBONE (mutual TLS with the source workload's
// certificate), anything else in plain TCP from inside the source pod.
import net from 'node:net';
import { HBONE_PORT } from '../common/constants.ts';
import { logger } from '../common/log.ts';
import { formatBaggage, HboneDeniedError, type HboneSource, splice } from '../hbone/index.ts';
import { formatSpiffeId, type WorkloadCertificate } from '../identity/index.ts';
import type { HbonePool } from '../hbone/index.ts';
import type { Destination } from '../state/index.ts';
import type { Workload } from '../xds/index.ts';
import { plainAddr, type ProxyContext, SYNC_WAIT_MS } from './context.ts';
import type { PodProxy } from './pod.ts';

const log = logger('ztunnel');

/**
 * `pool` is the pod's HBONE client pool: passed by the listener that accepted the connection, so
 * a connection accepted while the pod's listeners are still opening has it too.
 */
export async function outbound(ctx: ProxyContext, pod: PodProxy, conn: net.Socket, pool: HbonePool): Promise<void> {
  conn.on('error', () => {});
  const orig = ctx.maps.takeOrigDst(pod.netnsCookie, plainAddr(conn.remoteAddress), conn.remotePort ?? 0);
  if (!orig) {
    log.warn({ peer: `${conn.remoteAddress}:${conn.remotePort}` }, 'no original destination recorded for an outbound connection; closing');
    conn.destroy();
    return;
  }
  // Without the full config, an unknown destination may be a mesh pod: passing it through in
  // plaintext would leak. A ztunnel that has just started (taking over from an old one, or
  // after a crash) holds the connection until the config stream has synced; past that, refuse
  // (fail closed).
  if (!ctx.configSynced() && !(await ctx.whenSynced(SYNC_WAIT_MS))) {
    const why = 'ztunnel has not yet received its full config from the controller: refused until it has (fail closed)';
    log.info({ dst: `${orig.address}:${orig.port}` }, 'outbound refused: the config stream has not synced yet');
    refuse(ctx, pod, conn, orig, why);
    conn.resetAndDestroy();
    return;
  }
  const dst = ctx.state.resolve(orig.address, orig.port);
  if ('error' in dst) {
    log.info({ dst: `${orig.address}:${orig.port}`, err: dst.error }, 'outbound refused');
    refuse(ctx, pod, conn, orig, dst.error);
    conn.destroy();
    return;
  }
  const src = ctx.workloadOf(pod);
  const hbone = dst.workload?.tunnelProtocol === 'HBONE';
  if (hbone && !src) {
    // Every pod ztunnel serves is in the mesh; without its workload there is no identity to
    // present, and plain TCP to a mesh destination would leak. Fail closed.
    const why = `ztunnel does not know pod ${pod.uid}'s workload (it is being removed, or the controller has not sent it): a mesh destination is reached only over mutual TLS; refused (fail closed)`;
    log.info({ dst: `${orig.address}:${orig.port}`, pod: pod.uid }, 'outbound refused: no workload for the source pod');
    refuse(ctx, pod, conn, orig, why);
    conn.resetAndDestroy();
    return;
  }
  const tracked = ctx.telemetry.connectionOpened({
    reporter: 'source',
    source: src,
    // Over HBONE the source proves this identity with the certificate ztunnel presents for it.
    sourceIdentity: hbone && src ? ctx.identityOf(src) : undefined,
    destination: dst.workload,
    destinationService: dst.service,
    mtls: hbone,
    // The app connected to 127.0.0.1:15001, so its socket's address is loopback; the pod's IP
    // is what the connection stands for (and what the app would have used).
    src: { ip: pod.addresses[0] ?? plainAddr(conn.remoteAddress), port: conn.remotePort ?? 0 },
    dst: { ip: orig.address, port: orig.port },
    hboneAddr: hbone ? `${dst.ip}:${dst.port}` : undefined,
    sockCookie: orig.sockCookie,
  });
  const info = { direction: 'outbound', src: `${pod.addresses[0]}`, dst: `${orig.address}:${orig.port}`, pod: pod.uid };
  const wp = waypointOf(ctx, dst);
  if (wp && 'refusal' in wp) {
    log.info({ dst: `${orig.address}:${orig.port}`, reason: wp.refusal }, 'outbound refused: the destination uses a waypoint');
    tracked.close({ flags: 'DENY', error: wp.refusal, refused: true });
    conn.resetAndDestroy();
    return;
  }
  if (wp && !src) {
    const why = `${wp.via} uses waypoint ${wp.hostname}, which only a mesh workload can reach (over HBONE): refused (fail closed)`;
    tracked.close({ flags: 'DENY', error: why, refused: true });
    conn.resetAndDestroy();
    return;
  }
  try {
    if (wp && src) {
      // Through the waypoint: HBONE to one of its endpoints, carrying the address the app
      // dialled (a Service's VIP and port, or the pod's) — the waypoint routes from there.
      const stream = await pool.connect({
        source: await sourceOf(ctx, src),
        dstAddr: { host: wp.address, port: HBONE_PORT },
        expectedIdentities: wp.identities,
        authority: { host: orig.address, port: orig.port },
        forwardedFor: { host: pod.addresses[0] ?? plainAddr(conn.localAddress), ...(conn.remotePort ? { port: conn.remotePort } : {}) },
        baggage: baggageOf(src),
        ...(tracked.traceparent ? { traceparent: tracked.traceparent } : {}),
      });
      const { done, count } = ctx.connections.track(tracked, info);
      done((await splice(conn, stream, count)).error);
    } else if (hbone && src && dst.workload) {
      const stream = await pool.connect({
        source: await sourceOf(ctx, src),
        dstAddr: { host: dst.ip, port: HBONE_PORT },
        expectedIdentities: expectedOf(ctx, dst.workload),
        authority: { host: dst.ip, port: dst.port },
        forwardedFor: { host: pod.addresses[0] ?? plainAddr(conn.localAddress) },
        baggage: baggageOf(src),
        ...(tracked.traceparent ? { traceparent: tracked.traceparent } : {}),
      });
      const { done, count } = ctx.connections.track(tracked, info);
      done((await splice(conn, stream, count)).error);
    } else {
      const up = new net.Socket({ fd: pod.dialSocket(net.isIPv6(dst.ip) ? 6 : 4), readable: true, writable: true });
      up.setNoDelay(true);
      up.connect({ host: dst.ip, port: dst.port });
      const { done, count } = ctx.connections.track(tracked, info);
      done((await splice(conn, up, count)).error);
    }
  } catch (e) {
    log.info({ dst: `${dst.ip}:${dst.port}`, err: (e as Error).message }, 'outbound connection failed');
    // A 401 from the destination is its policy speaking: a denial, not a connect failure.
    tracked.close({ flags: e instanceof HboneDeniedError ? 'DENY' : 'CONNECT', error: e as Error });
    conn.destroy();
  }
}

// Per-connection work that depends only on the certificate or the workload is done once per
// certificate or workload object (both are replaced, never mutated, when they change): a new
// connection per request spent ~5% of ztunnel's CPU re-deriving them (issue 16).
const sources = new WeakMap<WorkloadCertificate, HboneSource>();
const expected = new WeakMap<Workload, readonly string[]>();
const baggages = new WeakMap<Workload, string>();

/** The source workload's HBONE credentials: the current certificate, no await when it is cached. */
function sourceOf(ctx: ProxyContext, src: Workload): HboneSource | Promise<HboneSource> {
  const id = ctx.identityOf(src);
  const cert = ctx.secrets.cached(id);
  return cert ? credentials(cert) : ctx.secrets.fetchCertificate(id).then(credentials);
}

function credentials(cert: WorkloadCertificate): HboneSource {
  let s = sources.get(cert);
  if (!s) {
    s = { identity: formatSpiffeId(cert.identity), key: cert.key, certChain: cert.certChain, roots: cert.roots, notAfter: cert.leaf.notAfter };
    sources.set(cert, s);
  }
  return s;
}

/** The identities the destination workload may present (its own). */
function expectedOf(ctx: ProxyContext, w: Workload): readonly string[] {
  let ids = expected.get(w);
  if (!ids) expected.set(w, (ids = [formatSpiffeId(ctx.identityOf(w))]));
  return ids;
}

/** The `baggage` header naming the source workload. */
function baggageOf(src: Workload): string {
  let b = baggages.get(src);
  if (!b) baggages.set(src, (b = formatBaggage({ 'k8s.namespace.name': src.namespace, 'k8s.pod.name': src.name, 'service.name': src.canonicalName || src.name })));
  return b;
}

/**
 * A connection refused before anything was set up: it still gets its metrics and access-log line,
 * and reaches the node's flows as a DROPPED flow with the reason (not only ztunnel's log).
 */
function refuse(ctx: ProxyContext, pod: PodProxy, conn: net.Socket, orig: { address: string; port: number; sockCookie?: bigint | undefined }, why: string): void {
  const tracked = ctx.telemetry.connectionOpened({
    reporter: 'source',
    source: ctx.workloadOf(pod),
    destination: ctx.state.workloadByIp(orig.address),
    destinationService: ctx.state.serviceByVip(orig.address),
    mtls: false,
    src: { ip: pod.addresses[0] ?? plainAddr(conn.remoteAddress), port: conn.remotePort ?? 0 },
    dst: { ip: orig.address, port: orig.port },
    sockCookie: orig.sockCookie,
  });
  tracked.close({ flags: 'CONNECT', error: why, refused: true });
}

/**
 * The waypoint a connection to `dst` must go through — the Service it was reached by, the
 * workload, or a Service the workload backs on that port uses one — with an endpoint to reach it
 * on; or why it cannot be reached: a missing or unready waypoint fails closed, never a bypass
 * (Istio's ztunnel sends straight to the pod then). Undefined: no waypoint, go direct.
 */
function waypointOf(ctx: ProxyContext, dst: Destination): { refusal: string } | { via: string; hostname: string; address: string; identities: readonly string[] } | undefined {
  const uses = [
    ...(dst.service?.waypoint ? [{ via: `service ${dst.service.namespace}/${dst.service.hostname}`, address: dst.service.waypoint }] : []),
    ...(dst.workload ? ctx.state.waypointsOf(dst.workload, dst.port) : []),
  ];
  const use = uses[0];
  if (!use) return undefined;
  const st = ctx.state.waypoint(use.address, ctx.cfg.trustDomain);
  if (st.problem) return { refusal: `${use.via} uses ${st.problem}: refused until it is ready (fail closed)` };
  const address = st.addresses[Math.floor(Math.random() * st.addresses.length)]!;
  return { via: use.via, hostname: st.hostname, address, identities: st.identities };
}

// ztunnel's listeners inside one enrolled pod's network namespace: outbound on 127.0.0.1:15001
// (where connect() is redirected), plaintext inbound on 15006 and HBONE on 15008 (where sk_lookup
// steers connections from outside the pod). Sockets are made inside the pod's netns on a native
// thread, marked so the datapath never captures them, and adopted by Node.
//
// Handover (a new ztunnel for the node, ARCHITECTURE.md "ztunnel handover"): every listener has
// SO_REUSEPORT, so the new process binds the same ports beside the old one; the new one swaps
// its inbound sockets into the sockmap (one atomic update each), and outbound connections are
// shared by the two 15001 listeners until the old one closes its own — the pod's
// net.ipv4.tcp_migrate_req moves what waits in the closing listener's queue to the new one.
import net from 'node:net';
import { logger } from '../common/log.ts';
import { DELIVERY_MARK, HBONE_PORT, INBOUND_PORT, OUTBOUND_PORT } from '../common/constants.ts';
import { boundPort, closeFd, NetnsSockets, setNetnsSysctl, socketInNetns, type ZtunnelMaps } from '../datapath/index.ts';
import type { HboneServer } from '../hbone/index.ts';
import type { Workload } from '../xds/index.ts';

const log = logger('ztunnel');

export interface PodHandlers {
  outbound(pod: PodProxy, conn: net.Socket): void;
  plaintextInbound(pod: PodProxy, conn: net.Socket): void;
}

export class PodProxy {
  readonly uid: string;
  readonly netnsPath: string;
  readonly netnsCookie: bigint;
  readonly addresses: string[];
  /** Who the pod is while the config stream has not brought its Workload (sandbox enrolment). */
  readonly provisional: Workload | undefined;
  /** The agent set up delivery routing in the pod: deliver from the client's own address. */
  transparent: boolean;
  /** SO_MARK on ztunnel's sockets in this pod (MESH_MARK): the capture programs skip them. */
  readonly mark: number;
  private readonly servers: net.Server[] = [];
  private hbone: HboneServer | undefined;
  /** The fds of the sockets registered with sk_lookup: unregistered only while still ours. */
  private registered: { inbound: number; hbone: number } | undefined;
  private accepting = true;
  private readonly maps: ZtunnelMaps;
  private readonly ports: { readonly outbound: number; readonly inbound: number; readonly hbone: number };
  /** Fresh sockets of the pod's netns, for the connections ztunnel opens from or into it. */
  private readonly sockets: NetnsSockets;

  constructor(opts: {
    uid: string;
    netnsPath: string;
    netnsCookie: bigint;
    addresses: string[];
    maps: ZtunnelMaps;
    mark: number;
    provisional?: Workload | undefined;
    transparent?: boolean | undefined;
    /** The in-pod listeners' ports: Istio's (the datapath steers to them); tests use 0. */
    ports?: { outbound: number; inbound: number; hbone: number };
  }) {
    this.uid = opts.uid;
    this.netnsPath = opts.netnsPath;
    this.netnsCookie = opts.netnsCookie;
    this.addresses = opts.addresses;
    this.maps = opts.maps;
    this.mark = opts.mark;
    this.ports = opts.ports ?? { outbound: OUTBOUND_PORT, inbound: INBOUND_PORT, hbone: HBONE_PORT };
    this.provisional = opts.provisional;
    this.transparent = (opts.transparent ?? false) && opts.maps.canDeliverFromClient;
    this.sockets = new NetnsSockets(opts.netnsPath);
  }

  /** Opens the three listeners and registers the inbound ones with the datapath. */
  async open(handlers: PodHandlers, hbone: HboneServer): Promise<void> {
    try {
      setNetnsSysctl(this.netnsPath, 'net/ipv4/tcp_migrate_req', '1');
    } catch (e) {
      // In a container /proc/sys is read-only: the agent sets it at enrolment (MESH_SYSCTL_NET_DIR).
      const msg = (e as Error).message;
      if (/EROFS|read-only/i.test(msg)) log.debug({ pod: this.uid, err: msg }, 'tcp_migrate_req not set here; the agent sets it at enrolment');
      else log.warn({ pod: this.uid, err: msg }, 'connections queued on a listener when a handover closes it will be reset');
    }
    const listen = async (host: string, port: number, family: 4 | 6, onConn: (c: net.Socket) => void): Promise<number> => {
      const fd = socketInNetns(this.netnsPath, { host, port, family, listen: true, mark: this.mark, reuseport: true });
      const server = net.createServer({ noDelay: true }, onConn);
      server.on('error', () => {});
      await new Promise<void>((resolve) => server.listen({ fd }, resolve));
      this.servers.push(server);
      return fd;
    };
    await listen('127.0.0.1', this.ports.outbound, 4, (c) => handlers.outbound(this, c));
    const inbound = await listen('::', this.ports.inbound, 6, (c) => handlers.plaintextInbound(this, c));
    const hboneFd = socketInNetns(this.netnsPath, { host: '::', port: this.ports.hbone, family: 6, listen: true, mark: this.mark, reuseport: true });
    await hbone.listen({ fd: hboneFd } as unknown as net.ListenOptions);
    this.hbone = hbone;
    // Registration last: until now sk_lookup refused connections for this pod (fail closed).
    this.maps.registerSocket(this.netnsCookie, 'inbound', inbound);
    this.maps.registerSocket(this.netnsCookie, 'hbone', hboneFd);
    this.registered = { inbound, hbone: hboneFd };
  }

  /**
   * Handover: stops taking new connections, keeps the established ones. The sockmap entries are
   * left to the new ztunnel that replaced them (or removed, so that sk_lookup refuses: fail
   * closed, when none did); the listeners close, their queues moving to the new ones; the HBONE
   * server sends GOAWAY, so peers' pools stop opening tunnels here.
   */
  stopAccepting(): void {
    if (!this.accepting) return;
    this.accepting = false;
    if (this.registered) {
      this.maps.unregisterSocket(this.netnsCookie, 'inbound', this.registered.inbound);
      this.maps.unregisterSocket(this.netnsCookie, 'hbone', this.registered.hbone);
    }
    // close() stops accepting now; its callback would wait for the connections, which the
    // connection manager counts instead.
    for (const s of this.servers) s.close();
    this.hbone?.goAway();
  }

  /** A socket inside the pod's netns, marked, for connecting out from the pod (HBONE or passthrough). */
  dialSocket(family: 4 | 6, bindHost?: string): number {
    return this.sockets.socket({ family, mark: this.mark, ...(bindHost ? { host: bindHost } : {}) });
  }

  /**
   * A socket for delivering to the app from `client`'s address (IP_TRANSPARENT), with the
   * delivery mark that the pod's routing sends back to lo, and the sk_lookup exemption for the
   * tuple it will use. Call `forget` once the handshake is over or has failed.
   */
  deliverySocket(client: string, dst: { ip: string; port: number }, avoidPort?: number): { fd: number; forget: () => void } {
    const family = net.isIPv6(client) ? 6 : 4;
    const spec = { family, host: client, transparent: true, mark: DELIVERY_MARK } as const;
    let fd = this.sockets.socket(spec);
    let port = boundPort(fd);
    // A plaintext client's own connection sits in this netns as client:port ↔ pod:appPort; a
    // delivery from that same client:port would collide with it (its SYN would land on ztunnel's
    // accepted socket). The kernel may pick that port; take another.
    if (port === avoidPort) {
      const again = this.sockets.socket(spec);
      closeFd(fd);
      fd = again;
      port = boundPort(fd);
    }
    try {
      const forget = this.maps.expectDelivery({ ip: client, port }, dst);
      return { fd, forget };
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }

  async close(): Promise<void> {
    if (this.registered) {
      this.maps.unregisterSocket(this.netnsCookie, 'inbound', this.registered.inbound);
      this.maps.unregisterSocket(this.netnsCookie, 'hbone', this.registered.hbone);
    }
    // Established connections end with the process: close() waits for none of them.
    await Promise.all(this.servers.map((s) => new Promise((r) => (s.listening ? s.close(r) : r(undefined)))));
    await this.hbone?.close();
    this.sockets.close();
  }
}

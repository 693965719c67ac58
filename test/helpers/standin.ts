// A stand-in for ztunnel's in-pod listeners, enough to prove where the datapath put a connection:
// each listener answers with one JSON line saying which listener it is, what accept() reported,
// and (outbound) the original destination recovered from the datapath.
import net from 'node:net';
import { HBONE_PORT, INBOUND_PORT, OUTBOUND_PORT, ZTUNNEL_MARK_DEFAULT } from '../../src/common/constants.ts';
import { socketInNetns, ZtunnelMaps } from '../../src/datapath/index.ts';
import type { PodNet } from '../../src/local/index.ts';

export interface StandinReply {
  listener: 'outbound' | 'inbound' | 'hbone';
  local: string;
  remote: string;
  orig: { address: string; port: number; family: number; sockCookie: string } | null;
}

export interface Standin {
  close(): Promise<void>;
  /** Registers the inbound and HBONE sockets with the datapath (what ztunnel does per pod). */
  register(): void;
  unregister(): void;
}


function strip(a: string | undefined): string {
  return (a ?? '').replace(/^::ffff:/, '');
}

export async function startStandin(
  bpffs: string,
  pod: PodNet,
  netnsCookie: bigint,
  opts: { outbound?: boolean; inbound?: boolean } = {},
): Promise<Standin> {
  const maps = new ZtunnelMaps(bpffs);
  const servers: net.Server[] = [];
  const fds: { inbound?: number; hbone?: number } = {};
  const listen = async (listener: StandinReply['listener'], host: string, port: number, family: 4 | 6) => {
    const fd = socketInNetns(pod.netnsPath, { host, port, family, listen: true, mark: ZTUNNEL_MARK_DEFAULT });
    const server = net.createServer((s) => {
      const taken = listener === 'outbound' ? maps.takeOrigDst(netnsCookie, strip(s.remoteAddress), s.remotePort ?? 0) : null;
      const orig = taken ? { ...taken, sockCookie: String(taken.sockCookie) } : null;
      const reply: StandinReply = {
        listener,
        local: `${strip(s.localAddress)}:${s.localPort}`,
        remote: `${strip(s.remoteAddress)}:${s.remotePort}`,
        orig,
      };
      s.end(`${JSON.stringify(reply)}\n`);
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen({ fd }, resolve));
    servers.push(server);
    return fd;
  };
  if (opts.outbound !== false) {
    await listen('outbound', '127.0.0.1', OUTBOUND_PORT, 4);
    if (pod.ip6) await listen('outbound', '::1', OUTBOUND_PORT, 6);
  }
  if (opts.inbound !== false) {
    fds.inbound = await listen('inbound', '::', INBOUND_PORT, 6);
    fds.hbone = await listen('hbone', '::', HBONE_PORT, 6);
  }
  return {
    register() {
      if (fds.inbound !== undefined) maps.registerSocket(netnsCookie, 'inbound', fds.inbound);
      if (fds.hbone !== undefined) maps.registerSocket(netnsCookie, 'hbone', fds.hbone);
    },
    unregister() {
      maps.unregisterSocket(netnsCookie, 'inbound');
      maps.unregisterSocket(netnsCookie, 'hbone');
    },
    async close() {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      maps.close();
    },
  };
}

// The maps ztunnel uses, opened by their pins: ztunnel never loads programs, so it can restart (or
// run a different build) without touching the datapath the agent owns.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { meshAddress } from './addr.ts';
import { BpfMap } from './datapath.ts';
import { DatapathError } from './errors.ts';
import {
  decodeOrigDst,
  encodeDeliveryKey,
  encodeOrigKey,
  encodeSockKey,
  type OrigDst,
  SOCK_HBONE,
  SOCK_INBOUND,
  u64Key,
} from './layout.ts';
import { type NativeError, native } from './native.ts';

export function openPinnedMap(path: string): BpfMap {
  const n = native();
  let fd: number;
  try {
    fd = n.objGet(path);
  } catch (e) {
    throw new DatapathError(
      'MESH_ERR_STATE',
      `cannot open pinned map ${path}: ${(e as Error).message} — is the node agent running and using the same bpffs directory?`,
      e as NativeError,
    );
  }
  const info = n.mapInfo(fd);
  return new BpfMap({ ...info, fd, pinPath: path });
}

/** ztunnel's side of the datapath: register in-pod listeners, recover original destinations. */
export class ZtunnelMaps {
  private readonly socks: BpfMap;
  private readonly origDst: BpfMap;
  /** Absent when the agent's datapath predates it: ztunnel then delivers from 127.0.0.6. */
  private readonly deliveries: BpfMap | undefined;
  private static readonly ONE = Buffer.from([1]);

  constructor(bpffsDir: string) {
    this.socks = openPinnedMap(join(bpffsDir, 'maps', 'mesh_socks'));
    this.origDst = openPinnedMap(join(bpffsDir, 'maps', 'mesh_orig_dst'));
    const deliveries = join(bpffsDir, 'maps', 'mesh_deliveries');
    this.deliveries = existsSync(deliveries) ? openPinnedMap(deliveries) : undefined;
  }

  /** Whether the datapath can pass ztunnel's deliveries from a client's address (see below). */
  get canDeliverFromClient(): boolean {
    return this.deliveries !== undefined;
  }

  /**
   * Names a connection ztunnel is about to make from a client's address to an app inside its pod,
   * so that the pod's sk_lookup lets it through instead of steering it back to ztunnel. Returns
   * the function that forgets it again (call it once the handshake is over, or failed).
   */
  expectDelivery(src: { ip: string; port: number }, dst: { ip: string; port: number }): () => void {
    const map = this.deliveries;
    if (!map) throw new DatapathError('MESH_ERR_STATE', 'the datapath has no mesh_deliveries map (an older agent): deliveries come from 127.0.0.6');
    const key = encodeDeliveryKey(meshAddress(src.ip), src.port, meshAddress(dst.ip), dst.port);
    map.set(key, ZtunnelMaps.ONE);
    let forgotten = false;
    return () => {
      if (forgotten) return;
      forgotten = true;
      try {
        map.delete(key);
      } catch {
        // The maps were closed (ztunnel stopping); the LRU map ages the entry out.
      }
    };
  }

  /** Puts a listening socket (created in the pod's netns) where the pod's sk_lookup finds it. */
  registerSocket(netnsCookie: bigint, kind: 'inbound' | 'hbone', fd: number): void {
    this.socks.set(
      encodeSockKey(netnsCookie, kind === 'hbone' ? SOCK_HBONE : SOCK_INBOUND),
      u64Key(BigInt(fd)),
    );
  }

  /** Whether a live socket (this process's or another ztunnel's) serves the pod's `kind` now. */
  socketRegistered(netnsCookie: bigint, kind: 'inbound' | 'hbone'): boolean {
    return this.socks.get(encodeSockKey(netnsCookie, kind === 'hbone' ? SOCK_HBONE : SOCK_INBOUND)) !== undefined;
  }

  /**
   * Takes the pod's socket out of sk_lookup's reach — only if it is still `fd`'s: after a
   * handover the entry is the new ztunnel's, which the old one must leave alone. (A sockhash
   * lookup from user space answers with the socket's cookie.) The check and the delete are two
   * syscalls; the new ztunnel registers before the old one is told to drain, so they do not race.
   */
  unregisterSocket(netnsCookie: bigint, kind: 'inbound' | 'hbone', fd?: number): boolean {
    const key = encodeSockKey(netnsCookie, kind === 'hbone' ? SOCK_HBONE : SOCK_INBOUND);
    if (fd !== undefined) {
      let mine: bigint;
      try {
        mine = native().socketCookie(fd);
      } catch {
        return false; // closed already: the kernel took it out of the map with it
      }
      const now = this.socks.get(key);
      if (!now || now.readBigUInt64LE(0) !== mine) return false;
    }
    return this.socks.delete(key);
  }

  /**
   * The original destination of a connection accepted on a pod's outbound listener, given the
   * peer address:port that accept() reported. The entry is consumed.
   */
  takeOrigDst(netnsCookie: bigint, peerAddress: string, peerPort: number): OrigDst | null {
    const v = this.origDst.take(encodeOrigKey(netnsCookie, meshAddress(peerAddress), peerPort));
    return v ? decodeOrigDst(v) : null;
  }

  close(): void {
    this.socks.close();
    this.origDst.close();
    this.deliveries?.close();
  }
}

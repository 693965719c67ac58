// Codecs for the structs in bpf/mesh_shared.h. The offsets below are checked against the BTF of
// the built object by test/bpf/layout.test.ts, so a change on either side fails the build.
import { formatMeshAddress, formatMeshAddressAt } from './addr.ts';

// The flag and kind values of bpf/mesh_shared.h live with the other shared numbers.
export { DIR_INBOUND, DIR_OUTBOUND, POD_F_ENROLLED, POD_F_TRANSPARENT, SOCK_HBONE, SOCK_INBOUND } from '../common/constants.ts';

/** Byte offsets and sizes of the shared structs, as the C compiler lays them out. */
export const LAYOUT = {
  mesh_addr: { size: 16, fields: { a: 0 } },
  mesh_pod: { size: 40, fields: { pod_id: 0, flags: 4, addrs: 8 } },
  mesh_excl_port_key: { size: 8, fields: { pod_id: 0, port: 4, dir: 6, pad: 7 } },
  mesh_excl_cidr_key: { size: 24, fields: { prefixlen: 0, pod_id: 4, addr: 8 } },
  mesh_sock_key: { size: 16, fields: { netns_cookie: 0, kind: 8, pad: 12 } },
  mesh_orig_key: { size: 32, fields: { netns_cookie: 0, addr: 8, port: 24, pad: 26 } },
  mesh_delivery_key: { size: 36, fields: { src: 0, dst: 16, sport: 32, dport: 34 } },
  mesh_orig_dst: { size: 32, fields: { addr: 0, port: 16, family: 18, pod_id: 20, sock_cookie: 24 } },
  mesh_event: {
    size: 96,
    fields: {
      ts_ns: 0,
      sock_cookie: 8,
      netns_cookie: 16,
      src: 24,
      dst: 40,
      sport: 56,
      dport: 58,
      new_port: 60,
      kind: 62,
      reason: 63,
      family: 64,
      pad: 66,
      pod_id: 68,
      bytes_sent: 72,
      bytes_recv: 80,
      start_ns: 88,
    },
  },
} as const;

export const UID_SIZE = 64;

export const EVENT_KINDS = { 1: 'CAPTURED', 2: 'STEERED', 3: 'PASSED', 4: 'REFUSED', 5: 'OBSERVED', 6: 'OPENED' } as const;
export type EventKind = (typeof EVENT_KINDS)[keyof typeof EVENT_KINDS];

export const EVENT_REASONS = {
  0: '',
  1: 'loopback',
  2: 'own-address',
  3: 'mesh-port',
  4: 'marked',
  5: 'excluded-port',
  6: 'excluded-cidr',
  7: 'inside-pod',
  8: 'no-ztunnel-socket',
  9: 'ztunnel-delivery',
  10: 'unknown-address',
} as const;

export const STAT_EVENTS_LOST = 0;

export interface PodEntry {
  podId: number;
  flags: number;
  addrs: [Buffer, Buffer];
}

export function u64Key(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

export function u32Key(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

export function encodePod(p: PodEntry): Buffer {
  const b = Buffer.alloc(LAYOUT.mesh_pod.size);
  b.writeUInt32LE(p.podId, 0);
  b.writeUInt32LE(p.flags, 4);
  p.addrs[0].copy(b, 8);
  p.addrs[1].copy(b, 24);
  return b;
}

export function decodePod(b: Buffer): PodEntry {
  return {
    podId: b.readUInt32LE(0),
    flags: b.readUInt32LE(4),
    addrs: [Buffer.from(b.subarray(8, 24)), Buffer.from(b.subarray(24, 40))],
  };
}

export function encodeExclPortKey(podId: number, port: number, dir: number): Buffer {
  const b = Buffer.alloc(LAYOUT.mesh_excl_port_key.size);
  b.writeUInt32LE(podId, 0);
  b.writeUInt16LE(port, 4);
  b.writeUInt8(dir, 6);
  return b;
}

export function decodeExclPortKey(b: Buffer): { podId: number; port: number; dir: number } {
  return { podId: b.readUInt32LE(0), port: b.readUInt16LE(4), dir: b.readUInt8(6) };
}

/** LPM key: the prefix covers the 32 bits of pod_id, then `bits` of the address. */
export function encodeExclCidrKey(podId: number, addr: Buffer, bits: number): Buffer {
  const b = Buffer.alloc(LAYOUT.mesh_excl_cidr_key.size);
  b.writeUInt32LE(32 + bits, 0);
  b.writeUInt32LE(podId, 4);
  addr.copy(b, 8);
  return b;
}

export function decodeExclCidrKey(b: Buffer): { podId: number; addr: Buffer; bits: number } {
  return { podId: b.readUInt32LE(4), addr: Buffer.from(b.subarray(8, 24)), bits: b.readUInt32LE(0) - 32 };
}

export function encodeSockKey(netnsCookie: bigint, kind: number): Buffer {
  const b = Buffer.alloc(LAYOUT.mesh_sock_key.size);
  b.writeBigUInt64LE(netnsCookie, 0);
  b.writeUInt32LE(kind, 8);
  return b;
}

export function encodeOrigKey(netnsCookie: bigint, addr: Buffer, port: number): Buffer {
  const b = Buffer.alloc(LAYOUT.mesh_orig_key.size);
  b.writeBigUInt64LE(netnsCookie, 0);
  addr.copy(b, 8);
  b.writeUInt16LE(port, 24);
  return b;
}

export function encodeDeliveryKey(src: Buffer, sport: number, dst: Buffer, dport: number): Buffer {
  const b = Buffer.alloc(LAYOUT.mesh_delivery_key.size);
  src.copy(b, 0);
  dst.copy(b, 16);
  b.writeUInt16LE(sport, 32);
  b.writeUInt16LE(dport, 34);
  return b;
}

export interface OrigDst {
  address: string;
  port: number;
  family: 4 | 6;
  podId: number;
  /** Cookie of the application's socket, as in its CAPTURED event. */
  sockCookie: bigint;
}

export function decodeOrigDst(b: Buffer): OrigDst {
  return {
    address: formatMeshAddress(b.subarray(0, 16)),
    port: b.readUInt16LE(16),
    family: b.readUInt16LE(18) === 10 ? 6 : 4,
    podId: b.readUInt32LE(20),
    sockCookie: b.readBigUInt64LE(24),
  };
}

export function encodeUid(uid: string): Buffer {
  const b = Buffer.alloc(UID_SIZE);
  const n = b.write(uid, 'utf8');
  if (n >= UID_SIZE || Buffer.byteLength(uid) >= UID_SIZE)
    throw new RangeError(`pod uid '${uid}' is longer than 63 bytes`);
  return b;
}

export function decodeUid(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString('utf8');
}

/** One datapath decision, decoded from the mesh_events ring buffer. */
export interface DatapathEvent {
  tsNs: bigint;
  sockCookie: bigint;
  netnsCookie: bigint;
  kind: EventKind | 'UNKNOWN';
  reason: string;
  family: 4 | 6;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  newPort: number;
  podId: number;
  /** OBSERVED only: bytes the pod's socket sent (acknowledged by the peer) and received. */
  bytesSent: bigint;
  bytesRecv: bigint;
  /** OBSERVED only: when the connection was established (tsNs: when it closed), from the OPENED
   * event the reader joined to it (OPENED events never reach JavaScript); 0 when unknown. */
  startNs: bigint;
}

/** Decodes the struct mesh_event at byte `o` of `b` (the reader hands over a batch as one buffer). */
export function decodeEvent(b: Buffer, o = 0): DatapathEvent {
  const kind = b.readUInt8(o + 62) as keyof typeof EVENT_KINDS;
  const reason = b.readUInt8(o + 63) as keyof typeof EVENT_REASONS;
  return {
    tsNs: b.readBigUInt64LE(o),
    sockCookie: b.readBigUInt64LE(o + 8),
    netnsCookie: b.readBigUInt64LE(o + 16),
    src: formatMeshAddressAt(b, o + 24),
    dst: formatMeshAddressAt(b, o + 40),
    sport: b.readUInt16LE(o + 56),
    dport: b.readUInt16LE(o + 58),
    newPort: b.readUInt16LE(o + 60),
    kind: EVENT_KINDS[kind] ?? 'UNKNOWN',
    reason: EVENT_REASONS[reason] ?? `reason-${reason}`,
    family: b.readUInt16LE(o + 64) === 10 ? 6 : 4,
    podId: b.readUInt32LE(o + 68),
    bytesSent: b.readBigUInt64LE(o + 72),
    bytesRecv: b.readBigUInt64LE(o + 80),
    startNs: b.readBigUInt64LE(o + 88),
  };
}

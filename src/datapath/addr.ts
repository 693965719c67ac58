// Addresses as the datapath stores them: 16 bytes, IPv4 in its v4-mapped form (::ffff:a.b.c.d).
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

export class AddressError extends Error {
  readonly code = 'MESH_ERR_BAD_ADDRESS';
}

function parse(ip: string): ipaddr.IPv4 | ipaddr.IPv6 {
  // node:net is strict (no "10.1" or octal shorthands), ipaddr.js then does the byte work.
  if (isIP(ip) === 0) {
    throw new AddressError(`'${ip}' is not an IPv4 or IPv6 address`);
  }
  return ipaddr.parse(ip);
}

// IPv4 is the common case on every connection ztunnel handles; it skips ipaddr.js, whose parsing
// and formatting showed up at ~5% of ztunnel's CPU under connection churn.
function writeV4(ip: string, out: Buffer, at: number): void {
  let octet = 0;
  let i = at;
  for (let k = 0; k < ip.length; k++) {
    const c = ip.charCodeAt(k);
    if (c === 46 /* . */) {
      out[i++] = octet;
      octet = 0;
    } else octet = octet * 10 + (c - 48);
  }
  out[i] = octet;
}

/** The 4- or 16-byte network-order form of an address, for sockets. */
export function rawAddress(ip: string): Buffer {
  if (isIP(ip) === 4) {
    const b = Buffer.allocUnsafe(4);
    writeV4(ip, b, 0);
    return b;
  }
  return Buffer.from(parse(ip).toByteArray());
}

/** The 16-byte mesh_addr form of an address. */
export function meshAddress(ip: string): Buffer {
  const family = isIP(ip);
  if (family === 4) {
    const b = Buffer.alloc(16);
    b[10] = 0xff;
    b[11] = 0xff;
    writeV4(ip, b, 12);
    return b;
  }
  const a = parse(ip);
  return Buffer.from((a.kind() === 'ipv4' ? (a as ipaddr.IPv4).toIPv4MappedAddress() : a).toByteArray());
}

function isV4Mapped(b: Buffer, o: number): boolean {
  for (let i = o; i < o + 10; i++) if (b[i] !== 0) return false;
  return b[o + 10] === 0xff && b[o + 11] === 0xff;
}

/** Formats a mesh_addr: dotted quad for v4-mapped, RFC 5952 text otherwise, '' for all-zero. */
export function formatMeshAddress(b: Buffer): string {
  return formatMeshAddressAt(b, 0);
}

/** formatMeshAddress of the mesh_addr at byte `o` of `b`. The v4 case reads the bytes in place:
 * it runs twice for every datapath event. */
export function formatMeshAddressAt(b: Buffer, o: number): string {
  if (isV4Mapped(b, o)) return `${b[o + 12]}.${b[o + 13]}.${b[o + 14]}.${b[o + 15]}`;
  const a16 = b.subarray(o, o + 16);
  if (a16.every((x) => x === 0)) return '';
  const a = ipaddr.fromByteArray([...a16]) as ipaddr.IPv6;
  return a.isIPv4MappedAddress() ? a.toIPv4Address().toString() : a.toString();
}

/** Parses "a.b.c.d/n" or "x::/n" into the mesh_addr and the prefix length within 128 bits. */
export function parseCidr(cidr: string): { addr: Buffer; bits: number; family: 4 | 6 } {
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(cidr);
  } catch {
    throw new AddressError(`'${cidr}' is not a CIDR (expected e.g. 10.0.0.0/8 or fd00::/8)`);
  }
  const [a, len] = parsed;
  if (a.kind() === 'ipv4') return { addr: meshAddress(a.toString()), bits: 96 + len, family: 4 };
  return { addr: Buffer.from(a.toByteArray()), bits: len, family: 6 };
}

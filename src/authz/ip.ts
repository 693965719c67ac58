// Addresses and CIDRs in a form that makes "is this IP in that block" a few integer compares.
// An address is 1 (IPv4) or 4 (IPv6) unsigned 32-bit words. IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d, what a dual-stack Node socket reports for an IPv4 peer) are folded to IPv4 on
// both sides, as ztunnel does with SocketAddr::to_canonical, so a policy written with
// "10.0.0.0/8" matches a peer Node shows as "::ffff:10.1.2.3".
import ipaddr from 'ipaddr.js';
import { AuthzInvalidError } from './errors.ts';

export interface Ip {
  readonly v6: boolean;
  readonly words: readonly number[];
}

export interface CompiledCidr {
  readonly v6: boolean;
  /** The network, already masked. */
  readonly net: readonly number[];
  readonly mask: readonly number[];
  /** For messages and config dumps, e.g. "10.0.0.0/8". */
  readonly text: string;
}

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function fromBytes(b: ArrayLike<number>): Ip {
  if (b.length === 4) return { v6: false, words: [((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0] };
  const words: number[] = [];
  for (let i = 0; i < 16; i += 4) words.push(((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0);
  // ::ffff:0:0/96 — IPv4-mapped.
  if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) return { v6: false, words: [words[3]!] };
  return { v6: true, words };
}

/** Parses a textual address (IPv4, IPv6, IPv4-mapped IPv6); undefined when it is not one. */
export function parseIp(s: string): Ip | undefined {
  const m = V4.exec(s);
  if (m) {
    const o = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
    return o.every((x) => x <= 255) ? fromBytes(o) : undefined;
  }
  if (!ipaddr.IPv6.isValid(s)) return undefined;
  return fromBytes(ipaddr.IPv6.parse(s).toByteArray());
}

function maskWords(v6: boolean, length: number): number[] {
  const n = v6 ? 4 : 1;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const bits = Math.max(0, Math.min(32, length - 32 * i));
    out.push(bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);
  }
  return out;
}

/** A config.proto Cidr (4 or 16 address bytes and a prefix length) → its compiled form. */
export function compileCidr(address: Uint8Array, length: number): CompiledCidr {
  if (address.length !== 4 && address.length !== 16) {
    throw new AuthzInvalidError(`a CIDR address has ${address.length} bytes; it must have 4 (IPv4) or 16 (IPv6)`);
  }
  const max = address.length * 8;
  if (!Number.isInteger(length) || length < 0 || length > max) {
    throw new AuthzInvalidError(`CIDR prefix length ${length} is out of range 0..${max} for ${ipaddr.fromByteArray([...address]).toString()}`);
  }
  let ip = fromBytes(address);
  let len = length;
  // A mapped CIDR (::ffff:10.0.0.0/104) folds to 10.0.0.0/8; a shorter mapped prefix stays IPv6
  // and, like every IPv6 block, matches no (canonical) IPv4 peer.
  if (address.length === 16 && !ip.v6) {
    if (length >= 96) len = length - 96;
    else ip = { v6: true, words: [0, 0, 0xffff, ip.words[0]!] };
  }
  const mask = maskWords(ip.v6, len);
  const net = ip.words.map((w, i) => (w & mask[i]!) >>> 0);
  const text = `${ipaddr.fromByteArray(wordsToBytes(net)).toString()}/${len}`;
  return { v6: ip.v6, net, mask, text };
}

function wordsToBytes(words: readonly number[]): number[] {
  return words.flatMap((w) => [(w >>> 24) & 255, (w >>> 16) & 255, (w >>> 8) & 255, w & 255]);
}

export function cidrContains(c: CompiledCidr, ip: Ip): boolean {
  if (c.v6 !== ip.v6) return false;
  const { net, mask } = c;
  for (let i = 0; i < net.length; i++) if (((ip.words[i]! & mask[i]!) >>> 0) !== net[i]) return false;
  return true;
}

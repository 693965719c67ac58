// The HBONE request's addressing and context headers: `:authority` (ip:port), `forwarded`
// (RFC 7239), `baggage` (W3C Baggage) and `traceparent` (W3C Trace Context), parsed strictly on
// the server and formatted on the client the way Istio's ztunnel writes them.
import { isIP, isIPv4, isIPv6 } from 'node:net';

/** A numeric address and port; `host` is an IP literal without brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const IPV4_AUTHORITY = /^([0-9.]{7,15}):([0-9]{1,5})$/;
const IPV6_AUTHORITY = /^\[([0-9A-Fa-f:.]{2,45})\]:([0-9]{1,5})$/;

function port(s: string): number | undefined {
  if (s.length > 1 && s.startsWith('0')) return undefined;
  const n = Number(s);
  return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : undefined;
}

/**
 * `10.0.0.1:8080` or `[fd00::1]:8080` → {host, port}; anything else (names, zones, port 0,
 * missing port) → undefined. HBONE targets are pod IPs: ztunnel never resolves names here.
 */
export function parseAuthority(authority: string | undefined): HostPort | undefined {
  if (typeof authority !== 'string' || authority.length > 53) return undefined;
  let m = IPV4_AUTHORITY.exec(authority);
  if (m && isIPv4(m[1]!)) {
    const p = port(m[2]!);
    return p === undefined ? undefined : { host: m[1]!, port: p };
  }
  m = IPV6_AUTHORITY.exec(authority);
  if (m && isIPv6(m[1]!)) {
    const p = port(m[2]!);
    return p === undefined ? undefined : { host: m[1]!.toLowerCase(), port: p };
  }
  return undefined;
}

/** {host, port} → `host:port`, IPv6 in brackets. */
export function formatAuthority(hp: HostPort): string {
  const v = isIP(hp.host);
  if (v === 0 || !Number.isInteger(hp.port) || hp.port < 1 || hp.port > 65535) {
    throw new TypeError(`"${hp.host}" port ${hp.port} is not an IP address and port`);
  }
  return v === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** Where a `forwarded` header says the connection came from; port is absent when it gave none. */
export interface ForwardedFor {
  readonly host: string;
  readonly port?: number;
}

/**
 * The `for` of the first forwarded-element (RFC 7239 §4: the element the first proxy added, i.e.
 * the original client). Returns undefined when there is no `for`, or it is "unknown" or an
 * obfuscated identifier (§6.2, §6.3); throws TypeError when the header is malformed.
 */
export function parseForwarded(value: string): ForwardedFor | undefined {
  if (value.length > 1024) throw new TypeError('forwarded header is longer than 1024 bytes');
  const first = splitOutsideQuotes(value, ',')[0] ?? '';
  for (const pair of splitOutsideQuotes(first, ';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new TypeError(`forwarded pair "${pair.trim()}" has no "="`);
    const key = pair.slice(0, eq).trim().toLowerCase();
    let v = pair.slice(eq + 1).trim();
    if (key !== 'for') continue;
    if (v.startsWith('"')) {
      if (v.length < 2 || !v.endsWith('"')) throw new TypeError('forwarded "for" has an unterminated quoted string');
      v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    }
    return parseNode(v);
  }
  return undefined;
}

// RFC 7239 §6: node = nodename [ ":" node-port ]; nodename = IPv4 / "[" IPv6 "]" / "unknown" / obfnode.
function parseNode(v: string): ForwardedFor | undefined {
  if (v === 'unknown' || v.startsWith('_')) return undefined;
  let host: string;
  let rest: string;
  if (v.startsWith('[')) {
    const close = v.indexOf(']');
    if (close < 0) throw new TypeError(`forwarded "for=${v}" has an unclosed "["`);
    host = v.slice(1, close);
    rest = v.slice(close + 1);
    if (!isIPv6(host)) throw new TypeError(`forwarded "for=${v}" is not an IPv6 address`);
  } else {
    const colon = v.indexOf(':');
    host = colon < 0 ? v : v.slice(0, colon);
    rest = colon < 0 ? '' : v.slice(colon);
    if (!isIPv4(host)) throw new TypeError(`forwarded "for=${v}" is not an IP address (IPv6 must be in brackets)`);
  }
  if (!rest) return { host };
  if (!rest.startsWith(':')) throw new TypeError(`forwarded "for=${v}" has junk after the address`);
  const p = rest.slice(1);
  if (p.startsWith('_')) return { host }; // obfuscated port (§6.3)
  const n = /^[0-9]{1,5}$/.test(p) ? port(p) : undefined;
  if (n === undefined) throw new TypeError(`forwarded "for=${v}" has an invalid port`);
  return { host, port: n };
}

/** `for="10.0.0.1:4711"` / `for="[fd00::1]:4711"` (quoted, as RFC 7239 §4 requires for ":" and "["). */
export function formatForwarded(f: ForwardedFor): string {
  const h = isIPv6(f.host) ? `[${f.host}]` : f.host;
  return f.port === undefined ? `for="${h}"` : `for="${h}:${f.port}"`;
}

function splitOutsideQuotes(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && quoted && i + 1 < s.length) {
      cur += c + s[++i];
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === sep && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

// W3C Baggage §3.3.1 limits: 180 members, 8192 bytes.
const BAGGAGE_MAX_BYTES = 8192;
const BAGGAGE_MAX_MEMBERS = 180;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAGGAGE_VALUE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/;

/**
 * `k=v;prop,k2=v2` → {k: v, k2: v2} with values percent-decoded and properties dropped.
 * Returns undefined when the header is malformed: W3C Baggage §3.2.3 says to discard an invalid
 * header rather than fail the request, and ztunnel treats baggage as telemetry only.
 */
export function parseBaggage(value: string): Record<string, string> | undefined {
  if (value.length > BAGGAGE_MAX_BYTES) return undefined;
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  const members = value.split(',');
  if (members.length > BAGGAGE_MAX_MEMBERS) return undefined;
  for (const m of members) {
    const kv = m.split(';')[0]!;
    const eq = kv.indexOf('=');
    if (eq < 0) return undefined;
    const k = kv.slice(0, eq).trim();
    const v = kv.slice(eq + 1).trim();
    if (!TOKEN.test(k) || !BAGGAGE_VALUE.test(v)) return undefined;
    try {
      out[k] = decodeURIComponent(v);
    } catch {
      return undefined;
    }
  }
  return out;
}

/** {k: v} → `k=v,…` with values percent-encoded (W3C Baggage §3.3.1). */
export function formatBaggage(b: Readonly<Record<string, string>>): string {
  return Object.entries(b)
    .map(([k, v]) => {
      if (!TOKEN.test(k)) throw new TypeError(`baggage key "${k}" is not an HTTP token`);
      return `${k}=${encodeURIComponent(v)}`;
    })
    .join(',');
}

/** A W3C Trace Context `traceparent`. */
export interface TraceParent {
  readonly version: string;
  readonly traceId: string;
  readonly parentId: string;
  readonly flags: string;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * Parses `00-<trace-id>-<parent-id>-<flags>`; undefined when invalid (W3C Trace Context §3.2.2:
 * an invalid traceparent is ignored and a new trace started, never a failed request).
 */
export function parseTraceparent(value: string): TraceParent | undefined {
  const m = TRACEPARENT.exec(value.trim());
  if (!m) return undefined;
  const [, version, traceId, parentId, flags, extra] = m;
  if (version === 'ff' || (version === '00' && extra !== undefined)) return undefined;
  if (/^0+$/.test(traceId!) || /^0+$/.test(parentId!)) return undefined;
  return { version: version!, traceId: traceId!, parentId: parentId!, flags: flags! };
}

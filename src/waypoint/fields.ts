// HTTP fields as they cross the waypoint: which stop here (hop-by-hop), the text of a field, and
// the gRPC status a local reply carries.
import type { HeaderMap } from './filters.ts';
import type { RequestInfo } from './request.ts';

type Fields = RequestInfo['headers'];

// RFC 9110 §7.6.1 connection-specific fields, plus those HTTP/2 forbids (RFC 9113 §8.2.2). "te"
// goes too; HTTP/2 allows only "te: trailers", which gRPC needs and which is put back below.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host', 'http2-settings']);

/** The client's headers as they go upstream: hop-by-hop fields dropped, "te: trailers" kept. */
export function forwardHeaders(h: Fields): HeaderMap {
  const out: HeaderMap = {};
  const hop = hopByHop(h);
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || hop.has(k)) continue;
    out[k] = typeof v === 'string' ? v : [...v];
  }
  if (headerText(h.te).split(',').some((t) => t.trim().toLowerCase() === 'trailers')) out.te = 'trailers';
  return out;
}

/** The fields not to forward: the fixed set and those the message's Connection field names (RFC 9110 §7.6.1). */
export function hopByHop(h: Fields): ReadonlySet<string> {
  const named = headerText(h.connection);
  if (!named) return HOP_BY_HOP;
  // The usual values ("keep-alive", "upgrade") name fields already in the set: no copy per message.
  const names = named.split(',').map((n) => n.trim().toLowerCase()).filter((n) => n && !HOP_BY_HOP.has(n));
  if (names.length === 0) return HOP_BY_HOP;
  const set = new Set(HOP_BY_HOP);
  for (const n of names) set.add(n);
  return set;
}

export function headerText(v: string | readonly string[] | undefined): string {
  return v === undefined ? '' : typeof v === 'string' ? v : v.join(',');
}

/** The gRPC status for an HTTP status (grpc/doc/http-grpc-status-mapping.md). */
export function grpcCode(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

// The request path as the waypoint routes and forwards it: normalized as Istio's waypoint does by
// default (Envoy's normalize_path, RFC 3986 §6.2.2) with runs of "/" merged (Istio's
// MERGE_SLASHES), the same normalization the L7 authorizer judges paths by. Forwarding the
// normalized path means the application serves exactly the path policy allowed: "/public/../admin"
// can neither pass an ALLOW on /public/* nor slip past a DENY on /admin.

const PCT = /%([0-9a-fA-F]{2})/g;
const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** A request target (path and query) with its path normalized; the query is kept as it is. */
export function normalizeTarget(target: string): string {
  const q = target.search(/[?#]/);
  const path = q < 0 ? target : target.slice(0, q);
  const rest = q < 0 ? '' : target.slice(q).replace(/#.*$/, '');
  return normalizePathOnly(path) + rest;
}

/** The path of a request target without its query and fragment, normalized as normalizeTarget does: what L7 policy judges. */
export function normalizePath(target: string): string {
  const q = target.search(/[?#]/);
  return normalizePathOnly(q < 0 ? target : target.slice(0, q));
}

function normalizePathOnly(raw: string): string {
  let p = raw;
  // Absolute form (RFC 9112 §3.2.2, "GET http://host/x"): the path is what is routed.
  const abs = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/]*/.exec(p);
  if (abs) p = p.slice(abs[0].length) || '/';
  // Percent-encoded unreserved characters decoded, other escapes upper-cased (§6.2.2.1–2).
  if (p.includes('%')) {
    p = p.replace(PCT, (m, hex: string) => {
      const ch = String.fromCharCode(parseInt(hex, 16));
      return UNRESERVED.test(ch) ? ch : m.toUpperCase();
    });
  }
  if (p.includes('//')) p = p.replace(/\/{2,}/g, '/');
  if (!p.includes('.')) return p;
  // remove_dot_segments (§5.2.4), never above the root.
  const segs = p.split('/');
  const out: string[] = [];
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i]!;
    const last = i === segs.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      if (out.length > 1) out.pop();
      if (last) out.push('');
    } else out.push(s);
  }
  return out.join('/');
}

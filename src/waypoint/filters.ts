// The HTTPRoute filters the waypoint applies itself (gateway-api/apis/v1/httproute_types.go,
// HTTPRouteFilter): header modifiers, URL rewrite, request redirect. RequestMirror is carried out
// by the proxy (it needs an upstream); only its sampling lives here.
import type { HeaderModifier, PathModifier, Redirect, RouteMatch, UrlRewrite } from '../xds/routes.ts';
import { splitTarget } from './router.ts';

/** Headers on their way up or down: lower-case names. */
export type HeaderMap = Record<string, string | string[] | number | undefined>;

/**
 * RequestHeaderModifier / ResponseHeaderModifier. Removal comes first, as Envoy's header parser
 * does it, so that a "remove X, set X" pair leaves the set value; then set replaces, add appends
 * another value.
 */
export function modifyHeaders(h: HeaderMap, mod: HeaderModifier): void {
  for (const name of mod.remove) delete h[name.toLowerCase()];
  for (const { name, value } of mod.set) h[name.toLowerCase()] = value;
  for (const { name, value } of mod.add) {
    const key = name.toLowerCase();
    const cur = h[key];
    if (cur === undefined) h[key] = value;
    else h[key] = [...(Array.isArray(cur) ? cur : [String(cur)]), value];
  }
}

/**
 * A path modifier applied to a request target (path and query; the query is kept).
 * ReplacePrefixMatch replaces the part of the path the rule's PathPrefix match matched, on
 * element boundaries, never leaving an empty path or a doubled "/" (the table in
 * HTTPPathModifier's doc comment).
 */
export function modifyPath(target: string, mod: PathModifier, match: RouteMatch | null): string {
  const { pathname, query } = splitTarget(target);
  let path: string;
  if (mod.type === 'REPLACE_FULL_PATH') {
    path = mod.value || '/';
  } else {
    // The controller only accepts ReplacePrefixMatch on a rule whose matches are PathPrefix; a rule
    // without a path match means the implicit prefix "/".
    const prefix = match?.path?.type === 'PATH_PREFIX' ? stripSlash(match.path.value) : '';
    path = stripSlash(mod.value) + pathname.slice(prefix.length) || '/';
  }
  return query ? `${path}?${query}` : path;
}

function stripSlash(p: string): string {
  return p.endsWith('/') ? p.slice(0, -1) : p;
}

/** URLRewrite: the new authority and request target. */
export function rewriteUrl(rw: UrlRewrite, authority: string, target: string, match: RouteMatch | null): { authority: string; target: string } {
  return {
    authority: rw.hostname || authority,
    target: rw.path ? modifyPath(target, rw.path, match) : target,
  };
}

const DEFAULT_PORT: Record<string, number> = { http: 80, https: 443 };

/**
 * RequestRedirect: the status and Location. Unset parts keep the request's; the port follows
 * HTTPRequestRedirectFilter's rules — the new scheme's well-known port when the scheme changes,
 * else the listener port (for a mesh Service, the Service port dialled), and no port in the
 * Location when it is the scheme's default.
 */
export function redirectLocation(r: Redirect, req: { authority: string; target: string; port: number }, match: RouteMatch | null): { status: number; location: string } {
  const scheme = r.scheme || 'http';
  const host = r.hostname || hostOf(req.authority);
  const port = r.port || (r.scheme ? (DEFAULT_PORT[scheme] ?? req.port) : req.port);
  const target = r.path ? modifyPath(req.target, r.path, match) : req.target;
  const hostPort = port === DEFAULT_PORT[scheme] ? bracket(host) : `${bracket(host)}:${port}`;
  return { status: r.statusCode || 302, location: `${scheme}://${hostPort}${target}` };
}

/** The host of an authority, without its port ("[::1]:80" → "::1"). */
export function hostOf(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end > 0 ? authority.slice(1, end) : authority;
  }
  const colon = authority.lastIndexOf(':');
  return colon >= 0 && authority.indexOf(':') === colon ? authority.slice(0, colon) : authority;
}

function bracket(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Whether this request is mirrored (RequestMirror's percent, 0–100). */
export function mirrorSampled(percent: number, random: () => number = Math.random): boolean {
  return percent >= 100 || random() * 100 < percent;
}

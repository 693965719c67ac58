// The dashboard's flow queries: URL parameters named after `meshctl flows` flags
// (`?from-pod=shop/frontend&verdict=DROPPED&last=50`) become an Observer GetFlowsRequest with
// Hubble's filter semantics (src/flows/filter.ts applies them at each node): a flag without a
// direction (--pod, --namespace, --ip, --identity, --port) matches either end, so it makes two
// filters, one per side; the others go into both.
import type { FlowFilter, GetFlowsRequest, TrafficDirection, Verdict } from '../../flows/types.ts';

export class DashboardQueryError extends Error {
  readonly code = 'MESH_ERR_DASHBOARD_QUERY';
}

const VERDICTS: readonly Verdict[] = ['FORWARDED', 'DROPPED', 'ERROR'];
const PROTOCOLS = ['tcp', 'hbone', 'mtls', 'plaintext', 'http'];
/** Flows a query returns when it says nothing: more than hubble's 20, a panel's worth. */
export const DEFAULT_LAST = 100;
const MAX_LAST = 4095;

const LISTS = ['namespace', 'pod', 'from-pod', 'to-pod', 'from-namespace', 'to-namespace', 'identity', 'from-identity', 'to-identity', 'ip', 'from-ip', 'to-ip', 'port', 'from-port', 'to-port', 'to-service', 'verdict', 'protocol', 'node-name', 'traffic-direction'] as const;
const SCALARS = ['last', 'first', 'since', 'until'] as const;
/** The `meshctl flows` flags the dashboard accepts, as URL parameter names. */
export const QUERY_FLAGS: readonly string[] = [...LISTS, ...SCALARS];

/** "5m", "90s", "2h", "1d" before now, or an RFC 3339 time → ns since the epoch (as meshctl flows). */
function parseTime(flag: string, v: string, now: number): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v.trim());
  if (m) return (now - Number(m[1]) * { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd']) * 1e6;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new DashboardQueryError(`${flag}=${v} is neither a duration (30s, 5m, 2h) nor a time (2026-11-22T10:00:00Z)`);
  return t * 1e6;
}

function port(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new DashboardQueryError(`${flag}=${v} is not a port (1-65535)`);
  return n;
}

/** `pod=x` means default/x unless a namespace is given, as in meshctl flows and hubble. */
const podRef = (v: string, ns: string[]) => (v.includes('/') ? v : `${ns[0] ?? 'default'}/${v}`);

/** The GetFlowsRequest (history, not follow) for `params`; unknown or bad parameters are errors. */
export function flowsRequest(params: URLSearchParams, now = Date.now()): GetFlowsRequest {
  for (const k of new Set(params.keys())) {
    if (!QUERY_FLAGS.includes(k)) throw new DashboardQueryError(`unknown flows filter "${k}": use the flags of meshctl flows without the dashes (${QUERY_FLAGS.join(', ')})`);
  }
  const all = (k: (typeof LISTS)[number]) => params.getAll(k).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  const ns = all('namespace');
  const left: FlowFilter = {};
  const right: FlowFilter = {};
  const both = <K extends keyof FlowFilter>(k: K, v: NonNullable<FlowFilter[K]>) => {
    if (v.length === 0) return;
    left[k] = [...(left[k] ?? []), ...v] as FlowFilter[K];
    right[k] = [...(right[k] ?? []), ...v] as FlowFilter[K];
  };
  const neutralPods = [...all('pod').map((p) => podRef(p, ns)), ...ns.map((n) => `${n}/`)];
  const ips = all('ip');
  const ids = all('identity');
  const ports = all('port').map((p) => port('port', p));
  if (neutralPods.length) [left.sourcePod, right.destinationPod] = [neutralPods, neutralPods];
  if (ips.length) [left.sourceIp, right.destinationIp] = [ips, ips];
  if (ids.length) [left.sourceIdentity, right.destinationIdentity] = [ids, ids];
  if (ports.length) [left.sourcePort, right.destinationPort] = [ports, ports];
  both('sourcePod', [...all('from-pod').map((p) => podRef(p, ns)), ...all('from-namespace').map((n) => `${n}/`)]);
  both('destinationPod', [...all('to-pod').map((p) => podRef(p, ns)), ...all('to-namespace').map((n) => `${n}/`)]);
  both('sourceIdentity', all('from-identity'));
  both('destinationIdentity', all('to-identity'));
  both('sourceIp', all('from-ip'));
  both('destinationIp', all('to-ip'));
  both('sourcePort', all('from-port').map((p) => port('from-port', p)));
  both('destinationPort', all('to-port').map((p) => port('to-port', p)));
  both('destinationService', all('to-service'));
  both(
    'verdict',
    all('verdict').map((v) => {
      const u = v.toUpperCase() as Verdict;
      if (!VERDICTS.includes(u)) throw new DashboardQueryError(`verdict=${v} is not a verdict (${VERDICTS.join(', ')})`);
      return u;
    }),
  );
  both(
    'protocol',
    all('protocol').map((p) => {
      if (!PROTOCOLS.includes(p.toLowerCase())) throw new DashboardQueryError(`protocol=${p} is not a protocol (${PROTOCOLS.join(', ')})`);
      return p.toLowerCase();
    }),
  );
  both('nodeName', all('node-name'));
  both(
    'trafficDirection',
    all('traffic-direction').map((d) => {
      const u = d.toUpperCase();
      if (u !== 'INGRESS' && u !== 'EGRESS') throw new DashboardQueryError(`traffic-direction=${d} is not a traffic direction (ingress, egress)`);
      return u as TrafficDirection;
    }),
  );
  const neutral = neutralPods.length + ips.length + ids.length + ports.length > 0;
  const whitelist = neutral ? [left, right] : Object.keys(left).length ? [left] : [];
  const req: GetFlowsRequest = { whitelist, blacklist: [], follow: false };
  const count = (flag: 'last' | 'first') => {
    const v = params.get(flag);
    if (v === null) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > MAX_LAST) throw new DashboardQueryError(`${flag}=${v} is not a count (1-${MAX_LAST})`);
    return n;
  };
  const first = count('first');
  if (first) [req.first, req.number] = [true, first];
  else req.number = count('last') ?? DEFAULT_LAST;
  const since = params.get('since');
  const until = params.get('until');
  if (since) req.sinceUnixNano = parseTime('since', since, now);
  if (until) req.untilUnixNano = parseTime('until', until, now);
  return req;
}

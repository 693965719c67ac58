// Flow filters with Hubble's semantics: inside one filter every field that is set must match
// (AND) and a field's values are alternatives (OR); a request keeps a flow that matches any
// whitelist filter (or there are none) and no blacklist filter.
import ipaddr from 'ipaddr.js';
import { FlowFilterError, parseSelector, type Selector, selectorMatches } from './selector.ts';
import type { Endpoint, Flow, FlowFilter, GetFlowsRequest } from './types.ts';

export { FlowFilterError } from './selector.ts';

/** Hubble's event types (cilium pkg/monitor/api MessageTypeNames) that have a meaning for our flows. */
export const EVENT_TYPES = ['l7', 'drop', 'trace', 'policy-verdict', 'trace-sock'] as const;

/** Full codes ("404") or prefixes ("5+", "40+"), as cilium's hubble HTTP filter accepts them. */
const STATUS_FULL = /^[1-5][0-9][0-9]$/;
const STATUS_PREFIX = /^[1-5][0-9]?\+$/;

/** What a filter needs compiled (selectors, regular expressions), made once per filter object. */
interface Compiled {
  sourceLabel: Selector[] | undefined;
  destinationLabel: Selector[] | undefined;
  httpPath: RegExp[] | undefined;
}
const compiledCache = new WeakMap<FlowFilter, Compiled>();

function compile(q: FlowFilter): Compiled {
  let c = compiledCache.get(q);
  if (c) return c;
  const sel = (v: string[] | undefined) => (set(v) ? v.map(parseSelector) : undefined);
  c = {
    sourceLabel: sel(q.sourceLabel),
    destinationLabel: sel(q.destinationLabel),
    httpPath: set(q.httpPath)
      ? q.httpPath.map((p) => {
          try {
            return new RegExp(p);
          } catch (e) {
            throw new FlowFilterError(`--http-path ${JSON.stringify(p)} is not a regular expression: ${(e as Error).message}`);
          }
        })
      : undefined,
  };
  for (const code of q.httpStatusCode ?? []) {
    if (!STATUS_FULL.test(code) && !STATUS_PREFIX.test(code)) throw new FlowFilterError(`--http-status ${JSON.stringify(code)} is neither a status code (100-599) nor a prefix such as 5+ or 40+`);
  }
  for (const t of q.eventType ?? []) {
    if (!(EVENT_TYPES as readonly string[]).includes(t)) throw new FlowFilterError(`--type ${JSON.stringify(t)} is not an event type we report (${EVENT_TYPES.join(', ')})`);
  }
  compiledCache.set(q, c);
  return c;
}

/** Throws FlowFilterError naming the first filter value that cannot be used. */
export function validateRequest(req: Pick<GetFlowsRequest, 'whitelist' | 'blacklist'>): void {
  for (const q of [...(req.whitelist ?? []), ...(req.blacklist ?? [])]) compile(q);
}

function podMatches(ep: Endpoint, patterns: string[]): boolean {
  const full = `${ep.namespace}/${ep.podName}`;
  return patterns.some((p) => (ep.namespace !== '' || ep.podName !== '') && full.startsWith(p));
}

function ipMatches(ip: string, patterns: string[]): boolean {
  if (!ip) return false;
  return patterns.some((p) => {
    if (!p.includes('/')) return p === ip;
    try {
      const addr = ipaddr.process(ip);
      const [net, bits] = ipaddr.parseCIDR(p);
      return addr.kind() === net.kind() && addr.match(net, bits);
    } catch {
      return false;
    }
  });
}

/** "spiffe://td/ns/x/sa/y" matches itself and its tail "x/y" (namespace/service account). */
function identityMatches(id: string, patterns: string[]): boolean {
  if (!id) return false;
  return patterns.some((p) => {
    if (p === id) return true;
    const [ns, sa, extra] = p.split('/');
    return extra === undefined && ns !== undefined && sa !== undefined && id.endsWith(`/ns/${ns}/sa/${sa}`);
  });
}

function protocolMatches(f: Flow, patterns: string[]): boolean {
  return patterns.some((raw) => {
    const p = raw.toLowerCase();
    if (p === 'tcp') return true; // every flow we record is TCP
    if (p === 'hbone' || p === 'mtls') return f.ip.encrypted;
    if (p === 'plaintext') return !f.ip.encrypted;
    if (p === 'http') return f.l7?.http != null;
    return false;
  });
}

const set = <T>(v: T[] | undefined): v is T[] => v !== undefined && v.length > 0;

/**
 * "[namespace/]name" names a Service (hubble's form); a value without a slash is also taken as a
 * hostname or its first labels ("web", "web.shop"), as before.
 */
function serviceMatches(host: string | undefined, patterns: string[]): boolean {
  if (!host) return false;
  return patterns.some((p) => {
    const slash = p.indexOf('/');
    if (slash < 0) return host === p || host.startsWith(`${p}.`);
    const ns = p.slice(0, slash);
    const name = p.slice(slash + 1);
    const want = name ? `${name}.${ns}` : '';
    // "ns/" is every Service of the namespace.
    return want ? host === want || host.startsWith(`${want}.`) : host.split('.')[1] === ns;
  });
}

function statusMatches(code: number, patterns: string[]): boolean {
  if (!code) return false;
  const c = String(code);
  return patterns.some((p) => (p.endsWith('+') ? c.startsWith(p.slice(0, -1)) : c === p));
}

function hasPolicy(f: Flow): boolean {
  return Boolean(f.ingressAllowedBy?.length || f.ingressDeniedBy?.length || f.egressAllowedBy?.length || f.egressDeniedBy?.length);
}

function eventTypeMatches(f: Flow, types: string[]): boolean {
  return types.some((t) => {
    switch (t) {
      case 'l7':
        return f.type === 'L7';
      case 'drop':
        return f.type !== 'L7' && f.verdict === 'DROPPED';
      case 'trace':
        return f.type !== 'L7' && f.verdict !== 'DROPPED';
      case 'policy-verdict':
        return f.type !== 'L7' && hasPolicy(f);
      case 'trace-sock':
        return f.reporter === 'kernel';
      default:
        return false;
    }
  });
}

function pathOf(url: string): string {
  const q = url.search(/[?#]/);
  return q < 0 ? url : url.slice(0, q);
}

export function flowMatches(f: Flow, q: FlowFilter): boolean {
  if (set(q.sourcePod) && !podMatches(f.source, q.sourcePod)) return false;
  if (set(q.destinationPod) && !podMatches(f.destination, q.destinationPod)) return false;
  if (set(q.sourceIp) && !ipMatches(f.ip.source, q.sourceIp)) return false;
  if (set(q.destinationIp) && !ipMatches(f.ip.destination, q.destinationIp)) return false;
  if (set(q.sourceIdentity) && !identityMatches(f.source.identity, q.sourceIdentity)) return false;
  if (set(q.destinationIdentity) && !identityMatches(f.destination.identity, q.destinationIdentity)) return false;
  if (set(q.verdict) && !q.verdict.includes(f.verdict)) return false;
  if (set(q.protocol) && !protocolMatches(f, q.protocol)) return false;
  if (set(q.sourcePort) && !q.sourcePort.includes(f.tcp.sourcePort)) return false;
  if (set(q.destinationPort) && !q.destinationPort.includes(f.tcp.destinationPort)) return false;
  if (set(q.nodeName) && !q.nodeName.includes(f.nodeName)) return false;
  if (set(q.trafficDirection) && !q.trafficDirection.includes(f.trafficDirection)) return false;
  if (set(q.destinationService) && !serviceMatches(f.destinationService, q.destinationService)) return false;
  if (set(q.sourceService) && !serviceMatches(f.sourceService, q.sourceService)) return false;
  const c = compile(q);
  if (c.sourceLabel && !c.sourceLabel.some((sel) => selectorMatches(sel, f.source.labels ?? []))) return false;
  if (c.destinationLabel && !c.destinationLabel.some((sel) => selectorMatches(sel, f.destination.labels ?? []))) return false;
  const http = f.l7?.http;
  if (set(q.httpStatusCode) && !(http && statusMatches(http.code, q.httpStatusCode))) return false;
  if (set(q.httpMethod) && !(http && q.httpMethod.some((m) => m.toUpperCase() === http.method.toUpperCase()))) return false;
  if (c.httpPath && !(http && c.httpPath.some((re) => re.test(pathOf(http.url))))) return false;
  if (set(q.eventType) && !eventTypeMatches(f, q.eventType)) return false;
  return true;
}

export function requestMatches(f: Flow, req: Pick<GetFlowsRequest, 'whitelist' | 'blacklist' | 'sinceUnixNano' | 'untilUnixNano'>): boolean {
  if (req.sinceUnixNano && f.timeUnixNano < req.sinceUnixNano) return false;
  if (req.untilUnixNano && f.timeUnixNano > req.untilUnixNano) return false;
  if (req.whitelist?.length && !req.whitelist.some((q) => flowMatches(f, q))) return false;
  if (req.blacklist?.some((q) => flowMatches(f, q))) return false;
  return true;
}

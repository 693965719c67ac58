// Flow filters with Hubble's semantics: inside one filter every field that is set must match
// (AND) and a field's values are alternatives (OR); a request keeps a flow that matches any
// whitelist filter (or there are none) and no blacklist filter.
import ipaddr from 'ipaddr.js';
import type { Endpoint, Flow, FlowFilter, GetFlowsRequest } from './types.ts';

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
  if (set(q.destinationService) && !q.destinationService.some((s) => f.destinationService === s || f.destinationService.startsWith(`${s}.`))) return false;
  return true;
}

export function requestMatches(f: Flow, req: Pick<GetFlowsRequest, 'whitelist' | 'blacklist' | 'sinceUnixNano' | 'untilUnixNano'>): boolean {
  if (req.sinceUnixNano && f.timeUnixNano < req.sinceUnixNano) return false;
  if (req.untilUnixNano && f.timeUnixNano > req.untilUnixNano) return false;
  if (req.whitelist?.length && !req.whitelist.some((q) => flowMatches(f, q))) return false;
  if (req.blacklist?.some((q) => flowMatches(f, q))) return false;
  return true;
}

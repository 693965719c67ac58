// How `meshctl flows` prints flows: hubble observe's compact, table, dict and JSON outputs, its
// time formats, and its L7 lines ("http-request" / "http-response" with method, URL, code and
// latency), plus what only we know: both SPIFFE identities, mTLS or plaintext, the kernel's
// decision, bytes and duration, and why a connection was not captured.
import type { Endpoint, Flow, GetFlowsResponse, PolicyRef } from '../flows/types.ts';

/** hubble observe --time-format (hubble pkg/time: Go layouts). Printed in UTC. */
export const TIME_FORMATS = ['StampMilli', 'RFC3339', 'RFC3339Milli', 'RFC3339Micro', 'RFC3339Nano', 'RFC1123Z'] as const;
export type TimeFormat = (typeof TIME_FORMATS)[number];

export interface PrintOptions {
  printNodeName?: boolean | undefined;
  printPolicyNames?: boolean | undefined;
  timeFormat?: TimeFormat | undefined;
}

/** Older callers pass only whether to print the node. */
type PrintArg = boolean | PrintOptions;
const opts = (p: PrintArg): PrintOptions => (typeof p === 'boolean' ? { printNodeName: p } : p);

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/**
 * A time in one of hubble's formats, in UTC so that output does not depend on TZ. Go's layouts:
 * StampMilli "Jan _2 15:04:05.000" (day padded with a space), RFC3339 without fraction,
 * RFC3339Milli/Micro with 3/6 digits, RFC3339Nano with up to 9 and trailing zeros trimmed,
 * RFC1123Z "Mon, 02 Jan 2006 15:04:05 -0700".
 */
export function formatTime(ns: number, format: TimeFormat = 'StampMilli'): string {
  const ms = Math.floor(ns / 1e6);
  const d = new Date(ms);
  const hms = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  const date = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  // A double holds nanoseconds since 1970 only to ~0.25 µs: keep whole microseconds, which are known.
  const subMs = Math.min(999_000, Math.max(0, Math.round((ns - ms * 1e6) / 1000) * 1000));
  const fracNs = subMs + (ms % 1000) * 1e6;
  const frac9 = pad(fracNs, 9);
  switch (format) {
    case 'StampMilli':
      return `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${hms}.${pad(d.getUTCMilliseconds(), 3)}`;
    case 'RFC3339':
      return `${date}T${hms}Z`;
    case 'RFC3339Milli':
      return `${date}T${hms}.${frac9.slice(0, 3)}Z`;
    case 'RFC3339Micro':
      return `${date}T${hms}.${frac9.slice(0, 6)}Z`;
    case 'RFC3339Nano': {
      const f = frac9.replace(/0+$/, '');
      return `${date}T${hms}${f ? `.${f}` : ''}Z`;
    }
    case 'RFC1123Z':
      return `${DAYS[d.getUTCDay()]}, ${pad(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${hms} +0000`;
  }
  return String(ns);
}

/** hubble's StampMilli: "Nov 22 10:04:05.123". */
export function stamp(ns: number): string {
  return formatTime(ns, 'StampMilli');
}

function endpointText(ep: Endpoint, ip: string, port: number): string {
  const host = ep.podName ? `${ep.namespace}/${ep.podName}` : ip.includes(':') ? `[${ip}]` : ip;
  return `${host}:${port}`;
}

function identityText(f: Flow, ep: Endpoint): string {
  return f.ip.encrypted && ep.identity ? ep.identity : 'plaintext';
}

function bytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} kB` : `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** An L7 flow is a request when it was refused before it went anywhere, else the answered response. */
function l7Kind(f: Flow): 'request' | 'response' {
  if (f.l7?.type === 'REQUEST') return 'request';
  if (f.l7?.type === 'RESPONSE') return 'response';
  return f.verdict === 'DROPPED' ? 'request' : 'response';
}

export function flowType(f: Flow): string {
  if (f.type === 'L7') return `${f.l7?.http ? 'http' : 'l7'}-${l7Kind(f)}`;
  if (f.reporter === 'kernel') return f.verdict === 'DROPPED' ? 'fail-closed' : 'observed';
  return f.trafficDirection === 'INGRESS' ? 'ingress' : 'egress';
}

function latency(ns: number): string {
  const ms = ns / 1e6;
  return ms >= 10 ? `${Math.round(ms)}ms` : `${ms.toFixed(ms >= 1 ? 1 : 2)}ms`;
}

/** Hubble's L7 summary: "HTTP/1.1 GET /path" for a request, "HTTP/1.1 200 2ms (GET /path)" for a response. */
function l7Summary(f: Flow): string {
  const h = f.l7?.http;
  if (!h) return f.summary || f.protocol;
  const proto = h.protocol || 'HTTP';
  const head = l7Kind(f) === 'request' ? `${proto} ${h.method} ${h.url}` : `${proto} ${h.code} ${latency(f.l7?.latencyNs ?? 0)} (${h.method} ${h.url})`;
  const parts = [head];
  if (f.responseFlags && f.responseFlags !== '-') parts.push(`flags ${f.responseFlags}`);
  if (f.destinationService) parts.push(`via ${f.destinationService}`);
  if (f.dropReasonDesc) parts.push(f.dropReasonDesc);
  return parts.join(', ');
}

export function summary(f: Flow): string {
  if (f.type === 'L7') return l7Summary(f);
  const parts = [f.summary || f.protocol];
  if (f.destinationService) parts.push(`via ${f.destinationService}`);
  if (f.verdict === 'FORWARDED') parts.push(`${bytes(f.bytesSent)} → ${bytes(f.bytesReceived)} ←`, `${f.durationMs} ms`);
  if (f.dropReasonDesc) parts.push(f.dropReasonDesc);
  if (f.notCapturedReason) parts.push(`not captured: ${f.notCapturedReason}`);
  if (f.kernel) parts.push(`kernel: ${f.kernel.decision}${f.kernel.redirectPort && f.kernel.decision !== 'OBSERVED' ? `→${f.kernel.redirectPort}` : ''}`);
  return parts.join(', ');
}

const policyText = (p: PolicyRef) => `${p.kind || 'AuthorizationPolicy'} ${p.namespace ? `${p.namespace}/` : ''}${p.name}`;

/** "ALLOWED BY …" / "DENIED BY …" for --print-policy-names; '' when no policy decided. */
export function policyNames(f: Flow): string {
  const denied = [...(f.ingressDeniedBy ?? []), ...(f.egressDeniedBy ?? [])];
  const allowed = [...(f.ingressAllowedBy ?? []), ...(f.egressAllowedBy ?? [])];
  const out: string[] = [];
  if (denied.length) out.push(`DENIED BY ${denied.map(policyText).join(', ')}`);
  if (allowed.length) out.push(`ALLOWED BY ${allowed.map(policyText).join(', ')}`);
  return out.join('; ');
}

export function compactLine(r: GetFlowsResponse, print: PrintArg): string {
  const o = opts(print);
  const time = (ns: number) => formatTime(ns, o.timeFormat);
  const node = o.printNodeName && r.nodeName ? ` [${r.nodeName}]` : '';
  if (r.responseTypes === 'lostEvents') return `${time(r.timeUnixNano)}${node}: EVENTS LOST: ${r.lostEvents.source} ${r.lostEvents.numEventsLost} — ${r.lostEvents.detail}`;
  if (r.responseTypes === 'nodeStatus') return `${time(r.timeUnixNano)}: NODE ${r.nodeStatus.state} ${r.nodeStatus.nodeNames.join(',')}: ${r.nodeStatus.message}`;
  const f = r.flow;
  const src = `${endpointText(f.source, f.ip.source, f.tcp.sourcePort)} (${identityText(f, f.source)})`;
  const dst = `${endpointText(f.destination, f.ip.destination, f.tcp.destinationPort)} (${identityText(f, f.destination)})`;
  const names = o.printPolicyNames ? policyNames(f) : '';
  return `${time(f.timeUnixNano)}${node}: ${src} -> ${dst} ${flowType(f)} ${f.verdict}${names ? ` ${names}` : ''} (${summary(f)})`;
}

export function jsonLine(r: GetFlowsResponse): string {
  const time = new Date(Math.floor(r.timeUnixNano / 1e6)).toISOString();
  if (r.responseTypes === 'flow') return JSON.stringify({ flow: { ...r.flow, time }, node_name: r.nodeName, time });
  if (r.responseTypes === 'lostEvents') return JSON.stringify({ lost_events: r.lostEvents, node_name: r.nodeName, time });
  return JSON.stringify({ node_status: r.nodeStatus, time });
}

export function dictBlock(r: GetFlowsResponse, print: PrintArg = {}): string {
  const o = opts(print);
  if (r.responseTypes !== 'flow') return `${compactLine(r, { ...o, printNodeName: true })}\n------------`;
  const f = r.flow;
  const rows: [string, string][] = [
    ['TIMESTAMP', formatTime(f.timeUnixNano, o.timeFormat)],
    ['SOURCE', endpointText(f.source, f.ip.source, f.tcp.sourcePort)],
    ['SOURCE IDENTITY', identityText(f, f.source)],
    ['DESTINATION', endpointText(f.destination, f.ip.destination, f.tcp.destinationPort)],
    ['DESTINATION IDENTITY', identityText(f, f.destination)],
    ['TYPE', flowType(f)],
    ['VERDICT', f.verdict],
    ['SUMMARY', summary(f)],
    ...(o.printPolicyNames ? [['POLICIES', policyNames(f) || '-'] as [string, string]] : []),
    ['NODE', r.nodeName],
  ];
  return `${rows.map(([k, v]) => `${k.padStart(20)}: ${v}`).join('\n')}\n------------`;
}

export function tableRows(rs: GetFlowsResponse[], print: PrintArg): string {
  const o = opts(print);
  const printNode = Boolean(o.printNodeName);
  const head = ['TIMESTAMP', ...(printNode ? ['NODE'] : []), 'SOURCE', 'DESTINATION', 'TYPE', 'VERDICT', ...(o.printPolicyNames ? ['POLICIES'] : []), 'SUMMARY'];
  const rows = rs.flatMap((r) => {
    if (r.responseTypes !== 'flow') return [];
    const f = r.flow;
    return [
      [
        formatTime(f.timeUnixNano, o.timeFormat),
        ...(printNode ? [r.nodeName] : []),
        `${endpointText(f.source, f.ip.source, f.tcp.sourcePort)} (${identityText(f, f.source)})`,
        `${endpointText(f.destination, f.ip.destination, f.tcp.destinationPort)} (${identityText(f, f.destination)})`,
        flowType(f),
        f.verdict,
        ...(o.printPolicyNames ? [policyNames(f) || '-'] : []),
        summary(f),
      ],
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

// `meshctl flows`: the mesh's flows from every node, through the controller's relay — `hubble
// observe` for Mesh, with its flags, filters and output formats, plus what only we know: both
// SPIFFE identities, mTLS or plaintext, the kernel's decision, bytes and duration.
import type * as grpc from '@grpc/grpc-js';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { Endpoint, Flow, FlowFilter, GetFlowsRequest, GetFlowsResponse, TrafficDirection, Verdict } from '../../flows/types.ts';
import { DEFAULT_STATE_DIR } from '../endpoints.ts';
import { relayAccess } from '../relay.ts';

const VERDICTS: Verdict[] = ['FORWARDED', 'DROPPED', 'ERROR'];
const PROTOCOLS = ['tcp', 'hbone', 'mtls', 'plaintext', 'http'];
const OUTPUTS = ['compact', 'table', 'json', 'jsonpb', 'dict'] as const;
type Output = (typeof OUTPUTS)[number];

export interface FlowsOptions {
  stateDir: string;
  server?: string;
  last?: number;
  first?: number;
  all?: boolean;
  follow?: boolean;
  since?: string;
  until?: string;
  namespace: string[];
  allNamespaces?: boolean;
  pod: string[];
  fromPod: string[];
  toPod: string[];
  fromNamespace: string[];
  toNamespace: string[];
  identity: string[];
  fromIdentity: string[];
  toIdentity: string[];
  ip: string[];
  fromIp: string[];
  toIp: string[];
  port: number[];
  fromPort: number[];
  toPort: number[];
  verdict: Verdict[];
  protocol: string[];
  nodeName: string[];
  trafficDirection: TrafficDirection[];
  toService: string[];
  output: Output;
  printNodeName?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];
const collectPort = (v: string, prev: number[]) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError(`${v} is not a port (1-65535)`);
  return [...prev, n];
};
const collectVerdict = (v: string, prev: Verdict[]) => {
  const u = v.toUpperCase() as Verdict;
  if (!VERDICTS.includes(u)) throw new InvalidArgumentError(`${v} is not a verdict (${VERDICTS.join(', ')})`);
  return [...prev, u];
};
const collectProtocol = (v: string, prev: string[]) => {
  if (!PROTOCOLS.includes(v.toLowerCase())) throw new InvalidArgumentError(`${v} is not a protocol (${PROTOCOLS.join(', ')})`);
  return [...prev, v.toLowerCase()];
};
const collectDirection = (v: string, prev: TrafficDirection[]) => {
  const u = v.toUpperCase();
  if (u !== 'INGRESS' && u !== 'EGRESS') throw new InvalidArgumentError(`${v} is not a traffic direction (ingress, egress)`);
  return [...prev, u as TrafficDirection];
};
const count = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${v} is not a positive count`);
  return n;
};

/** "5m", "90s", "2h", "1d" before now, or an RFC 3339 time → ns since the epoch. */
export function parseTime(v: string, now = Date.now()): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v.trim());
  if (m) {
    const mult = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return (now - Number(m[1]) * mult) * 1e6;
  }
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new InvalidArgumentError(`${v} is neither a duration (30s, 5m, 2h) nor a time (2026-11-22T10:00:00Z)`);
  return t * 1e6;
}

/** `--pod x` means default/x unless a namespace is given, as in hubble. */
function podRef(v: string, ns: string[]): string {
  return v.includes('/') ? v : `${ns[0] ?? 'default'}/${v}`;
}

/**
 * Hubble's filter building: flags without a direction (--pod, --namespace, --ip, --identity,
 * --port) match either end, so they make two filters — one with them on the source side, one on
 * the destination side; --from-* and --to-* and the rest go into both.
 */
export function buildRequest(o: FlowsOptions, now = Date.now()): GetFlowsRequest {
  const left: FlowFilter = {};
  const right: FlowFilter = {};
  const both = (k: keyof FlowFilter, v: unknown[]) => {
    if (v.length === 0) return;
    (left as Record<string, unknown[]>)[k] = [...((left as Record<string, unknown[]>)[k] ?? []), ...v];
    (right as Record<string, unknown[]>)[k] = [...((right as Record<string, unknown[]>)[k] ?? []), ...v];
  };
  const neutralPods = [...o.pod.map((p) => podRef(p, o.namespace)), ...(o.allNamespaces ? [] : o.namespace.map((n) => `${n}/`))];
  const neutral = neutralPods.length + o.ip.length + o.identity.length + o.port.length > 0;
  if (neutralPods.length) {
    left.sourcePod = neutralPods;
    right.destinationPod = neutralPods;
  }
  if (o.ip.length) {
    left.sourceIp = o.ip;
    right.destinationIp = o.ip;
  }
  if (o.identity.length) {
    left.sourceIdentity = o.identity;
    right.destinationIdentity = o.identity;
  }
  if (o.port.length) {
    left.sourcePort = o.port;
    right.destinationPort = o.port;
  }
  both('sourcePod', [...o.fromPod.map((p) => podRef(p, o.namespace)), ...o.fromNamespace.map((n) => `${n}/`)]);
  both('destinationPod', [...o.toPod.map((p) => podRef(p, o.namespace)), ...o.toNamespace.map((n) => `${n}/`)]);
  both('sourceIdentity', o.fromIdentity);
  both('destinationIdentity', o.toIdentity);
  both('sourceIp', o.fromIp);
  both('destinationIp', o.toIp);
  both('sourcePort', o.fromPort);
  both('destinationPort', o.toPort);
  both('verdict', o.verdict);
  both('protocol', o.protocol);
  both('nodeName', o.nodeName);
  both('trafficDirection', o.trafficDirection);
  both('destinationService', o.toService);
  const whitelist = neutral ? [left, right] : Object.keys(left).length ? [left] : [];
  const req: GetFlowsRequest = { whitelist, blacklist: [], follow: Boolean(o.follow) };
  if (o.first) {
    req.first = true;
    req.number = o.first;
  } else if (o.all) req.number = 0;
  else if (o.last) req.number = o.last;
  else if (!o.follow && !o.since) req.number = 20; // hubble's default
  if (o.since) req.sinceUnixNano = parseTime(o.since, now);
  if (o.until) req.untilUnixNano = parseTime(o.until, now);
  return req;
}

// ---- output -----------------------------------------------------------------------------------

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** hubble's StampMilli: "Nov 22 10:04:05.123" (UTC here, so output does not depend on TZ). */
export function stamp(ns: number): string {
  const d = new Date(Math.floor(ns / 1e6));
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${MONTHS[d.getUTCMonth()]} ${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}`;
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

export function flowType(f: Flow): string {
  if (f.reporter === 'kernel') return f.verdict === 'DROPPED' ? 'fail-closed' : 'observed';
  return f.trafficDirection === 'INGRESS' ? 'ingress' : 'egress';
}

export function summary(f: Flow): string {
  const parts = [f.summary || f.protocol];
  if (f.destinationService) parts.push(`via ${f.destinationService}`);
  if (f.verdict === 'FORWARDED') parts.push(`${bytes(f.bytesSent)} → ${bytes(f.bytesReceived)} ←`, `${f.durationMs} ms`);
  if (f.dropReasonDesc) parts.push(f.dropReasonDesc);
  if (f.kernel) parts.push(`kernel: ${f.kernel.decision}${f.kernel.redirectPort && f.kernel.decision !== 'OBSERVED' ? `→${f.kernel.redirectPort}` : ''}`);
  return parts.join(', ');
}

export function compactLine(r: GetFlowsResponse, printNode: boolean): string {
  const node = printNode && r.nodeName ? ` [${r.nodeName}]` : '';
  if (r.responseTypes === 'lostEvents') return `${stamp(r.timeUnixNano)}${node}: EVENTS LOST: ${r.lostEvents.source} ${r.lostEvents.numEventsLost} — ${r.lostEvents.detail}`;
  if (r.responseTypes === 'nodeStatus') return `${stamp(r.timeUnixNano)}: NODE ${r.nodeStatus.state} ${r.nodeStatus.nodeNames.join(',')}: ${r.nodeStatus.message}`;
  const f = r.flow;
  const src = `${endpointText(f.source, f.ip.source, f.tcp.sourcePort)} (${identityText(f, f.source)})`;
  const dst = `${endpointText(f.destination, f.ip.destination, f.tcp.destinationPort)} (${identityText(f, f.destination)})`;
  return `${stamp(f.timeUnixNano)}${node}: ${src} -> ${dst} ${flowType(f)} ${f.verdict} (${summary(f)})`;
}

function jsonLine(r: GetFlowsResponse): string {
  const time = new Date(Math.floor(r.timeUnixNano / 1e6)).toISOString();
  if (r.responseTypes === 'flow') return JSON.stringify({ flow: { ...r.flow, time }, node_name: r.nodeName, time });
  if (r.responseTypes === 'lostEvents') return JSON.stringify({ lost_events: r.lostEvents, node_name: r.nodeName, time });
  return JSON.stringify({ node_status: r.nodeStatus, time });
}

function dictBlock(r: GetFlowsResponse): string {
  if (r.responseTypes !== 'flow') return `${compactLine(r, true)}\n------------`;
  const f = r.flow;
  const rows: [string, string][] = [
    ['TIMESTAMP', stamp(f.timeUnixNano)],
    ['SOURCE', endpointText(f.source, f.ip.source, f.tcp.sourcePort)],
    ['SOURCE IDENTITY', identityText(f, f.source)],
    ['DESTINATION', endpointText(f.destination, f.ip.destination, f.tcp.destinationPort)],
    ['DESTINATION IDENTITY', identityText(f, f.destination)],
    ['TYPE', flowType(f)],
    ['VERDICT', f.verdict],
    ['SUMMARY', summary(f)],
    ['NODE', r.nodeName],
  ];
  return `${rows.map(([k, v]) => `${k.padStart(20)}: ${v}`).join('\n')}\n------------`;
}

export function tableRows(rs: GetFlowsResponse[], printNode: boolean): string {
  const head = ['TIMESTAMP', ...(printNode ? ['NODE'] : []), 'SOURCE', 'DESTINATION', 'TYPE', 'VERDICT', 'SUMMARY'];
  const rows = rs.flatMap((r) => {
    if (r.responseTypes !== 'flow') return [];
    const f = r.flow;
    return [[stamp(f.timeUnixNano), ...(printNode ? [r.nodeName] : []), `${endpointText(f.source, f.ip.source, f.tcp.sourcePort)} (${identityText(f, f.source)})`, `${endpointText(f.destination, f.ip.destination, f.tcp.destinationPort)} (${identityText(f, f.destination)})`, flowType(f), f.verdict, summary(f)]];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

// ---- the command -----------------------------------------------------------------------------

async function observe(o: FlowsOptions): Promise<void> {
  const req = buildRequest(o);
  const access = await relayAccess(o);
  const address = access.address;
  // gRPC and the Observer proto load here: other commands start without them.
  const { credentials, status: code } = await import('@grpc/grpc-js');
  const { observerClient } = await import('../../flows/server.ts');
  const client = observerClient(address, credentials.createInsecure());
  const out = process.stdout;
  const table: GetFlowsResponse[] = [];
  let headerShown = false;
  await new Promise<void>((resolve, reject) => {
    // Wait for the relay to be reachable rather than failing on the first try, briefly.
    client.waitForReady(Date.now() + 5000, (err) => {
      if (err) {
        reject(new Error(`cannot reach the flow relay at ${address}: ${err.message} — is the mesh running (\`meshctl dev status\`), or is --server right?`));
        return;
      }
      const stream = client.GetFlows(req);
      const stop = () => stream.cancel();
      process.once('SIGINT', stop);
      stream.on('data', (r: GetFlowsResponse) => {
        if (o.output === 'table' && !o.follow) table.push(r);
        else if (o.output === 'table') {
          // Following: rows as they come (the header once); widths cannot be known ahead. Lost
          // events and node status are not rows: they print as lines, never dropped.
          if (r.responseTypes !== 'flow') out.write(`${compactLine(r, true)}\n`);
          else {
            const lines = tableRows([r], Boolean(o.printNodeName)).split('\n');
            out.write(`${(headerShown ? lines.slice(1) : lines).join('\n')}\n`);
            headerShown = true;
          }
        } else if (o.output === 'json' || o.output === 'jsonpb') out.write(`${jsonLine(r)}\n`);
        else if (o.output === 'dict') out.write(`${dictBlock(r)}\n`);
        else out.write(`${compactLine(r, Boolean(o.printNodeName))}\n`);
      });
      stream.on('error', (e: grpc.ServiceError) => {
        process.off('SIGINT', stop);
        if (e.code === code.CANCELLED) resolve();
        else reject(new Error(`flow relay at ${address}: ${e.details || e.message}`));
      });
      stream.on('end', () => {
        process.off('SIGINT', stop);
        resolve();
      });
    });
  }).finally(() => {
    client.close();
    access.close();
  });
  if (o.output === 'table' && !o.follow) {
    for (const r of table) if (r.responseTypes !== 'flow') out.write(`${compactLine(r, true)}\n`);
    out.write(`${tableRows(table, Boolean(o.printNodeName))}\n`);
  }
}

export function flowsCommand(): Command {
  return new Command('flows')
    .alias('observe')
    .description('show the flows of every node (hubble observe for the mesh): who talked to whom, with which SPIFFE identities, over mTLS or not, and the verdict')
    .addOption(new Option('--state-dir <dir>', "the local cluster's state directory, where mesh.json records the relay (env MESH_DEV_STATE_DIR)").default(DEFAULT_STATE_DIR))
    .option('--server <host:port>', 'the flow relay to ask (default: the one in mesh.json, else a port-forward to the controller pod in mesh-system through the kubeconfig)')
    .option('--last <n>', 'the last N flows (default 20)', count)
    .option('--first <n>', 'the first N flows still kept', count)
    .option('--all', 'every flow still kept')
    .option('-f, --follow', 'keep streaming new flows')
    .option('--since <time>', 'flows since a time (RFC 3339) or a duration ago (30s, 5m, 2h)')
    .option('--until <time>', 'flows until a time or a duration ago')
    .option('-n, --namespace <ns>', 'flows from or to this namespace (repeatable)', collect, [])
    .option('-A, --all-namespaces', 'flows in every namespace (the default)')
    .option('--pod <[ns/]name>', 'flows from or to pods with this name prefix (repeatable)', collect, [])
    .option('--from-pod <[ns/]name>', 'flows from this pod', collect, [])
    .option('--to-pod <[ns/]name>', 'flows to this pod', collect, [])
    .option('--from-namespace <ns>', 'flows from this namespace', collect, [])
    .option('--to-namespace <ns>', 'flows to this namespace', collect, [])
    .option('--identity <id>', 'flows from or to this SPIFFE identity (or ns/serviceaccount)', collect, [])
    .option('--from-identity <id>', 'flows from this identity', collect, [])
    .option('--to-identity <id>', 'flows to this identity', collect, [])
    .option('--ip <ip|cidr>', 'flows from or to this address', collect, [])
    .option('--from-ip <ip|cidr>', 'flows from this address', collect, [])
    .option('--to-ip <ip|cidr>', 'flows to this address', collect, [])
    .option('--port <port>', 'flows from or to this port', collectPort, [])
    .option('--from-port <port>', 'flows from this port', collectPort, [])
    .option('--to-port <port>', 'flows to this port', collectPort, [])
    .option('--to-service <host>', 'flows addressed to this Service (hostname or its first labels)', collect, [])
    .addOption(new Option('--verdict <verdict>', `only this verdict (${VERDICTS.join(', ')}; repeatable)`).argParser(collectVerdict).default([]))
    .addOption(new Option('--protocol <protocol>', `only this protocol (${PROTOCOLS.join(', ')}; repeatable)`).argParser(collectProtocol).default([]))
    .option('--node-name <node>', 'flows seen on this node', collect, [])
    .addOption(new Option('--traffic-direction <dir>', 'ingress or egress').argParser(collectDirection).default([]))
    .addOption(new Option('-o, --output <format>', 'compact, table, json (one object per line), jsonpb or dict').choices([...OUTPUTS]).default('compact'))
    .option('--print-node-name', 'show which node reported each flow')
    .addHelpText(
      'after',
      `
Examples:
  meshctl flows                                  # the last 20 flows of every node
  meshctl flows -n shop --verdict DROPPED        # what was refused in namespace shop
  meshctl flows --to-pod shop/web -f             # follow what reaches the web pods
  meshctl flows --protocol plaintext --since 5m  # who talked outside mTLS lately
  meshctl flows --from-identity shop/frontend -o json
  meshctl flows --print-node-name -o table`,
    )
    .action(async (o: FlowsOptions) => observe(o));
}

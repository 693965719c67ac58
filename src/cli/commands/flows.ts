// `meshctl flows`: the mesh's flows from every node, through the controller's relay — `hubble
// observe` for Mesh, with its flags, filters and output formats, plus what only we know: both
// SPIFFE identities, mTLS or plaintext, the kernel's decision, bytes and duration.
import type * as grpc from '@grpc/grpc-js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { compactLine, dictBlock, jsonLine, type PrintOptions, tableRows, TIME_FORMATS, type TimeFormat } from '../flows-format.ts';
import type { FlowFilter, GetFlowsRequest, GetFlowsResponse, TrafficDirection, Verdict } from '../../flows/types.ts';
import { EVENT_TYPES, validateRequest } from '../../flows/filter.ts';
import { parseSelector } from '../../flows/selector.ts';
import { DEFAULT_STATE_DIR, loadEndpoints } from '../endpoints.ts';

const VERDICTS: Verdict[] = ['FORWARDED', 'DROPPED', 'ERROR'];
const PROTOCOLS = ['tcp', 'hbone', 'mtls', 'plaintext', 'http'];
const OUTPUTS = ['compact', 'table', 'json', 'jsonpb', 'dict'] as const;
type Output = (typeof OUTPUTS)[number];

/** The filter flags: what --not can negate. The ones added later are optional. */
export interface FilterFlags {
  namespace: string[];
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
  fromService?: string[];
  service?: string[];
  label?: string[];
  fromLabel?: string[];
  toLabel?: string[];
  httpStatus?: string[];
  httpMethod?: string[];
  httpPath?: string[];
  type?: string[];
}

export interface FlowsOptions extends FilterFlags {
  stateDir: string;
  server?: string;
  last?: number;
  first?: number;
  all?: boolean;
  follow?: boolean;
  since?: string;
  until?: string;
  allNamespaces?: boolean;
  output: Output;
  printNodeName?: boolean;
  printPolicyNames?: boolean;
  timeFormat?: TimeFormat;
  /** The filters each preceded by --not: flows they match are left out (hubble's blacklist). */
  not?: Partial<FilterFlags>;
}

function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError(`${v} is not a port (1-65535)`);
  return n;
}
function parseVerdict(v: string): Verdict {
  const u = v.toUpperCase() as Verdict;
  if (!VERDICTS.includes(u)) throw new InvalidArgumentError(`${v} is not a verdict (${VERDICTS.join(', ')})`);
  return u;
}
function parseProtocol(v: string): string {
  if (!PROTOCOLS.includes(v.toLowerCase())) throw new InvalidArgumentError(`${v} is not a protocol (${PROTOCOLS.join(', ')})`);
  return v.toLowerCase();
}
function parseDirection(v: string): TrafficDirection {
  const u = v.toUpperCase();
  if (u !== 'INGRESS' && u !== 'EGRESS') throw new InvalidArgumentError(`${v} is not a traffic direction (ingress, egress)`);
  return u as TrafficDirection;
}
function parseType(v: string): string {
  const t = v.toLowerCase();
  if (!(EVENT_TYPES as readonly string[]).includes(t)) throw new InvalidArgumentError(`${v} is not an event type we report (${EVENT_TYPES.join(', ')})`);
  return t;
}
/** The same checks the Observer makes, so that a mistake is a usage error before any call. */
function parseStatus(v: string): string {
  try {
    validateRequest({ whitelist: [{ httpStatusCode: [v] }] });
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return v;
}
function parseRegex(v: string): string {
  try {
    validateRequest({ whitelist: [{ httpPath: [v] }] });
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return v;
}
function parseSelectorFlag(v: string): string {
  try {
    parseSelector(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return v;
}
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
 * Hubble's filter building (hubble cmd/observe flows_filter.go): flags without a direction
 * (--pod, --namespace, --ip, --identity, --port, --label, --service) match either end, so they
 * make two filters — one with them on the source side, one on the destination side; --from-*,
 * --to-* and the rest go into both. The same flags after --not build the blacklist.
 */
export function filtersOf(o: Partial<FilterFlags>, allNamespaces = false): FlowFilter[] {
  const left: FlowFilter = {};
  const right: FlowFilter = {};
  const a = <T>(v: T[] | undefined): T[] => v ?? [];
  const ns = a(o.namespace);
  const both = (k: keyof FlowFilter, v: unknown[]) => {
    if (v.length === 0) return;
    (left as Record<string, unknown[]>)[k] = [...((left as Record<string, unknown[]>)[k] ?? []), ...v];
    (right as Record<string, unknown[]>)[k] = [...((right as Record<string, unknown[]>)[k] ?? []), ...v];
  };
  const split = (l: keyof FlowFilter, r: keyof FlowFilter, v: unknown[]) => {
    if (v.length === 0) return;
    (left as Record<string, unknown[]>)[l] = v;
    (right as Record<string, unknown[]>)[r] = v;
  };
  const neutralPods = [...a(o.pod).map((p) => podRef(p, ns)), ...(allNamespaces ? [] : ns.map((n) => `${n}/`))];
  const neutral = neutralPods.length + a(o.ip).length + a(o.identity).length + a(o.port).length + a(o.label).length + a(o.service).length > 0;
  split('sourcePod', 'destinationPod', neutralPods);
  split('sourceIp', 'destinationIp', a(o.ip));
  split('sourceIdentity', 'destinationIdentity', a(o.identity));
  split('sourcePort', 'destinationPort', a(o.port));
  split('sourceLabel', 'destinationLabel', a(o.label));
  split('sourceService', 'destinationService', a(o.service));
  both('sourcePod', [...a(o.fromPod).map((p) => podRef(p, ns)), ...a(o.fromNamespace).map((n) => `${n}/`)]);
  both('destinationPod', [...a(o.toPod).map((p) => podRef(p, ns)), ...a(o.toNamespace).map((n) => `${n}/`)]);
  both('sourceIdentity', a(o.fromIdentity));
  both('destinationIdentity', a(o.toIdentity));
  both('sourceIp', a(o.fromIp));
  both('destinationIp', a(o.toIp));
  both('sourcePort', a(o.fromPort));
  both('destinationPort', a(o.toPort));
  both('verdict', a(o.verdict));
  both('protocol', a(o.protocol));
  both('nodeName', a(o.nodeName));
  both('trafficDirection', a(o.trafficDirection));
  both('sourceService', a(o.fromService));
  both('destinationService', a(o.toService));
  both('sourceLabel', a(o.fromLabel));
  both('destinationLabel', a(o.toLabel));
  both('httpStatusCode', a(o.httpStatus));
  both('httpMethod', a(o.httpMethod));
  both('httpPath', a(o.httpPath));
  both('eventType', a(o.type));
  return neutral ? [left, right] : Object.keys(left).length ? [left] : [];
}

export function buildRequest(o: FlowsOptions, now = Date.now()): GetFlowsRequest {
  const whitelist = filtersOf(o, o.allNamespaces);
  const blacklist = o.not ? filtersOf(o.not) : [];
  const req: GetFlowsRequest = { whitelist, blacklist, follow: Boolean(o.follow) };
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

// ---- output: src/cli/flows-format.ts ------------------------------------------------------------

export { compactLine, flowType, formatTime, stamp, summary, tableRows } from '../flows-format.ts';

// ---- the command -----------------------------------------------------------------------------

function relayAddress(o: FlowsOptions): string {
  if (o.server) return o.server;
  const e = loadEndpoints(o.stateDir);
  if (!e.relay) throw new Error(`the mesh recorded in ${o.stateDir} has no flow relay address; pass --server host:port`);
  return e.relay;
}

async function observe(o: FlowsOptions): Promise<void> {
  const req = buildRequest(o);
  const address = relayAddress(o);
  // gRPC and the Observer proto load here: other commands start without them.
  const { credentials, status: code } = await import('@grpc/grpc-js');
  const { observerClient } = await import('../../flows/server.ts');
  const client = observerClient(address, credentials.createInsecure());
  const out = process.stdout;
  const table: GetFlowsResponse[] = [];
  const print: PrintOptions = { printNodeName: o.printNodeName, printPolicyNames: o.printPolicyNames, timeFormat: o.timeFormat };
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
          if (r.responseTypes !== 'flow') out.write(`${compactLine(r, { ...print, printNodeName: true })}\n`);
          else {
            const lines = tableRows([r], print).split('\n');
            out.write(`${(headerShown ? lines.slice(1) : lines).join('\n')}\n`);
            headerShown = true;
          }
        } else if (o.output === 'json' || o.output === 'jsonpb') out.write(`${jsonLine(r)}\n`);
        else if (o.output === 'dict') out.write(`${dictBlock(r, print)}\n`);
        else out.write(`${compactLine(r, print)}\n`);
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
  }).finally(() => client.close());
  if (o.output === 'table' && !o.follow) {
    for (const r of table) if (r.responseTypes !== 'flow') out.write(`${compactLine(r, { ...print, printNodeName: true })}\n`);
    out.write(`${tableRows(table, print)}\n`);
  }
}

/** Each filter flag: its option, its FilterFlags key, its description and how a value is parsed. */
type Parse = (v: string) => unknown;
const str: Parse = (v) => v;
const FILTER_FLAGS: { flags: string; key: keyof FilterFlags; help: string; parse?: Parse }[] = [
  { flags: '-n, --namespace <ns>', key: 'namespace', help: 'flows from or to this namespace (repeatable)' },
  { flags: '--pod <[ns/]name>', key: 'pod', help: 'flows from or to pods with this name prefix (repeatable)' },
  { flags: '--from-pod <[ns/]name>', key: 'fromPod', help: 'flows from this pod' },
  { flags: '--to-pod <[ns/]name>', key: 'toPod', help: 'flows to this pod' },
  { flags: '--from-namespace <ns>', key: 'fromNamespace', help: 'flows from this namespace' },
  { flags: '--to-namespace <ns>', key: 'toNamespace', help: 'flows to this namespace' },
  { flags: '--identity <id>', key: 'identity', help: 'flows from or to this SPIFFE identity (or ns/serviceaccount)' },
  { flags: '--from-identity <id>', key: 'fromIdentity', help: 'flows from this identity' },
  { flags: '--to-identity <id>', key: 'toIdentity', help: 'flows to this identity' },
  { flags: '--ip <ip|cidr>', key: 'ip', help: 'flows from or to this address' },
  { flags: '--from-ip <ip|cidr>', key: 'fromIp', help: 'flows from this address' },
  { flags: '--to-ip <ip|cidr>', key: 'toIp', help: 'flows to this address' },
  { flags: '--port <port>', key: 'port', help: 'flows from or to this port', parse: parsePort },
  { flags: '--from-port <port>', key: 'fromPort', help: 'flows from this port', parse: parsePort },
  { flags: '--to-port <port>', key: 'toPort', help: 'flows to this port', parse: parsePort },
  { flags: '-l, --label <selector>', key: 'label', help: 'flows from or to pods whose labels match this selector (app=web,tier in (a,b); repeatable: any)', parse: parseSelectorFlag },
  { flags: '--from-label <selector>', key: 'fromLabel', help: 'flows from pods whose labels match this selector', parse: parseSelectorFlag },
  { flags: '--to-label <selector>', key: 'toLabel', help: 'flows to pods whose labels match this selector', parse: parseSelectorFlag },
  { flags: '--service <[ns/]name>', key: 'service', help: 'flows from or to this Service' },
  { flags: '--from-service <[ns/]name>', key: 'fromService', help: 'flows from pods of this Service' },
  { flags: '--to-service <[ns/]name>', key: 'toService', help: 'flows addressed to this Service ([ns/]name, or a hostname or its first labels)' },
  { flags: '--verdict <verdict>', key: 'verdict', help: `only this verdict (${VERDICTS.join(', ')}; repeatable)`, parse: parseVerdict },
  { flags: '--protocol <protocol>', key: 'protocol', help: `only this protocol (${PROTOCOLS.join(', ')}; repeatable)`, parse: parseProtocol },
  { flags: '-t, --type <type>', key: 'type', help: `only this event type (${EVENT_TYPES.join(', ')}; repeatable)`, parse: parseType },
  { flags: '--http-status <code>', key: 'httpStatus', help: 'L7 flows with this HTTP status, or a prefix: 404, 5+, 40+ (repeatable)', parse: parseStatus },
  { flags: '--http-method <method>', key: 'httpMethod', help: 'L7 flows with this HTTP method (repeatable)' },
  { flags: '--http-path <regex>', key: 'httpPath', help: 'L7 flows whose path matches this regular expression (repeatable)', parse: parseRegex },
  { flags: '--node-name <node>', key: 'nodeName', help: 'flows seen on this node' },
  { flags: '--traffic-direction <dir>', key: 'trafficDirection', help: 'ingress or egress', parse: parseDirection },
];

/** `run` is what the command does with its options: observing, or a test looking at them. */
export function flowsCommand(run: (o: FlowsOptions) => Promise<void> = observe): Command {
  const cmd = new Command('flows');
  // hubble's --not: the next filter flag goes into the blacklist instead (flows_filter.go). Commander
  // parses options in command-line order, so a flag's parser sees whether --not came just before.
  let negate = false;
  const not: Partial<FilterFlags> = {};
  cmd.on('option:not', () => {
    if (negate) cmd.error('error: two --not in a row: --not applies to the one filter flag after it', { code: 'commander.invalidArgument', exitCode: 2 });
    negate = true;
  });
  for (const f of FILTER_FLAGS) {
    const parse = f.parse ?? str;
    cmd.addOption(
      new Option(f.flags, f.help)
        // No default: help stays free of "(default: [])"; the action fills in the empty lists.
        .argParser((v: string, prev: unknown[] | undefined) => {
          const value = parse(v);
          if (!negate) return [...(prev ?? []), value];
          negate = false;
          (not as Record<string, unknown[]>)[f.key] = [...((not as Record<string, unknown[]>)[f.key] ?? []), value];
          return prev ?? [];
        }),
    );
  }
  return cmd
    .alias('observe')
    .description('show the flows of every node (hubble observe for the mesh): who talked to whom, with which SPIFFE identities, over mTLS or not, the verdict, the policy that decided, and each HTTP request a waypoint saw')
    .addOption(new Option('--state-dir <dir>', "the local cluster's state directory, where mesh.json records the relay (env MESH_DEV_STATE_DIR)").default(DEFAULT_STATE_DIR))
    .option('--server <host:port>', 'the flow relay to ask (default: the one in mesh.json; on a cluster, kubectl -n mesh-system port-forward deploy/mesh-controller 4245)')
    .option('--last <n>', 'the last N flows (default 20)', count)
    .option('--first <n>', 'the first N flows still kept', count)
    .option('--all', 'every flow still kept')
    .option('-f, --follow', 'keep streaming new flows')
    .option('--since <time>', 'flows since a time (RFC 3339) or a duration ago (30s, 5m, 2h)')
    .option('--until <time>', 'flows until a time or a duration ago')
    .option('-A, --all-namespaces', 'flows in every namespace (the default)')
    .option('--not', 'leave out the flows the next filter flag matches (--not --namespace kube-system)')
    .addOption(new Option('-o, --output <format>', 'compact, table, json (one object per line), jsonpb or dict').choices([...OUTPUTS]).default('compact'))
    .option('--print-node-name', 'show which node reported each flow')
    .option('--print-policy-names', 'show which policy allowed or denied each flow')
    .addOption(new Option('--time-format <format>', 'how times print (UTC): StampMilli, RFC3339, RFC3339Milli, RFC3339Micro, RFC3339Nano, RFC1123Z').choices([...TIME_FORMATS]).default('StampMilli'))
    .addHelpText(
      'after',
      `
Examples:
  meshctl flows                                  # the last 20 flows of every node
  meshctl flows -n shop --verdict DROPPED        # what was refused in namespace shop
  meshctl flows --to-pod shop/web -f             # follow what reaches the web pods
  meshctl flows --protocol plaintext --since 5m  # who talked outside mTLS lately
  meshctl flows --type l7 --http-status 5+       # HTTP requests that failed on the server side
  meshctl flows --http-status 403 --print-policy-names   # requests a policy denied, and which
  meshctl flows --not --namespace kube-system -l app=web
  meshctl flows --from-identity shop/frontend -o json
  meshctl flows --print-node-name -o table`,
    )
    .action(async (o: FlowsOptions) => {
      if (negate) cmd.error('error: --not must be followed by a filter flag (e.g. --not --namespace kube-system)', { code: 'commander.invalidArgument', exitCode: 2 });
      for (const f of FILTER_FLAGS) (o as unknown as Record<string, unknown[]>)[f.key] ??= [];
      await run({ ...o, not });
    });
}

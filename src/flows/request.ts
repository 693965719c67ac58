// `hubble observe`'s flags → an Observer GetFlowsRequest, in one place for every client that
// speaks them: `meshctl flows` (commander flags) and the dashboard (the same names as URL
// parameters). Values are checked as the Observer checks them (filter.ts), so a mistake is a
// usage error before any call, with the flag named.
import { EVENT_TYPES, FlowFilterError, validateRequest } from './filter.ts';
import { parseSelector } from './selector.ts';
import type { FlowFilter, GetFlowsRequest, TrafficDirection, Verdict } from './types.ts';

export { FlowFilterError };

export const VERDICTS: readonly Verdict[] = ['FORWARDED', 'DROPPED', 'ERROR'];
export const PROTOCOLS: readonly string[] = ['tcp', 'hbone', 'mtls', 'plaintext', 'http'];

/** The filter flags: what --not can negate. */
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

/** What selects the flows besides the filters. */
export interface RequestFlags extends Partial<FilterFlags> {
  last?: number | undefined;
  first?: number | undefined;
  all?: boolean | undefined;
  follow?: boolean | undefined;
  since?: string | undefined;
  until?: string | undefined;
  allNamespaces?: boolean | undefined;
  /** The filters each preceded by --not: flows they match are left out (hubble's blacklist). */
  not?: Partial<FilterFlags> | undefined;
}

type Parse = (v: string) => unknown;

/** A value's error; the caller names the flag or parameter (commander does for the CLI). */
const bad = (_flag: string, msg: string) => new FlowFilterError(msg);

function parsePort(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw bad(flag, `${v} is not a port (1-65535)`);
  return n;
}
function parseVerdict(flag: string, v: string): Verdict {
  const u = v.toUpperCase() as Verdict;
  if (!VERDICTS.includes(u)) throw bad(flag, `${v} is not a verdict (${VERDICTS.join(', ')})`);
  return u;
}
function parseProtocol(flag: string, v: string): string {
  if (!PROTOCOLS.includes(v.toLowerCase())) throw bad(flag, `${v} is not a protocol (${PROTOCOLS.join(', ')})`);
  return v.toLowerCase();
}
function parseDirection(flag: string, v: string): TrafficDirection {
  const u = v.toUpperCase();
  if (u !== 'INGRESS' && u !== 'EGRESS') throw bad(flag, `${v} is not a traffic direction (ingress, egress)`);
  return u as TrafficDirection;
}
function parseType(flag: string, v: string): string {
  const t = v.toLowerCase();
  if (!(EVENT_TYPES as readonly string[]).includes(t)) throw bad(flag, `${v} is not an event type we report (${EVENT_TYPES.join(', ')})`);
  return t;
}
/** The same checks the Observer makes (its messages already name the flag). */
function viaObserver(filter: FlowFilter): void {
  validateRequest({ whitelist: [filter] });
}
function parseStatus(_flag: string, v: string): string {
  viaObserver({ httpStatusCode: [v] });
  return v;
}
function parseRegex(_flag: string, v: string): string {
  viaObserver({ httpPath: [v] });
  return v;
}
function parseLabelSelector(flag: string, v: string): string {
  try {
    parseSelector(v);
  } catch (e) {
    throw bad(flag, (e as Error).message);
  }
  return v;
}

export interface FilterFlag {
  /** The long flag without dashes, as the dashboard's URL parameter too. */
  name: string;
  short?: string;
  /** The value's placeholder in help. */
  value: string;
  key: keyof FilterFlags;
  help: string;
  /** Parses and checks one value; throws FlowFilterError naming the flag. */
  parse: Parse;
}

const flag = (name: string, value: string, key: keyof FilterFlags, help: string, parse?: (flag: string, v: string) => unknown, short?: string): FilterFlag => ({
  name,
  value,
  key,
  help,
  parse: parse ? (v) => parse(name, v) : (v) => v,
  ...(short ? { short } : {}),
});

/** Each filter flag hubble observe has that we report on, in help order. */
export const FILTER_FLAGS: readonly FilterFlag[] = [
  flag('namespace', 'ns', 'namespace', 'flows from or to this namespace (repeatable)', undefined, 'n'),
  flag('pod', '[ns/]name', 'pod', 'flows from or to pods with this name prefix (repeatable)'),
  flag('from-pod', '[ns/]name', 'fromPod', 'flows from this pod'),
  flag('to-pod', '[ns/]name', 'toPod', 'flows to this pod'),
  flag('from-namespace', 'ns', 'fromNamespace', 'flows from this namespace'),
  flag('to-namespace', 'ns', 'toNamespace', 'flows to this namespace'),
  flag('identity', 'id', 'identity', 'flows from or to this SPIFFE identity (or ns/serviceaccount)'),
  flag('from-identity', 'id', 'fromIdentity', 'flows from this identity'),
  flag('to-identity', 'id', 'toIdentity', 'flows to this identity'),
  flag('ip', 'ip|cidr', 'ip', 'flows from or to this address'),
  flag('from-ip', 'ip|cidr', 'fromIp', 'flows from this address'),
  flag('to-ip', 'ip|cidr', 'toIp', 'flows to this address'),
  flag('port', 'port', 'port', 'flows from or to this port', parsePort),
  flag('from-port', 'port', 'fromPort', 'flows from this port', parsePort),
  flag('to-port', 'port', 'toPort', 'flows to this port', parsePort),
  flag('label', 'selector', 'label', 'flows from or to pods whose labels match this selector (app=web,tier in (a,b); repeatable: any)', parseLabelSelector, 'l'),
  flag('from-label', 'selector', 'fromLabel', 'flows from pods whose labels match this selector', parseLabelSelector),
  flag('to-label', 'selector', 'toLabel', 'flows to pods whose labels match this selector', parseLabelSelector),
  flag('service', '[ns/]name', 'service', 'flows from or to this Service'),
  flag('from-service', '[ns/]name', 'fromService', 'flows from pods of this Service'),
  flag('to-service', '[ns/]name', 'toService', 'flows addressed to this Service ([ns/]name, or a hostname or its first labels)'),
  flag('verdict', 'verdict', 'verdict', `only this verdict (${VERDICTS.join(', ')}; repeatable)`, parseVerdict),
  flag('protocol', 'protocol', 'protocol', `only this protocol (${PROTOCOLS.join(', ')}; repeatable)`, parseProtocol),
  flag('type', 'type', 'type', `only this event type (${EVENT_TYPES.join(', ')}; repeatable)`, parseType, 't'),
  flag('http-status', 'code', 'httpStatus', 'L7 flows with this HTTP status, or a prefix: 404, 5+, 40+ (repeatable)', parseStatus),
  flag('http-method', 'method', 'httpMethod', 'L7 flows with this HTTP method (repeatable)'),
  flag('http-path', 'regex', 'httpPath', 'L7 flows whose path matches this regular expression (repeatable)', parseRegex),
  flag('node-name', 'node', 'nodeName', 'flows seen on this node'),
  flag('traffic-direction', 'dir', 'trafficDirection', 'ingress or egress', parseDirection),
];

/** "5m", "90s", "2h", "1d" before now, or an RFC 3339 time → ns since the epoch. */
export function parseTime(v: string, now = Date.now(), name = 'since'): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v.trim());
  if (m) {
    const mult = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return (now - Number(m[1]) * mult) * 1e6;
  }
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw bad(name, `${name} ${v} is neither a duration (30s, 5m, 2h) nor a time (2026-11-22T10:00:00Z)`);
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

/** hubble's default when neither --last, --first, --all, --follow nor --since says. */
export const DEFAULT_LAST = 20;

export function buildRequest(o: RequestFlags, now = Date.now()): GetFlowsRequest {
  const whitelist = filtersOf(o, o.allNamespaces);
  const blacklist = o.not ? filtersOf(o.not) : [];
  const req: GetFlowsRequest = { whitelist, blacklist, follow: Boolean(o.follow) };
  if (o.first) {
    req.first = true;
    req.number = o.first;
  } else if (o.all) req.number = 0;
  else if (o.last) req.number = o.last;
  else if (!o.follow && !o.since) req.number = DEFAULT_LAST;
  if (o.since) req.sinceUnixNano = parseTime(o.since, now, 'since');
  if (o.until) req.untilUnixNano = parseTime(o.until, now, 'until');
  return req;
}

const SCALARS = ['last', 'first', 'since', 'until'] as const;

/**
 * The same flags as URL parameters (`?from-pod=shop/web&verdict=DROPPED&not-namespace=kube-system
 * &last=50`), for clients that are not a command line: each filter flag by its long name, `not-`
 * before one for --not, comma-separated or repeated values. History only (no follow).
 * `defaultLast`: how many flows when neither last nor first is given.
 */
export function requestFromParams(params: URLSearchParams, opts: { defaultLast?: number; maxLast?: number; now?: number } = {}): GetFlowsRequest {
  const byName = new Map(FILTER_FLAGS.map((f) => [f.name, f]));
  const flags: Partial<FilterFlags> = {};
  const not: Partial<FilterFlags> = {};
  for (const k of new Set(params.keys())) {
    if ((SCALARS as readonly string[]).includes(k)) continue;
    const negated = k.startsWith('not-');
    const f = byName.get(negated ? k.slice(4) : k);
    if (!f) throw new FlowFilterError(`unknown flows filter "${k}": use the flags of meshctl flows without the dashes, "not-" before one for --not (${FILTER_FLAGS.map((x) => x.name).join(', ')}, ${SCALARS.join(', ')})`);
    const values = params
      .getAll(k)
      .flatMap((v) => v.split(','))
      .map((v) => v.trim())
      .filter(Boolean)
      .map((v) => {
        try {
          return f.parse(v);
        } catch (e) {
          throw new FlowFilterError(`${k}=${v}: ${(e as Error).message}`);
        }
      });
    const into = (negated ? not : flags) as Record<string, unknown[]>;
    into[f.key] = [...(into[f.key] ?? []), ...values];
  }
  const max = opts.maxLast ?? 4095;
  const count = (name: 'last' | 'first') => {
    const v = params.get(name);
    if (v === null) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw bad(name, `${name}=${v} is not a count (1-${max})`);
    return n;
  };
  const first = count('first');
  return buildRequest(
    {
      ...flags,
      ...(Object.keys(not).length ? { not } : {}),
      ...(first ? { first } : { last: count('last') ?? opts.defaultLast ?? DEFAULT_LAST }),
      since: params.get('since') ?? undefined,
      until: params.get('until') ?? undefined,
    },
    opts.now,
  );
}

// What `meshctl ztunnel-config` shows: ztunnel's /config_dump as it arrives over HTTP, several
// ztunnels' dumps merged into one view, and that view as istioctl-style tables (istioctl
// ztunnel-config's columns, REFERENCE.md "Istio ambient") or as JSON/YAML.
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import * as yaml from 'js-yaml';
import type { CertStatus } from '../identity/index.ts';
import type { Authorization, GatewayAddress, Service, Workload } from '../xds/index.ts';

// ---- the dump's shapes ------------------------------------------------------------------------
// ztunnel's configDump() (src/ztunnel/ztunnel.ts) serialized by the admin server's dumpReplacer
// (src/admin/servers.ts): addresses become IP text and Dates ISO strings.

export interface DumpedNetworkAddress {
  network: string;
  address: string;
}

export type DumpedGateway = Omit<GatewayAddress, 'address'> & { address?: DumpedNetworkAddress | null };

export type DumpedWorkload = Omit<Workload, 'addresses' | 'waypoint'> & {
  addresses: string[];
  waypoint: DumpedGateway | null;
};

export type DumpedService = Omit<Service, 'addresses' | 'waypoint'> & {
  addresses: DumpedNetworkAddress[];
  waypoint: DumpedGateway | null;
};

/** Only the fields shown in tables are read; the rules pass through to JSON as they came. */
export type DumpedPolicy = Pick<Authorization, 'name' | 'namespace' | 'scope' | 'action' | 'dryRun' | 'origin'>;

export type DumpedCertificate = Omit<CertStatus, 'notBefore' | 'notAfter' | 'nextRefresh'> & {
  notBefore?: string;
  notAfter?: string;
  nextRefresh?: string;
};

/** One of ztunnel's live connections (its `live` set): `pod` is the local pod's UID; `src` of an
 * inbound connection and of an outbound one is an IP without a port, `dst` is ip:port. */
export interface DumpedConnection {
  direction: string;
  src: string;
  dst: string;
  pod: string;
  since: string;
}

export interface ZtunnelDump {
  workloads: DumpedWorkload[];
  services: DumpedService[];
  policies: DumpedPolicy[];
  certificates: DumpedCertificate[];
  connections: DumpedConnection[];
}

export const SECTIONS = ['workloads', 'services', 'policies', 'certificates', 'connections'] as const;
export type Section = (typeof SECTIONS)[number];

/** Checks the parts of a dump the tables rely on; throws with what is wrong. */
export function parseDump(value: unknown): ZtunnelDump {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('the answer is not a JSON object');
  const v = value as Record<string, unknown>;
  for (const s of SECTIONS) {
    if (!Array.isArray(v[s])) throw new Error(`it has no "${s}" list`);
    if ((v[s] as unknown[]).some((e) => typeof e !== 'object' || e === null)) throw new Error(`its "${s}" list holds a non-object`);
  }
  return v as unknown as ZtunnelDump;
}

// ---- merging ----------------------------------------------------------------------------------

/** One ztunnel's dump; `node` is unknown when the admin address was given directly. */
export interface NodeDump {
  node: string | undefined;
  dump: ZtunnelDump;
}

/** Per-node entries carry the node they came from when it is known. */
export type OnNode<T> = T & { node?: string };

export interface MergedDump {
  workloads: DumpedWorkload[];
  services: DumpedService[];
  policies: DumpedPolicy[];
  certificates: OnNode<DumpedCertificate>[];
  connections: OnNode<DumpedConnection>[];
  /** More than one ztunnel answered: per-node tables get a NODE column. */
  multiNode: boolean;
}

/**
 * Every ztunnel hears the same workloads, services and policies from the controller, so those
 * are de-duplicated by resource name (the first node in name order wins if two disagree while an
 * update propagates); certificates and connections belong to their node and are all kept.
 */
export function mergeDumps(dumps: readonly NodeDump[]): MergedDump {
  const sorted = [...dumps].sort((a, b) => compare(a.node ?? '', b.node ?? ''));
  const unique = <T>(lists: T[][], key: (t: T) => string): T[] => {
    const seen = new Map<string, T>();
    for (const list of lists) for (const t of list) if (!seen.has(key(t))) seen.set(key(t), t);
    return [...seen.values()];
  };
  const onNode = <T extends object>(d: NodeDump, list: T[]): OnNode<T>[] => list.map((t) => (d.node === undefined ? t : { node: d.node, ...t }));
  return {
    workloads: unique(
      sorted.map((d) => d.dump.workloads),
      (w) => w.uid,
    ),
    services: unique(
      sorted.map((d) => d.dump.services),
      (s) => `${s.namespace}/${s.hostname}`,
    ),
    policies: unique(
      sorted.map((d) => d.dump.policies),
      (p) => `${p.namespace}/${p.name}`,
    ),
    certificates: sorted.flatMap((d) => onNode(d, d.dump.certificates)),
    connections: sorted.flatMap((d) => onNode(d, d.dump.connections)),
    multiNode: dumps.length > 1,
  };
}

// ---- views: the selected entries of a section and their table ---------------------------------

export interface Filters {
  /** Entries of this namespace only (a certificate's namespace is its identity's). */
  namespace?: string;
  /** Workloads scheduled on this node (istioctl's --node for workloads). */
  workloadNode?: string;
  /** Workloads with this address. */
  address?: string;
  direction?: 'inbound' | 'outbound';
  /** Connections: addresses as they are, not names. */
  raw?: boolean;
  /** For certificate validity; the current time when absent. */
  now?: Date;
}

export interface Table {
  header: string[];
  rows: string[][];
}

export interface View {
  /** The dump's entries, filtered and sorted, for JSON and YAML. */
  items: object[];
  table: Table;
}

// Empty cells would make columns ambiguous to awk and cut; "-" is kubectl's mark for "none".
const NONE = '-';

export function sectionView(section: Section, m: MergedDump, f: Filters = {}): View {
  switch (section) {
    case 'workloads':
      return workloadsView(m, f);
    case 'services':
      return servicesView(m, f);
    case 'policies':
      return policiesView(m, f);
    case 'certificates':
      return certificatesView(m, f);
    case 'connections':
      return connectionsView(m, f);
  }
}

function workloadsView(m: MergedDump, f: Filters): View {
  const want = f.address === undefined ? undefined : canonicalIp(f.address);
  const items = m.workloads
    .filter((w) => f.namespace === undefined || w.namespace === f.namespace)
    .filter((w) => f.workloadNode === undefined || w.node === f.workloadNode)
    .filter((w) => want === undefined || (w.addresses ?? []).some((a) => canonicalIp(a) === want))
    .sort((a, b) => compare(a.namespace, b.namespace) || compare(a.name, b.name) || compare(a.node, b.node) || compare(a.uid, b.uid));
  return {
    items,
    table: {
      header: ['NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL'],
      rows: items.map((w) => [
        w.namespace,
        w.name,
        cell((w.addresses ?? []).join(',')),
        cell(w.node),
        waypointName(w.waypoint, m.services, w.namespace),
        protocolName(w.tunnelProtocol),
      ]),
    },
  };
}

function servicesView(m: MergedDump, f: Filters): View {
  const items = m.services
    .filter((s) => f.namespace === undefined || s.namespace === f.namespace)
    .sort((a, b) => compare(a.namespace, b.namespace) || compare(a.name, b.name) || compare(a.hostname, b.hostname));
  return {
    items,
    table: {
      header: ['NAMESPACE', 'SERVICE NAME', 'SERVICE VIP', 'WAYPOINT', 'ENDPOINTS'],
      rows: items.map((s) => {
        // A service's endpoints are the workloads whose `services` map names it (config.proto).
        const key = `${s.namespace}/${s.hostname}`;
        const backends = m.workloads.filter((w) => Object.hasOwn(w.services ?? {}, key));
        const healthy = backends.filter((w) => w.status === 'HEALTHY').length;
        return [
          s.namespace,
          s.name,
          cell((s.addresses ?? []).map((a) => a.address).join(',')),
          waypointName(s.waypoint, m.services, s.namespace),
          `${healthy}/${backends.length}`,
        ];
      }),
    },
  };
}

function policiesView(m: MergedDump, f: Filters): View {
  const items = m.policies
    .filter((p) => f.namespace === undefined || p.namespace === f.namespace)
    .sort((a, b) => compare(a.namespace, b.namespace) || compare(a.name, b.name));
  return {
    items,
    table: {
      header: ['NAMESPACE', 'POLICY NAME', 'ACTION', 'SCOPE'],
      // A dry-run policy is logged, not enforced: say so where the action is read.
      rows: items.map((p) => [p.namespace, p.name, p.dryRun ? `${p.action} (dry run)` : p.action, p.scope]),
    },
  };
}

function certificatesView(m: MergedDump, f: Filters): View {
  const now = (f.now ?? new Date()).getTime();
  const items = m.certificates
    .filter((c) => f.namespace === undefined || identityNamespace(c.identity) === f.namespace)
    .sort((a, b) => compare(a.node ?? '', b.node ?? '') || compare(a.identity, b.identity));
  const header = ['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE'];
  return {
    items,
    table: withNode(m.multiNode, items, {
      header,
      rows: items.map((c) => {
        const from = c.notBefore ? Date.parse(c.notBefore) : NaN;
        const to = c.notAfter ? Date.parse(c.notAfter) : NaN;
        // ztunnel keeps serving the current certificate while a refresh is in flight.
        const valid = (c.state === 'ready' || c.state === 'refreshing') && from <= now && now < to;
        // The secret manager reports the leaf it serves; the chain above it is the CA's.
        return [c.identity, 'Leaf', c.state, String(valid), c.serial || 'NA', c.notAfter || 'NA', c.notBefore || 'NA'];
      }),
    }),
  };
}

function connectionsView(m: MergedDump, f: Filters): View {
  const byUid = new Map(m.workloads.filter((w) => w.podUid).map((w) => [w.podUid, w]));
  const names = addressNames(m);
  const show = (addr: string) => (f.raw ? addr : nameAddress(addr, names));
  const rows = m.connections
    .filter((c) => f.direction === undefined || c.direction === f.direction)
    .map((c) => {
      const w = byUid.get(c.pod);
      return { c, w, workload: w ? `${w.name}.${w.namespace}` : c.pod };
    })
    .filter((r) => f.namespace === undefined || r.w?.namespace === f.namespace)
    .sort(
      (a, b) =>
        compare(a.c.node ?? '', b.c.node ?? '') ||
        compare(a.workload, b.workload) ||
        compare(a.c.direction, b.c.direction) ||
        compare(a.c.dst, b.c.dst) ||
        compare(a.c.src, b.c.src) ||
        compare(a.c.since, b.c.since),
    );
  const header = ['WORKLOAD', 'DIRECTION', 'LOCAL', 'REMOTE', 'REMOTE TARGET', 'PROTOCOL'];
  return {
    items: rows.map((r) => r.c),
    table: withNode(
      m.multiNode,
      rows.map((r) => r.c),
      {
        header,
        rows: rows.map(({ c, workload }) => {
          if (c.direction === 'inbound') {
            // Plaintext and HBONE arrivals look alike in the dump: the protocol is not recorded.
            return [workload, 'Inbound', show(c.dst), show(c.src), NONE, NONE];
          }
          // ztunnel records the original destination; for a service VIP the backend it picked is
          // not recorded, so REMOTE is known only when the destination was a pod.
          const vip = names.vips.has(canonicalIp(splitAddress(c.dst).ip));
          return [workload, 'Outbound', show(c.src), vip ? NONE : show(c.dst), show(c.dst), outboundProtocol(c.dst, m)];
        }),
      },
    ),
  };
}

/** Per-node sections get a leading NODE column when several ztunnels were asked. */
function withNode(multiNode: boolean, items: readonly { node?: string }[], t: Table): Table {
  if (!multiNode) return t;
  return { header: ['NODE', ...t.header], rows: t.rows.map((r, i) => [items[i]!.node ?? NONE, ...r]) };
}

// ---- cell helpers -----------------------------------------------------------------------------

function cell(s: string | undefined): string {
  return s ? s : NONE;
}

/** ztunnel's protocol names (istioctl shows TCP for a workload reached in plaintext). */
function protocolName(p: string | undefined): string {
  return p === 'HBONE' ? 'HBONE' : p === 'NONE' ? 'TCP' : cell(p);
}

/**
 * The waypoint's Service name as istioctl shows it — "name" when it is in the row's namespace,
 * "namespace/name" when it is in another (mesh.io/use-waypoint-namespace) — and "None" when
 * there is no waypoint. A hostname ("ns/name.ns.svc.domain", GatewayAddress.hostname) that no
 * Service has is marked "(missing)": ztunnel refuses that traffic (fail closed).
 */
export function waypointName(gw: DumpedGateway | null | undefined, services: readonly DumpedService[], rowNamespace: string): string {
  if (!gw) return 'None';
  const qualified = (ns: string, name: string) => (ns === rowNamespace ? name : `${ns}/${name}`);
  if (gw.hostname) {
    const svc = services.find((s) => `${s.namespace}/${s.hostname}` === gw.hostname);
    if (svc) return qualified(svc.namespace, svc.name);
    // "ns/name.ns.svc.<domain>": the Service's namespace, then its DNS name.
    const slash = gw.hostname.indexOf('/');
    const ns = slash > 0 ? gw.hostname.slice(0, slash) : rowNamespace;
    const name = gw.hostname.slice(slash + 1).split('.')[0] ?? '';
    return `${qualified(ns, name)} (missing)`;
  }
  if (gw.address?.address) {
    const ip = canonicalIp(gw.address.address);
    const svc = services.find((s) => (s.addresses ?? []).some((a) => canonicalIp(a.address) === ip));
    return svc ? qualified(svc.namespace, svc.name) : gw.address.address;
  }
  return NONE;
}

function identityNamespace(identity: string): string | undefined {
  return /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/[^/]+$/.exec(identity)?.[1];
}

interface AddressNames {
  /** Service VIP → hostname. */
  vips: Map<string, string>;
  /** Pod IP → "name.namespace" (istioctl's connection naming). */
  pods: Map<string, string>;
}

function addressNames(m: MergedDump): AddressNames {
  const vips = new Map<string, string>();
  for (const s of m.services) for (const a of s.addresses ?? []) vips.set(canonicalIp(a.address), s.hostname);
  const pods = new Map<string, string>();
  for (const w of m.workloads) for (const a of w.addresses ?? []) pods.set(canonicalIp(a), `${w.name}.${w.namespace}`);
  return { vips, pods };
}

/** "ip" or "ip:port" (IPv6 unbracketed, as ztunnel writes it) → its parts. */
function splitAddress(addr: string): { ip: string; port: string | undefined } {
  if (isIP(addr)) return { ip: addr, port: undefined };
  const at = addr.lastIndexOf(':');
  return at > 0 && isIP(addr.slice(0, at)) ? { ip: addr.slice(0, at), port: addr.slice(at + 1) } : { ip: addr, port: undefined };
}

function nameAddress(addr: string, names: AddressNames): string {
  const { ip, port } = splitAddress(addr);
  const key = canonicalIp(ip);
  const name = names.vips.get(key) ?? names.pods.get(key);
  if (port === undefined) return name ?? ip;
  if (name) return `${name}:${port}`;
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/**
 * The protocol ztunnel used for an outbound connection, found the way ztunnel decides it
 * (Ztunnel.outbound): HBONE when the destination workload's tunnel protocol is HBONE. For a
 * service VIP that holds only if every healthy backend agrees; otherwise it is unknown.
 */
function outboundProtocol(dst: string, m: MergedDump): string {
  const { ip, port } = splitAddress(dst);
  const key = canonicalIp(ip);
  const svc = m.services.find((s) => (s.addresses ?? []).some((a) => canonicalIp(a.address) === key));
  if (svc) {
    const sk = `${svc.namespace}/${svc.hostname}`;
    const protocols = new Set(
      m.workloads
        .filter((w) => w.status === 'HEALTHY' && (w.services?.[sk]?.ports ?? []).some((p) => String(p.servicePort) === port))
        .map((w) => protocolName(w.tunnelProtocol)),
    );
    return protocols.size === 1 ? [...protocols][0]! : NONE;
  }
  const w = m.workloads.find((x) => (x.addresses ?? []).some((a) => canonicalIp(a) === key));
  return w?.tunnelProtocol === 'HBONE' ? 'HBONE' : 'TCP';
}

/** One spelling per address, so "::ffff:10.0.0.1" meets "10.0.0.1" and IPv6 compresses alike. */
function canonicalIp(ip: string): string {
  try {
    return ipaddr.process(ip).toString();
  } catch {
    return ip;
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---- rendering --------------------------------------------------------------------------------

/** kubectl-style columns: upper-case headers, two spaces between columns, no trailing blanks. */
export function renderTable(t: Table): string {
  const widths = t.header.map((h, i) => Math.max(h.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [t.header, ...t.rows].map(line).join('\n') + '\n';
}

export type OutputFormat = 'table' | 'json' | 'yaml';

export function renderData(value: unknown, format: 'json' | 'yaml'): string {
  if (format === 'json') return `${JSON.stringify(value, null, 2)}\n`;
  // noRefs: shared objects are written out again rather than as YAML anchors a reader may not expect.
  return yaml.dump(value, { noRefs: true, lineWidth: -1 });
}

/** One section in the chosen format. */
export function renderSection(section: Section, m: MergedDump, f: Filters, format: OutputFormat): string {
  const v = sectionView(section, m, f);
  return format === 'table' ? renderTable(v.table) : renderData(v.items, format);
}

const TITLES: Record<Section, string> = {
  workloads: 'Workloads',
  services: 'Services',
  policies: 'Policies',
  certificates: 'Certificates',
  connections: 'Connections',
};

/** Every section: titled tables separated by blank lines, or one object keyed by section. */
export function renderAll(m: MergedDump, f: Filters, format: OutputFormat): string {
  if (format !== 'table') return renderData(Object.fromEntries(SECTIONS.map((s) => [s, sectionView(s, m, f).items])), format);
  return SECTIONS.map((s) => {
    const v = sectionView(s, m, f);
    return `${TITLES[s]} (${v.items.length})\n${renderTable(v.table)}`;
  }).join('\n');
}

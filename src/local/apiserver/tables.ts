// meta.k8s.io/v1 Table output for `kubectl get`: columns as the real printers in
// k8s.io/kubernetes/pkg/printers/internalversion/printers.go show them; priority 1 = `-o wide`.
import { cellOf } from './customresources.ts';
import type { ResourceDef } from './resources.ts';
import { workloadColumns } from './tables-workloads.ts';
import { isObject, type JsonObject, type KubeObject } from './types.ts';

interface Column {
  name: string;
  type?: 'string' | 'integer' | 'date';
  priority?: number;
  description?: string;
  cell: (o: KubeObject) => unknown;
}

const name: Column = { name: 'Name', cell: (o) => o.metadata.name };
const age: Column = { name: 'Age', type: 'date', cell: (o) => humanAge(o.metadata.creationTimestamp) };
const spec = (o: KubeObject): JsonObject => (isObject(o.spec) ? o.spec : {});
const status = (o: KubeObject): JsonObject => (isObject(o.status) ? o.status : {});
const arr = (v: unknown): JsonObject[] => (Array.isArray(v) ? v.filter(isObject) : []);
const none = (v: unknown): string => (v === undefined || v === null || v === '' ? '<none>' : String(v));

function podStatus(o: KubeObject): string {
  if (o.metadata.deletionTimestamp) return 'Terminating';
  const st = status(o);
  // Init containers first, as kubectl's printPod: the first one not done names the status.
  const inits = arr(st.initContainerStatuses);
  for (const [i, cs] of inits.entries()) {
    const state = isObject(cs.state) ? cs.state : {};
    const terminated = isObject(state.terminated) ? state.terminated : undefined;
    const waiting = isObject(state.waiting) ? state.waiting : undefined;
    if (terminated && terminated.exitCode === 0) continue;
    if (terminated) return terminated.reason ? `Init:${String(terminated.reason)}` : `Init:ExitCode:${String(terminated.exitCode)}`;
    if (waiting?.reason && waiting.reason !== 'PodInitializing') return `Init:${String(waiting.reason)}`;
    return `Init:${i}/${arr(spec(o).initContainers).length}`;
  }
  for (const cs of arr(st.containerStatuses)) {
    const state = isObject(cs.state) ? cs.state : {};
    const waiting = isObject(state.waiting) ? state.waiting : undefined;
    const terminated = isObject(state.terminated) ? state.terminated : undefined;
    if (waiting?.reason) return String(waiting.reason);
    if (terminated?.reason && st.phase !== 'Succeeded') return String(terminated.reason);
  }
  return String(st.reason ?? st.phase ?? 'Pending');
}

function podReady(o: KubeObject): string {
  const total = arr(spec(o).containers).length;
  const ready = arr(status(o).containerStatuses).filter((c) => c.ready === true).length;
  return `${ready}/${total}`;
}

function restarts(o: KubeObject): number {
  return [...arr(status(o).initContainerStatuses), ...arr(status(o).containerStatuses)].reduce((n, c) => n + (Number(c.restartCount) || 0), 0);
}

/** kubectl's RESTARTS: the count, and since the last restart ("2 (5s ago)"). */
function restartsCell(o: KubeObject): string {
  const n = restarts(o);
  const last = [...arr(status(o).initContainerStatuses), ...arr(status(o).containerStatuses)]
    .map((c) => (isObject(c.lastState) && isObject(c.lastState.terminated) ? String(c.lastState.terminated.finishedAt ?? '') : ''))
    .filter(Boolean)
    .sort()
    .at(-1);
  return n > 0 && last ? `${n} (${humanAge(last)} ago)` : String(n);
}

function nodeStatus(o: KubeObject): string {
  const ready = arr(status(o).conditions).find((c) => c.type === 'Ready');
  const s = ready?.status === 'True' ? 'Ready' : ready ? 'NotReady' : 'Unknown';
  return spec(o).unschedulable ? `${s},SchedulingDisabled` : s;
}

function nodeRoles(o: KubeObject): string {
  const roles = Object.keys(o.metadata.labels ?? {})
    .filter((k) => k.startsWith('node-role.kubernetes.io/'))
    .map((k) => k.slice('node-role.kubernetes.io/'.length));
  return roles.length ? roles.sort().join(',') : '<none>';
}

const address = (type: string) => (o: KubeObject) => none(arr(status(o).addresses).find((a) => a.type === type)?.address);
const nodeInfo = (k: string) => (o: KubeObject) => none(isObject(status(o).nodeInfo) ? (status(o).nodeInfo as JsonObject)[k] : undefined);

function servicePorts(o: KubeObject): string {
  const ports = arr(spec(o).ports).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`);
  return ports.length ? ports.join(',') : '<none>';
}

function externalIP(o: KubeObject): string {
  const s = spec(o);
  if (s.type === 'ExternalName') return none(s.externalName);
  const ips = [...(Array.isArray(s.externalIPs) ? s.externalIPs : [])];
  const lb = isObject(status(o).loadBalancer) ? arr((status(o).loadBalancer as JsonObject).ingress) : [];
  ips.push(...lb.map((i) => i.ip ?? i.hostname));
  if (ips.length) return ips.join(',');
  return s.type === 'LoadBalancer' ? '<pending>' : '<none>';
}

function selector(o: KubeObject): string {
  const sel = spec(o).selector;
  return isObject(sel) && Object.keys(sel).length ? Object.entries(sel).map(([k, v]) => `${k}=${v}`).join(',') : '<none>';
}

/** "5s", or "5s (x3 over 2m)" for an event seen more than once (the real event printer). */
function eventLastSeen(o: KubeObject): string {
  const last = humanAge((o.lastTimestamp ?? o.eventTime ?? o.metadata.creationTimestamp) as string | undefined);
  const count = Number(o.count ?? 1);
  return count > 1 ? `${last} (x${count} over ${humanAge((o.firstTimestamp ?? o.metadata.creationTimestamp) as string | undefined)})` : last;
}
const createdAt: Column = { name: 'Created At', type: 'date', cell: (o) => o.metadata.creationTimestamp ?? '' };
const subjects = (kind: string) => (o: KubeObject) => arr(o.subjects).filter((s) => s.kind === kind).map((s) => (kind === 'ServiceAccount' ? `${s.namespace ?? ''}/${s.name}` : s.name)).join(', ');
const bindingColumns: Column[] = [
  name,
  { name: 'Role', cell: (o) => (isObject(o.roleRef) ? `${o.roleRef.kind}/${o.roleRef.name}` : '') },
  age,
  { name: 'Users', priority: 1, cell: subjects('User') },
  { name: 'Groups', priority: 1, cell: subjects('Group') },
  { name: 'ServiceAccounts', priority: 1, cell: subjects('ServiceAccount') },
];

const COLUMNS: Record<string, Column[]> = {
  Pod: [
    name,
    { name: 'Ready', cell: podReady, description: 'The number of containers that are ready' },
    { name: 'Status', cell: podStatus },
    { name: 'Restarts', type: 'string', cell: restartsCell },
    age,
    { name: 'IP', priority: 1, cell: (o) => none(status(o).podIP) },
    { name: 'Node', priority: 1, cell: (o) => none(spec(o).nodeName) },
    { name: 'Nominated Node', priority: 1, cell: (o) => none(status(o).nominatedNodeName) },
    { name: 'Readiness Gates', priority: 1, cell: (o) => (arr(spec(o).readinessGates).length ? String(arr(spec(o).readinessGates).length) : '<none>') },
  ],
  Node: [
    name,
    { name: 'Status', cell: nodeStatus },
    { name: 'Roles', cell: nodeRoles },
    age,
    { name: 'Version', cell: nodeInfo('kubeletVersion') },
    { name: 'Internal-IP', priority: 1, cell: address('InternalIP') },
    { name: 'External-IP', priority: 1, cell: address('ExternalIP') },
    { name: 'OS-Image', priority: 1, cell: nodeInfo('osImage') },
    { name: 'Kernel-Version', priority: 1, cell: nodeInfo('kernelVersion') },
    { name: 'Container-Runtime', priority: 1, cell: nodeInfo('containerRuntimeVersion') },
  ],
  Service: [
    name,
    { name: 'Type', cell: (o) => spec(o).type ?? 'ClusterIP' },
    { name: 'Cluster-IP', cell: (o) => none(spec(o).clusterIP) },
    { name: 'External-IP', cell: externalIP },
    { name: 'Port(s)', cell: servicePorts },
    age,
    { name: 'Selector', priority: 1, cell: selector },
  ],
  Namespace: [name, { name: 'Status', cell: (o) => status(o).phase ?? 'Active' }, age],
  ServiceAccount: [name, { name: 'Secrets', type: 'integer', cell: (o) => (Array.isArray(o.secrets) ? o.secrets.length : 0) }, age],
  ConfigMap: [name, { name: 'Data', type: 'integer', cell: (o) => Object.keys(isObject(o.data) ? o.data : {}).length + Object.keys(isObject(o.binaryData) ? o.binaryData : {}).length }, age],
  Secret: [name, { name: 'Type', cell: (o) => o.type ?? 'Opaque' }, { name: 'Data', type: 'integer', cell: (o) => Object.keys(isObject(o.data) ? o.data : {}).length }, age],
  Event: [
    { name: 'Last Seen', cell: eventLastSeen },
    { name: 'Type', cell: (o) => o.type ?? '' },
    { name: 'Reason', cell: (o) => o.reason ?? '' },
    { name: 'Object', cell: (o) => (isObject(o.involvedObject) ? `${String(o.involvedObject.kind ?? '').toLowerCase()}/${o.involvedObject.name ?? ''}` : '') },
    { name: 'Message', cell: (o) => o.message ?? '' },
  ],
  EndpointSlice: [
    name,
    { name: 'AddressType', cell: (o) => o.addressType ?? '' },
    { name: 'Ports', cell: (o) => arr(o.ports).map((p) => p.port ?? '<unset>').join(',') || '<unset>' },
    { name: 'Endpoints', cell: (o) => arr(o.endpoints).flatMap((e) => (Array.isArray(e.addresses) ? e.addresses : [])).join(',') || '<unset>' },
    age,
  ],
  ...workloadColumns(name, age),
  Role: [name, createdAt],
  ClusterRole: [name, createdAt],
  RoleBinding: bindingColumns,
  ClusterRoleBinding: bindingColumns,
  CustomResourceDefinition: [name, createdAt],
};

/** A CRD's additionalPrinterColumns after Name, as the apiextensions table convertor builds them. */
function customColumns(d: ResourceDef): Column[] {
  return [
    name,
    ...d.crd!.printerColumns.map((p): Column => ({
      name: p.name,
      type: p.type === 'integer' ? 'integer' : p.type === 'date' ? 'date' : 'string',
      priority: p.priority,
      description: p.description || p.name,
      cell: (o) => {
        const v = cellOf(o, p.jsonPath);
        if (p.type === 'date') return v ? humanAge(v) : '<unknown>';
        if (p.type === 'integer' && /^-?\d+$/.test(v)) return Number(v);
        return v;
      },
    })),
  ];
}

export type IncludeObject = 'None' | 'Metadata' | 'Object';

/** A Table for `objects` of `kind`; `listMeta` carries resourceVersion/continue for lists. */
export function toTable(kind: string | ResourceDef, objects: KubeObject[], include: IncludeObject, listMeta: JsonObject = {}): JsonObject {
  const columns = typeof kind !== 'string' && kind.crd ? customColumns(kind) : (COLUMNS[typeof kind === 'string' ? kind : kind.kind] ?? [name, age]);
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: listMeta,
    columnDefinitions: columns.map((c) => ({
      name: c.name,
      type: c.type ?? 'string',
      format: c === name ? 'name' : '',
      description: c.description ?? c.name,
      priority: c.priority ?? 0,
    })),
    rows: objects.map((o) => ({
      cells: columns.map((c) => c.cell(o)),
      object: include === 'Object' ? o : include === 'Metadata' ? { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata } : undefined,
    })),
  };
}

/** k8s.io/apimachinery/pkg/util/duration.HumanDuration, as `kubectl get` shows AGE. */
export function humanAge(ts: string | undefined, now = Date.now()): string {
  if (!ts) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 365 * 2) return `${d}d`;
  return `${Math.floor(d / 365)}y${d % 365}d`;
}

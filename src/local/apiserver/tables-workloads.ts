// `kubectl get` columns for the workload and policy kinds, as the real printers show them
// (k8s.io/kubernetes/pkg/printers/internalversion/printers.go); priority 1 = `-o wide`.
import { isObject, type JsonObject, type KubeObject } from './types.ts';

interface Column {
  name: string;
  type?: 'string' | 'integer' | 'date';
  priority?: number;
  cell: (o: KubeObject) => unknown;
}

const spec = (o: KubeObject): JsonObject => (isObject(o.spec) ? o.spec : {});
const status = (o: KubeObject): JsonObject => (isObject(o.status) ? o.status : {});
const n = (v: unknown): number => (typeof v === 'number' ? v : 0);
const template = (o: KubeObject): JsonObject[] => {
  const t = spec(o).template;
  const cs = isObject(t) && isObject(t.spec) ? t.spec.containers : undefined;
  return Array.isArray(cs) ? cs.filter(isObject) : [];
};

/** metav1.FormatLabelSelector: "app=web", "<none>" for none, "<invalid>" never here. */
function selector(sel: unknown): string {
  if (!isObject(sel)) return '<none>';
  const parts = Object.entries(isObject(sel.matchLabels) ? sel.matchLabels : {}).map(([k, v]) => `${k}=${String(v)}`);
  for (const e of Array.isArray(sel.matchExpressions) ? sel.matchExpressions.filter(isObject) : []) {
    const values = Array.isArray(e.values) ? e.values.join(',') : '';
    parts.push(e.operator === 'Exists' ? String(e.key) : e.operator === 'DoesNotExist' ? `!${String(e.key)}` : `${String(e.key)} ${String(e.operator).toLowerCase()} (${values})`);
  }
  return parts.length ? parts.join(',') : '<none>';
}

const wide: Column[] = [
  { name: 'Containers', priority: 1, cell: (o) => template(o).map((c) => c.name).join(',') },
  { name: 'Images', priority: 1, cell: (o) => template(o).map((c) => c.image).join(',') },
  { name: 'Selector', priority: 1, cell: (o) => selector(spec(o).selector) },
];

/** Age is added by the caller's `age` column, passed in so both files print it alike. */
export function workloadColumns(name: Column, age: Column): Record<string, Column[]> {
  return {
    Deployment: [
      name,
      { name: 'Ready', cell: (o) => `${n(status(o).readyReplicas)}/${n(spec(o).replicas)}` },
      { name: 'Up-to-date', type: 'integer', cell: (o) => n(status(o).updatedReplicas) },
      { name: 'Available', type: 'integer', cell: (o) => n(status(o).availableReplicas) },
      age,
      ...wide,
    ],
    ReplicaSet: [
      name,
      { name: 'Desired', type: 'integer', cell: (o) => n(spec(o).replicas) },
      { name: 'Current', type: 'integer', cell: (o) => n(status(o).replicas) },
      { name: 'Ready', type: 'integer', cell: (o) => n(status(o).readyReplicas) },
      age,
      ...wide,
    ],
    DaemonSet: [
      name,
      { name: 'Desired', type: 'integer', cell: (o) => n(status(o).desiredNumberScheduled) },
      { name: 'Current', type: 'integer', cell: (o) => n(status(o).currentNumberScheduled) },
      { name: 'Ready', type: 'integer', cell: (o) => n(status(o).numberReady) },
      { name: 'Up-to-date', type: 'integer', cell: (o) => n(status(o).updatedNumberScheduled) },
      { name: 'Available', type: 'integer', cell: (o) => n(status(o).numberAvailable) },
      { name: 'Node Selector', cell: (o) => {
        const t = spec(o).template;
        const ns = isObject(t) && isObject(t.spec) && isObject(t.spec.nodeSelector) ? t.spec.nodeSelector : {};
        return Object.entries(ns).map(([k, v]) => `${k}=${String(v)}`).join(',') || '<none>';
      } },
      age,
      ...wide,
    ],
    StatefulSet: [name, { name: 'Ready', cell: (o) => `${n(status(o).readyReplicas)}/${n(spec(o).replicas)}` }, age, ...wide.slice(0, 2)],
    Job: [
      name,
      { name: 'Status', cell: jobStatus },
      { name: 'Completions', cell: (o) => `${n(status(o).succeeded)}/${spec(o).completions ?? 1}` },
      { name: 'Duration', cell: jobDuration },
      age,
      ...wide,
    ],
    PodDisruptionBudget: [
      name,
      { name: 'Min Available', cell: (o) => String(spec(o).minAvailable ?? 'N/A') },
      { name: 'Max Unavailable', cell: (o) => String(spec(o).maxUnavailable ?? 'N/A') },
      { name: 'Allowed Disruptions', type: 'integer', cell: (o) => n(status(o).disruptionsAllowed) },
      age,
    ],
    Lease: [name, { name: 'Holder', cell: (o) => String(spec(o).holderIdentity ?? '') }, age],
    NetworkPolicy: [name, { name: 'Pod-Selector', cell: (o) => selector(spec(o).podSelector) }, age],
    Endpoints: [
      name,
      {
        name: 'Endpoints',
        cell: (o) => {
          const subsets = Array.isArray(o.subsets) ? o.subsets.filter(isObject) : [];
          const eps = subsets.flatMap((s) => {
            const ips = (Array.isArray(s.addresses) ? s.addresses.filter(isObject) : []).map((a) => a.ip);
            const ports = (Array.isArray(s.ports) ? s.ports.filter(isObject) : []).map((p) => p.port);
            return ports.length ? ips.flatMap((ip) => ports.map((p) => `${String(ip)}:${String(p)}`)) : ips.map(String);
          });
          return eps.length === 0 ? '<none>' : eps.length > 3 ? `${eps.slice(0, 3).join(',')} + ${eps.length - 3} more...` : eps.join(',');
        },
      },
      age,
    ],
  };
}

function jobStatus(o: KubeObject): string {
  const conds = Array.isArray(status(o).conditions) ? (status(o).conditions as unknown[]).filter(isObject) : [];
  const on = (t: string) => conds.some((c) => c.type === t && c.status === 'True');
  if (on('Complete')) return 'Complete';
  if (on('Failed')) return 'Failed';
  if (on('Suspended')) return 'Suspended';
  return 'Running';
}

function jobDuration(o: KubeObject): string {
  const st = status(o);
  if (typeof st.startTime !== 'string') return '';
  const end = typeof st.completionTime === 'string' ? Date.parse(st.completionTime) : Date.now();
  const s = Math.max(0, Math.round((end - Date.parse(st.startTime)) / 1000));
  return s < 120 ? `${s}s` : `${Math.floor(s / 60)}m`;
}

// What `meshctl waypoint` builds and shows, as pure functions of what it read from the API: the
// waypoint Gateway it applies, the YAML it generates, the list and status tables, the warning a
// deletion gives, and the post-install check. Reading and writing the cluster is
// commands/waypoint.ts's job; who uses a waypoint and whether it can take their traffic is decided
// by the controller's own model (src/controller/model/waypoints.ts), so meshctl and the
// controller cannot disagree.
import * as yaml from 'js-yaml';
import { HBONE_PORT, LABEL_GATEWAY_NAME, LABEL_USE_WAYPOINT, LABEL_USE_WAYPOINT_NAMESPACE, WAYPOINT_CLASS, type KubeObject, type WaypointUse } from '../controller/model/index.ts';
import type { CheckResult } from './checks.ts';
import { GATEWAY_API_INSTALL } from './kube.ts';
import { renderTable } from './ztunnel-config-format.ts';

export { LABEL_GATEWAY_NAME };

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const GATEWAY_VERSION = 'v1';
export const GATEWAY_PLURAL = 'gateways';
/** Istio's istio.io/waypoint-for: which traffic the waypoint takes. */
export const LABEL_WAYPOINT_FOR = 'mesh.io/waypoint-for';
export const TRAFFIC_TYPES = ['service', 'workload', 'all', 'none'] as const;
export type TrafficType = (typeof TRAFFIC_TYPES)[number];
/** istioctl's default waypoint name, so `apply` and `status` without --name meet. */
export const DEFAULT_WAYPOINT_NAME = 'waypoint';
/** The listener every waypoint has: ztunnel reaches it over HBONE (DESIGN: port 15008). */
export const WAYPOINT_LISTENER = Object.freeze({ name: 'mesh', port: HBONE_PORT, protocol: 'HBONE' });

// ---- names and durations ----------------------------------------------------------------------

/** A Gateway's name becomes its Service's, so it must be a DNS-1123 label (RFC 1123 §2.1). */
export function checkWaypointName(name: string): string | undefined {
  if (name.length > 63) return `"${name}" is longer than 63 characters`;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) return `"${name}" is not a DNS-1123 label (lower-case letters, digits and "-", starting and ending with a letter or digit)`;
  return undefined;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go-style duration ("60s", "1m30s", "500ms", "2h"); a bare number is seconds. Milliseconds, or undefined when unreadable. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(t)) return undefined;
  let total = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * UNITS[m[2]!]!;
  return total;
}

// ---- the Gateway ------------------------------------------------------------------------------

export interface WaypointSpec {
  name: string;
  namespace: string;
  trafficType: TrafficType;
}

/** The Gateway that declares a waypoint (issue 13 §2), as `apply` sends it and `generate` prints it. */
export function waypointGateway(s: WaypointSpec): KubeObject & { metadata: { name: string; namespace: string; labels: Record<string, string> } } {
  return {
    apiVersion: `${GATEWAY_GROUP}/${GATEWAY_VERSION}`,
    kind: 'Gateway',
    metadata: { name: s.name, namespace: s.namespace, labels: { [LABEL_WAYPOINT_FOR]: s.trafficType } },
    spec: { gatewayClassName: WAYPOINT_CLASS, listeners: [{ ...WAYPOINT_LISTENER }] },
  };
}

/** `meshctl waypoint generate`: the Gateway as YAML, ready for `kubectl apply -f -`. */
export function generateYaml(s: WaypointSpec): string {
  return yaml.dump(waypointGateway(s), { noRefs: true, lineWidth: -1 });
}

export interface GatewayCondition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

export function gatewayConditions(gw: KubeObject): GatewayCondition[] {
  const st = gw.status as { conditions?: unknown } | undefined;
  if (!Array.isArray(st?.conditions)) return [];
  return st.conditions
    .filter((c): c is Record<string, unknown> => typeof c === 'object' && c !== null && typeof (c as { type?: unknown }).type === 'string')
    .map((c) => ({ type: String(c.type), status: String(c.status ?? 'Unknown'), reason: String(c.reason ?? ''), message: String(c.message ?? '') }));
}

/** The Programmed condition's status: "True", "False", "Unknown", or "Unknown" when there is none yet (kubectl's PROGRAMMED column). */
export function programmed(gw: KubeObject): string {
  return gatewayConditions(gw).find((c) => c.type === 'Programmed')?.status ?? 'Unknown';
}

/**
 * Whether a controller has written the Gateway's status. The Gateway API CRDs default it to
 * Accepted and Programmed both Unknown with reason Pending ("Waiting for controller").
 */
export function reconciled(gw: KubeObject): boolean {
  return gatewayConditions(gw).some((c) => !(c.status === 'Unknown' && c.reason === 'Pending'));
}

const NOT_RECONCILED = 'no controller has reconciled it yet — is the mesh controller running? (`meshctl check --post-install`)';

export function isWaypoint(gw: KubeObject): boolean {
  return (gw.spec as { gatewayClassName?: unknown } | undefined)?.gatewayClassName === WAYPOINT_CLASS;
}

export function trafficTypeOf(gw: KubeObject): string {
  // Istio's default when the label is absent: service traffic.
  return gw.metadata?.labels?.[LABEL_WAYPOINT_FOR] || 'service';
}

const keyOf = (o: KubeObject) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

// ---- users ------------------------------------------------------------------------------------

export interface UserCounts {
  namespaces: number;
  services: number;
  pods: number;
}

export function countUsers(use: WaypointUse | undefined): UserCounts {
  const users = use?.users ?? [];
  return {
    namespaces: users.filter((u) => u.startsWith('Namespace/')).length,
    services: users.filter((u) => u.startsWith('Service/')).length,
    pods: users.filter((u) => u.startsWith('Pod/')).length,
  };
}

export function describeCounts(c: UserCounts): string {
  const parts = [
    c.namespaces ? plural(c.namespaces, 'namespace') : '',
    c.services ? plural(c.services, 'service') : '',
    c.pods ? plural(c.pods, 'pod') : '',
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : '-';
}

/** "Pod/shop/web-1" → { kind, namespace, name }; a Namespace user's name is "-". */
export function splitUser(user: string): { kind: string; namespace: string; name: string } {
  const [kind = '', namespace = '', ...rest] = user.split('/');
  return { kind, namespace, name: rest.join('/') || '-' };
}

/** The kubectl command that removes a user's label, so that its traffic no longer names the waypoint. */
export function unlabelCommand(user: string): string {
  const u = splitUser(user);
  if (u.kind === 'Namespace') return `kubectl label namespace ${u.namespace} ${LABEL_USE_WAYPOINT}- ${LABEL_USE_WAYPOINT_NAMESPACE}-`;
  return `kubectl -n ${u.namespace} label ${u.kind.toLowerCase()} ${u.name} ${LABEL_USE_WAYPOINT}- ${LABEL_USE_WAYPOINT_NAMESPACE}-`;
}

// ---- list -------------------------------------------------------------------------------------

export interface ListRow {
  namespace: string;
  name: string;
  programmed: string;
  trafficType: string;
  usedBy: UserCounts;
  /** "" when it carries its users' traffic; otherwise why it cannot (the controller's reason). */
  problem: string;
}

/** One row per waypoint Gateway (other Gateways are not waypoints and are left out), sorted. */
export function listRows(gateways: readonly KubeObject[], uses: ReadonlyMap<string, WaypointUse>): ListRow[] {
  return gateways
    .filter(isWaypoint)
    .map((g) => {
      const use = uses.get(keyOf(g));
      return {
        namespace: g.metadata?.namespace ?? '',
        name: g.metadata?.name ?? '',
        programmed: programmed(g),
        trafficType: trafficTypeOf(g),
        usedBy: countUsers(use),
        problem: use?.problem ?? '',
      };
    })
    .sort((a, b) => cmp(a.namespace, b.namespace) || cmp(a.name, b.name));
}

export function renderList(rows: readonly ListRow[], allNamespaces: boolean): string {
  const header = [...(allNamespaces ? ['NAMESPACE'] : []), 'NAME', 'PROGRAMMED', 'TRAFFIC TYPE', 'USED BY'];
  return renderTable({
    header,
    rows: rows.map((r) => [...(allNamespaces ? [r.namespace] : []), r.name, r.programmed, r.trafficType, describeCounts(r.usedBy)]),
  });
}

// ---- status -----------------------------------------------------------------------------------

export interface DeploymentFacts {
  name: string;
  replicas: number;
  ready: number;
}

export interface StatusFacts {
  gateway: KubeObject;
  /** The Deployments that run it (owned by the Gateway or labelled with its name). */
  deployments: DeploymentFacts[];
  /** Its Service (named after the Gateway), or undefined when it does not exist yet. */
  service?: { name: string; clusterIP: string; readyEndpoints: number; endpoints: number };
  /** The controller model's view: who uses it and why it cannot take traffic. */
  use?: WaypointUse;
  /** The model's reason when nobody uses it: computed the same way, for an empty user list. */
  problem: string;
}

export function renderStatus(f: StatusFacts): string {
  const g = f.gateway;
  const key = keyOf(g);
  const out: string[] = [];
  out.push(`Waypoint ${key}  (class ${(g.spec as { gatewayClassName?: string } | undefined)?.gatewayClassName ?? '?'}, traffic type ${trafficTypeOf(g)})`);
  out.push('');
  const conds = gatewayConditions(g);
  out.push('Gateway conditions:');
  if (conds.length) out.push(indent(renderTable({ header: ['TYPE', 'STATUS', 'REASON', 'MESSAGE'], rows: conds.map((c) => [c.type, c.status, c.reason || '-', c.message || '-']) })));
  if (!reconciled(g)) out.push(`  ${conds.length ? '' : 'none: '}${NOT_RECONCILED}`);
  out.push('');
  if (f.deployments.length === 0) {
    out.push(`Deployment: none yet (the controller creates it, owned by the Gateway)`);
  } else {
    for (const d of f.deployments) out.push(`Deployment ${d.name}: ${d.ready}/${d.replicas} ready`);
  }
  out.push(
    f.service
      ? `Service ${f.service.name}: ${f.service.clusterIP || 'no cluster IP'}, ${f.service.readyEndpoints}/${f.service.endpoints} endpoints ready`
      : `Service ${key}: does not exist yet (the controller creates it, owned by the Gateway)`,
  );
  out.push('');
  const problem = f.use?.problem ?? f.problem;
  out.push(problem ? `Traffic: REFUSED (fail closed) — ${problem}` : 'Traffic: served — the waypoint is Programmed and its Service has a ready endpoint');
  const users = f.use?.users ?? [];
  out.push('');
  if (users.length === 0) {
    out.push(`Users: none (label a namespace, service or pod ${LABEL_USE_WAYPOINT}=${g.metadata?.name ?? ''}, or run \`meshctl waypoint apply --enroll-namespace\`)`);
  } else {
    out.push(`Users (${describeCounts(countUsers(f.use))}):`);
    const verdict = problem ? 'refused' : 'served';
    out.push(indent(renderTable({ header: ['KIND', 'NAMESPACE', 'NAME', 'TRAFFIC'], rows: users.map((u) => { const s = splitUser(u); return [s.kind, s.namespace, s.name, verdict]; }) })));
  }
  return `${out.join('\n').replace(/\n+$/, '')}\n`;
}

// ---- wait -------------------------------------------------------------------------------------

/** What `apply --wait` prints when the Gateway was not Programmed in time: its conditions and why. */
export function renderWaitTimeout(gw: KubeObject | undefined, key: string, timeoutMs: number, problem: string): string {
  const lines = [`waypoint ${key} was not Programmed within ${formatMs(timeoutMs)}`];
  const conds = gw ? gatewayConditions(gw) : [];
  if (!gw) {
    lines.push('  the Gateway no longer exists (was it deleted?)');
  } else {
    if (conds.length) lines.push(indent(renderTable({ header: ['TYPE', 'STATUS', 'REASON', 'MESSAGE'], rows: conds.map((c) => [c.type, c.status, c.reason || '-', c.message || '-']) })));
    if (!reconciled(gw)) lines.push(`  ${conds.length ? '' : 'its status has no conditions: '}${NOT_RECONCILED}`);
  }
  if (problem) lines.push(`  until it is ready, traffic of whatever uses it is refused (fail closed): ${problem}`);
  const [ns, name] = key.split('/');
  lines.push(`  next: \`meshctl waypoint status -n ${ns} --name ${name}\`, and \`kubectl -n ${ns} get deploy,pods -l ${LABEL_GATEWAY_NAME}=${name}\``);
  return `${lines.join('\n').replace(/\n+$/, '')}\n`;
}

/** A one-line summary of the conditions, printed by --wait whenever it changes. */
export function conditionSummary(gw: KubeObject): string {
  const conds = gatewayConditions(gw);
  if (conds.length === 0) return 'no conditions yet';
  return conds.map((c) => `${c.type}=${c.status}${c.reason ? ` (${c.reason})` : ''}`).join(', ');
}

// ---- delete -----------------------------------------------------------------------------------

/** The warning for deleting a waypoint that is still named by its users' labels. */
export function deletionWarning(key: string, use: WaypointUse | undefined): string | undefined {
  const users = use?.users ?? [];
  if (users.length === 0) return undefined;
  // Pods that inherit the namespace's label follow it; only objects with their own label need one command each.
  const labelled = users.filter((u) => u.startsWith('Namespace/') || u.startsWith('Service/'));
  const lines = [
    `warning: ${describeCounts(countUsers(use))} still use waypoint ${key}: their traffic is now refused (fail closed) until the waypoint is back or their label no longer names it:`,
    ...users.map((u) => `  ${u}`),
  ];
  if (labelled.length) lines.push('  to take them off the waypoint instead:', ...labelled.map((u) => `    ${unlabelCommand(u)}`));
  return `${lines.join('\n')}\n`;
}

// ---- meshctl check --post-install -------------------------------------------------------------

/**
 * One failing check per waypoint that is asked for but cannot take traffic, naming every user
 * whose traffic is therefore refused; one passing check when every waypoint in use is ready.
 * `gatewayApi` is false when the Gateway API CRDs are not installed.
 */
export function waypointChecks(uses: ReadonlyMap<string, WaypointUse>, gatewayApi: boolean): CheckResult[] {
  const all = [...uses.values()];
  const broken = all.filter((u) => !u.ready);
  if (broken.length === 0) {
    return [{ name: 'waypoints', status: 'ok', detail: all.length === 0 ? 'no namespace, service or pod uses a waypoint' : `${plural(all.length, 'waypoint')} in use, all ready (${all.map((u) => u.gateway).join(', ')})` }];
  }
  return broken.map((u) => {
    const [ns, name] = u.gateway.split('/');
    const why = !gatewayApi && !u.found ? `the Gateway API CRDs are not installed, so Gateway ${u.gateway} cannot exist` : u.problem;
    const fix = !gatewayApi
      ? GATEWAY_API_INSTALL
      : !u.found
        ? `create it: \`meshctl waypoint apply -n ${ns} --name ${name}\`, or remove the label from its users (\`meshctl waypoint status -n ${ns} --name ${name}\` lists them)`
        : `\`meshctl waypoint status -n ${ns} --name ${name}\` shows its conditions, Deployment and Service`;
    return {
      name: `waypoint ${u.gateway}`,
      status: 'fail',
      detail: `${why}: traffic is refused (fail closed) for ${u.users.length ? u.users.join(', ') : 'its users'}`,
      fix,
    };
  });
}

// ---- helpers ----------------------------------------------------------------------------------

function indent(text: string): string {
  return text
    .replace(/\n$/, '')
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(1)}s`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// resources.limits and requests as cgroup settings, as kubelet sets them (pkg/kubelet/cm,
// kuberuntime's container resources): limits.memory → memory.max, limits.cpu → cpu.max (quota
// per 100 ms period), requests.cpu → cpu shares/weight. OCI containers get them through podman
// (runc writes whichever hierarchy holds the controller — cgroup v1 on a hybrid host); host
// commands share their pod's cgroup, so the pod gets the sum of its containers' limits, written to
// its cgroup v2 directory when the v2 hierarchy has the controller. Anything else is named for the
// FieldNotHonoured Event, never dropped.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import type * as k8s from '@kubernetes/client-node';

const CPU_PERIOD_US = 100_000; // kubelet's default cfs period
const MIN_QUOTA_US = 1000; // kubelet's minimum quota
const MIN_SHARES = 2;

export interface Limits {
  memoryBytes?: number;
  cpuMillis?: number;
  cpuShares?: number;
}

const SUFFIX: Record<string, number> = {
  '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A resource.Quantity ("64Mi", "500m", "1.5", "129e6") in base units; NaN when malformed. */
export function parseQuantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:(e[+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?)$/i.exec(q.trim());
  if (!m) return NaN;
  if (m[2]) return Number(`${m[1]}${m[2]}`);
  const unit = SUFFIX[m[3] ?? ''];
  return unit === undefined ? NaN : Number(m[1]) * unit;
}

/** The limits of one container, and the resource fields among them that cannot be honoured. */
export function containerLimits(c: k8s.V1Container, at: string): { limits: Limits; unsupported: string[] } {
  const limits: Limits = {};
  const unsupported: string[] = [];
  for (const [kind, map] of [['limits', c.resources?.limits], ['requests', c.resources?.requests]] as const) {
    for (const [name, raw] of Object.entries(map ?? {})) {
      const v = parseQuantity(raw as unknown as string | number);
      const path = `${at}.resources.${kind}.${name}`;
      if (!Number.isFinite(v) || v < 0) unsupported.push(`${path} (not a quantity: ${String(raw)})`);
      else if (kind === 'limits' && name === 'memory') limits.memoryBytes = Math.floor(v);
      else if (kind === 'limits' && name === 'cpu') limits.cpuMillis = Math.ceil(v * 1000);
      else if (kind === 'requests' && name === 'cpu') limits.cpuShares = Math.max(MIN_SHARES, Math.floor((Math.ceil(v * 1000) * 1024) / 1000));
      // A memory request only orders OOM kills and scheduling on a real node; the rest
      // (ephemeral-storage, hugepages-*, extended resources) has no cgroup setting here.
      else unsupported.push(path);
    }
  }
  // As kubelet: no cpu request but a cpu limit means a request equal to the limit.
  if (limits.cpuShares === undefined && limits.cpuMillis !== undefined) limits.cpuShares = Math.max(MIN_SHARES, Math.floor((limits.cpuMillis * 1024) / 1000));
  return { limits, unsupported };
}

/** podman run flags for `l` (runc applies them to the container's cgroup). */
export function ociResourceArgs(l: Limits): string[] {
  const a: string[] = [];
  if (l.memoryBytes !== undefined) a.push('--memory', String(l.memoryBytes), '--memory-swap', String(l.memoryBytes));
  if (l.cpuMillis !== undefined) a.push('--cpu-period', String(CPU_PERIOD_US), '--cpu-quota', String(cpuQuota(l.cpuMillis)));
  if (l.cpuShares !== undefined) a.push('--cpu-shares', String(l.cpuShares));
  return a;
}

const cpuQuota = (millis: number) => Math.max(MIN_QUOTA_US, Math.floor((millis * CPU_PERIOD_US) / 1000));

/**
 * The pod cgroup's limits for host-command containers: each limit is the sum over the
 * containers, set only when every one of them has it (kubelet's pod-level rule).
 */
export function podLimits(all: Limits[]): Limits {
  const sum = (k: keyof Limits) => (all.length && all.every((l) => l[k] !== undefined) ? all.reduce((n, l) => n + l[k]!, 0) : undefined);
  const out: Limits = {};
  for (const k of ['memoryBytes', 'cpuMillis', 'cpuShares'] as const) {
    const v = sum(k);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/**
 * Writes `l` into the cgroup v2 directory `cgroup` (under `mount`): memory.max, cpu.max,
 * cpu.weight. A controller is enabled in the parents' cgroup.subtree_control below the mount
 * when the parent offers it; one the v2 hierarchy lacks (a hybrid host keeps memory and cpu in
 * v1) is returned by name, with the reason, for the Event.
 */
export function writeCgroupLimits(mount: string, cgroup: string, l: Limits): string[] {
  const need = new Map<string, string>();
  if (l.memoryBytes !== undefined) need.set('memory', 'limits.memory');
  if (l.cpuMillis !== undefined) need.set('cpu', 'limits.cpu');
  else if (l.cpuShares !== undefined) need.set('cpu', 'requests.cpu');
  const missing: string[] = [];
  const ancestors: string[] = [];
  for (let d = dirname(cgroup); relative(mount, d) && !relative(mount, d).startsWith('..'); d = dirname(d)) ancestors.unshift(d);
  for (const [controller, field] of need) {
    const ok = [mount, ...ancestors].every((d) => {
      if (!readList(join(d, 'cgroup.controllers')).includes(controller)) return false;
      if (d === mount) return readList(join(d, 'cgroup.subtree_control')).includes(controller); // the host's choice, not ours
      if (!readList(join(d, 'cgroup.subtree_control')).includes(controller)) writeFileSync(join(d, 'cgroup.subtree_control'), `+${controller}`);
      return true;
    });
    if (!ok || !existsSync(join(cgroup, controller === 'memory' ? 'memory.max' : 'cpu.max'))) {
      missing.push(`resources.${field} (no ${controller} controller in the cgroup v2 hierarchy at ${mount})`);
      need.delete(controller);
    }
  }
  if (need.has('memory')) writeFileSync(join(cgroup, 'memory.max'), String(l.memoryBytes));
  if (need.has('cpu')) {
    if (l.cpuMillis !== undefined) writeFileSync(join(cgroup, 'cpu.max'), `${cpuQuota(l.cpuMillis)} ${CPU_PERIOD_US}`);
    // cgroup v2 weight from v1 shares, as runc converts them.
    if (l.cpuShares !== undefined) writeFileSync(join(cgroup, 'cpu.weight'), String(1 + Math.floor(((l.cpuShares - 2) * 9999) / 262142)));
  }
  return missing;
}

function readList(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').trim().split(/\s+/);
  } catch {
    return [];
  }
}

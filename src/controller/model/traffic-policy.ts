// networking.mesh.io/v1alpha1 TrafficPolicy (daemonset/chart/crds/networking.mesh.io.yaml,
// docs/traffic-policy.md) → Route.resilience of each target Service, and the policy's status.
//
// Status follows policy attachment (Gateway API GEP-713): one Accepted condition, with reason
// Accepted, Invalid (the spec is wrong: nothing of it applies), TargetNotFound (no target Service
// exists) or Conflicted (every target already has an older TrafficPolicy: the oldest wins, by
// creationTimestamp, then namespace/name, as Istio resolves conflicting policies).
// The CRD's schema already validates; this checks again what a schema cannot (or an API server
// that skipped validation let through), so a bad policy never reaches a waypoint.
import type * as k8s from '@kubernetes/client-node';
import type { Resilience } from '../../xds/index.ts';
import { isRecord, nameOf, namespaceOf, olderFirst, parseDuration, sortedMap } from './kube.ts';
import { condition } from './status.ts';
import type { Condition, KubeObject } from './types.ts';

export interface TrafficPolicyStatus {
  conditions: Condition[];
}

export const POLICY_REASON = Object.freeze({
  accepted: 'Accepted',
  invalid: 'Invalid',
  targetNotFound: 'TargetNotFound',
  conflicted: 'Conflicted',
});

/** Istio's DestinationRule outlierDetection defaults. */
const OUTLIER_DEFAULTS = { consecutive5xxErrors: 5, baseEjectionMs: 30_000, maxEjectionPercent: 10 };

export function compileTrafficPolicies(
  policies: KubeObject[],
  services: Map<string, k8s.V1Service>,
): { resilience: Map<string, Resilience>; status: Map<string, TrafficPolicyStatus> } {
  const resilience = new Map<string, Resilience>();
  const winner = new Map<string, string>();
  const status = new Map<string, TrafficPolicyStatus>();
  for (const obj of [...policies].sort(olderFirst)) {
    const ns = namespaceOf(obj);
    const key = `TrafficPolicy/${ns}/${nameOf(obj)}`;
    const gen = obj.metadata?.generation ?? 0;
    const errors: string[] = [];
    const compiled = compile(obj, key, errors);
    const accepted = (ok: boolean, reason: string, msg: string) => ({ conditions: [condition('Accepted', ok, reason, msg, gen)] });
    if (!compiled || errors.length > 0) {
      status.set(key, accepted(false, POLICY_REASON.invalid, `${errors.join('; ')}; not applied anywhere until the spec is fixed`));
      continue;
    }
    const missing: string[] = [];
    const lost: string[] = [];
    const applied: string[] = [];
    for (const name of compiled.targets) {
      const svcKey = `${ns}/${name}`;
      if (!services.has(svcKey)) missing.push(svcKey);
      else if (winner.has(svcKey)) lost.push(`Service ${svcKey} (already targeted by the older ${winner.get(svcKey)})`);
      else {
        winner.set(svcKey, key);
        resilience.set(svcKey, compiled.resilience);
        applied.push(svcKey);
      }
    }
    const notes = [...(missing.length ? [`Service ${missing.join(', ')} does not exist`] : []), ...(lost.length ? [`not applied to ${lost.join(', ')}`] : [])];
    if (applied.length > 0) status.set(key, accepted(true, POLICY_REASON.accepted, `applied to Service ${applied.join(', ')} by its waypoint${notes.length ? `; ${notes.join('; ')}` : ''}`));
    else if (lost.length > 0) status.set(key, accepted(false, POLICY_REASON.conflicted, `${notes.join('; ')}: the oldest TrafficPolicy of a Service applies`));
    else status.set(key, accepted(false, POLICY_REASON.targetNotFound, notes.join('; ')));
  }
  return { resilience: sortedMap(resilience), status: sortedMap(status) };
}

function compile(obj: KubeObject, origin: string, errors: string[]): { targets: string[]; resilience: Resilience } | null {
  const spec = isRecord(obj.spec) ? obj.spec : {};
  const targets: string[] = [];
  const refs = Array.isArray(spec.targetRefs) ? (spec.targetRefs as unknown[]) : [];
  if (refs.length === 0) errors.push('spec.targetRefs needs at least one Service');
  refs.forEach((r, i) => {
    if (!isRecord(r) || (r.group ?? '') !== '' || r.kind !== 'Service' || typeof r.name !== 'string' || !r.name) {
      errors.push(`spec.targetRefs[${i}] must be {group: "", kind: Service, name: <name>}`);
    } else if (!targets.includes(r.name)) targets.push(r.name);
  });

  const int = (v: unknown, where: string, min: number, max: number, dflt: number): number => {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      errors.push(`${where}: ${JSON.stringify(v)} is not an integer between ${min} and ${max}`);
      return dflt;
    }
    return v;
  };
  const percent = (v: unknown, where: string): number => {
    if (v === undefined || v === null) return 100;
    if (typeof v !== 'number' || v < 0 || v > 100) {
      errors.push(`${where}: ${JSON.stringify(v)} is not a percentage (0-100)`);
      return 0;
    }
    return v;
  };
  const duration = (v: unknown, where: string, dflt: number | null): number => {
    if (v === undefined && dflt !== null) return dflt;
    const ms = typeof v === 'string' ? parseDuration(v) : null;
    if (ms === null) {
      errors.push(`${where}: ${JSON.stringify(v)} is not a duration (e.g. "200ms", "1s")`);
      return 0;
    }
    return ms;
  };
  const max = 0xffff_ffff;

  const r: Resilience = { origin, fault: null, connectionPool: null, outlierDetection: null, rateLimit: null };
  if (isRecord(spec.faultInjection)) {
    const f = spec.faultInjection;
    const delay = isRecord(f.delay) ? f.delay : null;
    const abort = isRecord(f.abort) ? f.abort : null;
    r.fault = {
      delayMs: delay ? duration(delay.fixedDelay, 'spec.faultInjection.delay.fixedDelay', null) : 0,
      delayPercent: delay ? percent(delay.percentage, 'spec.faultInjection.delay.percentage') : 0,
      abortStatus: abort ? int(abort.httpStatus, 'spec.faultInjection.abort.httpStatus', 200, 599, 0) : 0,
      abortPercent: abort ? percent(abort.percentage, 'spec.faultInjection.abort.percentage') : 0,
    };
    if (abort && abort.httpStatus === undefined) errors.push('spec.faultInjection.abort.httpStatus is required');
  }
  if (isRecord(spec.connectionPool)) {
    const c = spec.connectionPool;
    r.connectionPool = {
      maxConnections: int(c.maxConnections, 'spec.connectionPool.maxConnections', 0, max, 0),
      maxPendingRequests: int(c.maxPendingRequests, 'spec.connectionPool.maxPendingRequests', 0, max, 0),
      maxRequestsPerConnection: int(c.maxRequestsPerConnection, 'spec.connectionPool.maxRequestsPerConnection', 0, max, 0),
    };
  }
  if (isRecord(spec.outlierDetection)) {
    const o = spec.outlierDetection;
    r.outlierDetection = {
      consecutive5xxErrors: int(o.consecutive5xxErrors, 'spec.outlierDetection.consecutive5xxErrors', 1, max, OUTLIER_DEFAULTS.consecutive5xxErrors),
      baseEjectionMs: duration(o.baseEjectionTime, 'spec.outlierDetection.baseEjectionTime', OUTLIER_DEFAULTS.baseEjectionMs),
      maxEjectionPercent: int(o.maxEjectionPercent, 'spec.outlierDetection.maxEjectionPercent', 0, 100, OUTLIER_DEFAULTS.maxEjectionPercent),
    };
  }
  if (isRecord(spec.rateLimit)) {
    const l = spec.rateLimit;
    r.rateLimit = {
      maxTokens: int(l.maxTokens, 'spec.rateLimit.maxTokens', 1, max, 0),
      tokensPerFill: int(l.tokensPerFill, 'spec.rateLimit.tokensPerFill', 1, max, 0),
      fillIntervalMs: duration(l.fillInterval, 'spec.rateLimit.fillInterval', null),
    };
    if (l.maxTokens === undefined || l.tokensPerFill === undefined) errors.push('spec.rateLimit needs maxTokens and tokensPerFill');
    if (r.rateLimit.fillIntervalMs === 0 && errors.length === 0) errors.push('spec.rateLimit.fillInterval must be longer than 0');
  }
  return { targets, resilience: r };
}

// Status conditions for our policy CRDs. Every policy gets two (Gateway API's habit):
//   Accepted — the spec is valid (False: nothing of it is enforced; the reason names what is wrong);
//   Enforced — it is enforced as written (False: it is not, or only fail-closed; the message says
//              by whom, where and how much more restrictive it is).
import type { Condition, PolicyStatus } from './types.ts';

export const ACCEPTED = 'Accepted';
export const ENFORCED = 'Enforced';

/** Reasons, stable for alerting and for meshctl. */
export const REASON = Object.freeze({
  accepted: 'Accepted',
  enforced: 'Enforced',
  invalid: 'Invalid',
  unknownAction: 'UnknownAction',
  invalidPrincipal: 'InvalidPrincipal',
  invalidCidr: 'InvalidCIDR',
  invalidPort: 'InvalidPort',
  invalidSpec: 'InvalidSpec',
  l7WithoutWaypoint: 'L7FieldsWithoutWaypoint',
  customWithoutWaypoint: 'CustomWithoutWaypoint',
  auditWithoutWaypoint: 'AuditWithoutWaypoint',
  enforcedByWaypoint: 'EnforcedByWaypoint',
  waypointNotFound: 'WaypointNotFound',
  conflicted: 'Conflicted',
  noEffect: 'NoEffect',
});

export function condition(type: string, ok: boolean, reason: string, message: string, generation: number): Condition {
  return { type, status: ok ? 'True' : 'False', reason, message, observedGeneration: generation };
}

export function policyStatus(accepted: Condition, enforced: Condition): PolicyStatus {
  return { conditions: [accepted, enforced] };
}

/**
 * The conditions to write, given what is on the object now: a condition whose status did not
 * change keeps its lastTransitionTime (metav1.Condition: "the last time the condition transitioned
 * from one status to another"), others get `now`. Conditions of types the model does not produce
 * (written by someone else) are kept.
 */
export function mergeConditions(previous: readonly Condition[] | undefined, next: PolicyStatus, now: Date): PolicyStatus {
  const prev = new Map((previous ?? []).map((c) => [c.type, c]));
  const ours = new Set(next.conditions.map((c) => c.type));
  const conditions: Condition[] = next.conditions.map((c) => {
    const p = prev.get(c.type);
    return { ...c, lastTransitionTime: p && p.status === c.status && p.lastTransitionTime ? p.lastTransitionTime : now.toISOString() };
  });
  for (const p of previous ?? []) if (!ours.has(p.type)) conditions.push(p);
  return { conditions };
}

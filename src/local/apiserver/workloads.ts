// Write rules for the built-in groups beyond core: apps/v1 (Deployment, ReplicaSet, DaemonSet,
// StatefulSet), batch/v1 Job, policy/v1 PodDisruptionBudget, coordination.k8s.io/v1 Lease and
// networking.k8s.io/v1 NetworkPolicy. Defaults follow k8s.io/kubernetes/pkg/apis/*/v1/defaults.go,
// validation pkg/apis/{apps,batch,policy}/validation (wording included: kubectl users grep it).
import { randomUUID } from 'node:crypto';
import type { Strategy } from './strategies.ts';
import { Causes, expectArray, expectObject, expectStringMap } from './validate.ts';
import { deepEqual, isObject, type JsonObject, type KubeObject } from './types.ts';

const obj = (v: unknown): JsonObject => (isObject(v) ? v : {});

/** PodTemplateSpec defaults as SetDefaults_PodSpec and SetDefaults_Container apply them. */
function defaultTemplate(spec: JsonObject): void {
  const template = (spec.template ??= {}) as JsonObject;
  if (!isObject(template)) return;
  const pod = (template.spec ??= {}) as JsonObject;
  if (!isObject(pod)) return;
  pod.restartPolicy ??= 'Always';
  pod.dnsPolicy ??= 'ClusterFirst';
  pod.schedulerName ??= 'default-scheduler';
  pod.terminationGracePeriodSeconds ??= 30;
  pod.securityContext ??= {};
  for (const list of [pod.containers, pod.initContainers]) {
    for (const c of Array.isArray(list) ? list : []) {
      if (!isObject(c)) continue;
      // A missing tag or :latest means Always, as the real defaulter decides.
      const image = typeof c.image === 'string' ? c.image : '';
      const tag = /:([^/:@]+)$/.exec(image.split('@')[0]!)?.[1];
      c.imagePullPolicy ??= image.includes('@') ? 'IfNotPresent' : !tag || tag === 'latest' ? 'Always' : 'IfNotPresent';
      c.terminationMessagePath ??= '/dev/termination-log';
      c.terminationMessagePolicy ??= 'File';
      c.resources ??= {};
      for (const p of Array.isArray(c.ports) ? c.ports : []) if (isObject(p)) p.protocol ??= 'TCP';
    }
  }
}

/** Go's %#v of a map[string]string, as field.Invalid prints template labels. */
function goMap(m: Record<string, unknown>): string {
  const entries = Object.keys(m)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${JSON.stringify(String(m[k]))}`);
  return `map[string]string{${entries.join(', ')}}`;
}

/** metav1.LabelSelector semantics: matchLabels and matchExpressions, all must hold. */
export function selectorMatches(selector: JsonObject, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(obj(selector.matchLabels))) if (labels[k] !== v) return false;
  for (const e of expectArray(new Causes(), selector.matchExpressions, '')) {
    if (!isObject(e) || typeof e.key !== 'string') return false;
    const values = Array.isArray(e.values) ? e.values.map(String) : [];
    const has = Object.hasOwn(labels, e.key);
    const ok =
      e.operator === 'In' ? has && values.includes(labels[e.key]!)
      : e.operator === 'NotIn' ? !has || !values.includes(labels[e.key]!)
      : e.operator === 'Exists' ? has
      : e.operator === 'DoesNotExist' ? !has
      : false;
    if (!ok) return false;
  }
  return true;
}

const OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

function validateSelector(c: Causes, sel: JsonObject, field: string): void {
  expectStringMap(c, sel.matchLabels, `${field}.matchLabels`);
  expectArray(c, sel.matchExpressions, `${field}.matchExpressions`).forEach((raw, i) => {
    const e = expectObject(c, raw, `${field}.matchExpressions[${i}]`);
    if (!e) return;
    if (!OPERATORS.includes(e.operator as string)) c.invalid(`${field}.matchExpressions[${i}].operator`, e.operator, 'not a valid selector operator');
    const n = Array.isArray(e.values) ? e.values.length : 0;
    if ((e.operator === 'In' || e.operator === 'NotIn') && n === 0) c.required(`${field}.matchExpressions[${i}].values`, 'must be specified when `operator` is \'In\' or \'NotIn\'');
    if ((e.operator === 'Exists' || e.operator === 'DoesNotExist') && n > 0) c.forbidden(`${field}.matchExpressions[${i}].values`, 'may not be specified when `operator` is \'Exists\' or \'DoesNotExist\'');
  });
}

/** The pod template checks (pod rules under spec.template.spec) and the selector/labels match. */
function validateTemplate(c: Causes, spec: JsonObject, kind: string, restartPolicies: string[], podStrategy: Strategy): void {
  const template = expectObject(c, spec.template, 'spec.template');
  if (!template) return c.required('spec.template');
  const labels = obj(obj(template.metadata).labels) as Record<string, string>;
  const sel = spec.selector;
  if (sel === undefined || sel === null) c.required('spec.selector');
  else if (!isObject(sel)) c.typeInvalid('spec.selector', sel, 'an object');
  else {
    validateSelector(c, sel, 'spec.selector');
    if (Object.keys(obj(sel.matchLabels)).length + expectArray(new Causes(), sel.matchExpressions, '').length === 0) {
      c.invalid('spec.selector', sel, `empty selector is invalid for ${kind.toLowerCase()}`);
    } else if (!selectorMatches(sel, labels)) {
      c.list.push({ reason: 'FieldValueInvalid', field: 'spec.template.metadata.labels', message: `Invalid value: ${goMap(labels)}: \`selector\` does not match template \`labels\`` });
    }
  }
  // The pod rules, reported under the template's path.
  const inner = new Causes();
  podStrategy.validate?.({ apiVersion: 'v1', kind: 'Pod', metadata: {}, spec: template.spec }, inner);
  for (const cause of inner.list) c.list.push({ ...cause, field: cause.field?.replace(/^spec/, 'spec.template.spec') });
  const rp = obj(template.spec).restartPolicy;
  if (rp !== undefined && !restartPolicies.includes(rp as string)) {
    for (let i = c.list.length - 1; i >= 0; i--) if (c.list[i]!.field === 'spec.template.spec.restartPolicy') c.list.splice(i, 1);
    c.unsupported('spec.template.spec.restartPolicy', rp, restartPolicies);
  }
}

function nonNegative(c: Causes, v: unknown, field: string): void {
  if (v === undefined || v === null) return;
  if (!Number.isInteger(v)) c.typeInvalid(field, v, 'an integer');
  else if ((v as number) < 0) c.invalid(field, v, 'must be greater than or equal to 0');
}

function immutable(c: Causes, now: unknown, before: unknown, field: string): void {
  if (before !== undefined && !deepEqual(now, before)) c.invalid(field, now, 'field is immutable');
}

/** apps/v1 kinds share the template, selector and replica rules. */
function appsStrategy(kind: string, defaults: (spec: JsonObject) => void, podStrategy: () => Strategy): Strategy {
  const apply = (o: KubeObject) => {
    const spec = (o.spec ??= {}) as JsonObject;
    if (!isObject(spec)) return;
    defaults(spec);
    defaultTemplate(spec);
  };
  return {
    nameRule: 'subdomain',
    prepareForCreate(o) {
      apply(o);
      o.status = {};
    },
    prepareForUpdate: apply,
    validate(o, c, old) {
      const spec = expectObject(c, o.spec, 'spec');
      if (!spec) return c.required('spec');
      nonNegative(c, spec.replicas, 'spec.replicas');
      nonNegative(c, spec.revisionHistoryLimit, 'spec.revisionHistoryLimit');
      nonNegative(c, spec.minReadySeconds, 'spec.minReadySeconds');
      validateTemplate(c, spec, kind, ['Always'], podStrategy());
      if (old) immutable(c, spec.selector, obj(old.spec).selector, 'spec.selector');
    },
  };
}

const STRATEGY_TYPES: Record<string, string[]> = { Deployment: ['Recreate', 'RollingUpdate'], DaemonSet: ['OnDelete', 'RollingUpdate'], StatefulSet: ['OnDelete', 'RollingUpdate'] };

function strategyCheck(kind: string, field: string): (o: KubeObject, c: Causes) => void {
  return (o, c) => {
    const s = obj(obj(o.spec)[field.split('.')[1]!]);
    if (s.type !== undefined && !STRATEGY_TYPES[kind]!.includes(s.type as string)) c.unsupported(`${field}.type`, s.type, STRATEGY_TYPES[kind]!);
  };
}

function withCheck(s: Strategy, extra: (o: KubeObject, c: Causes) => void): Strategy {
  return { ...s, validate: (o, c, old) => (s.validate?.(o, c, old), extra(o, c)) };
}

export function workloadStrategies(podStrategy: () => Strategy): Record<string, Strategy> {
  const deployment = appsStrategy('Deployment', (spec) => {
    spec.replicas ??= 1;
    const st = (spec.strategy ??= {}) as JsonObject;
    st.type ??= 'RollingUpdate';
    if (st.type === 'RollingUpdate') {
      const ru = (st.rollingUpdate ??= {}) as JsonObject;
      ru.maxUnavailable ??= '25%';
      ru.maxSurge ??= '25%';
    }
    spec.revisionHistoryLimit ??= 10;
    spec.progressDeadlineSeconds ??= 600;
  }, podStrategy);
  const replicaSet = appsStrategy('ReplicaSet', (spec) => {
    spec.replicas ??= 1;
  }, podStrategy);
  const daemonSet = appsStrategy('DaemonSet', (spec) => {
    const st = (spec.updateStrategy ??= {}) as JsonObject;
    st.type ??= 'RollingUpdate';
    if (st.type === 'RollingUpdate') {
      const ru = (st.rollingUpdate ??= {}) as JsonObject;
      ru.maxUnavailable ??= 1;
      ru.maxSurge ??= 0;
    }
    spec.revisionHistoryLimit ??= 10;
  }, podStrategy);
  const statefulSet = appsStrategy('StatefulSet', (spec) => {
    spec.replicas ??= 1;
    spec.podManagementPolicy ??= 'OrderedReady';
    const st = (spec.updateStrategy ??= {}) as JsonObject;
    st.type ??= 'RollingUpdate';
    if (st.type === 'RollingUpdate') ((st.rollingUpdate ??= {}) as JsonObject).partition ??= 0;
    spec.revisionHistoryLimit ??= 10;
    spec.persistentVolumeClaimRetentionPolicy ??= { whenDeleted: 'Retain', whenScaled: 'Retain' };
  }, podStrategy);
  return {
    Deployment: withCheck(deployment, strategyCheck('Deployment', 'spec.strategy')),
    ReplicaSet: replicaSet,
    DaemonSet: withCheck(daemonSet, strategyCheck('DaemonSet', 'spec.updateStrategy')),
    StatefulSet: withCheck(statefulSet, (o, c) => {
      strategyCheck('StatefulSet', 'spec.updateStrategy')(o, c);
      const p = obj(o.spec).podManagementPolicy;
      if (p !== undefined && !['OrderedReady', 'Parallel'].includes(p as string)) c.unsupported('spec.podManagementPolicy', p, ['OrderedReady', 'Parallel']);
    }),
    Job: job(podStrategy),
    PodDisruptionBudget: podDisruptionBudget,
    Lease: lease,
    NetworkPolicy: networkPolicy,
  };
}

/** batch/v1 Job: the server picks the selector (controller-uid) unless spec.manualSelector. */
function job(podStrategy: () => Strategy): Strategy {
  const apply = (o: KubeObject) => {
    const spec = (o.spec ??= {}) as JsonObject;
    if (!isObject(spec)) return;
    if (spec.completions === undefined && spec.parallelism === undefined) {
      spec.completions = 1;
      spec.parallelism = 1;
    }
    spec.parallelism ??= 1;
    spec.backoffLimit ??= 6;
    spec.completionMode ??= 'NonIndexed';
    spec.suspend ??= false;
    spec.podReplacementPolicy ??= 'TerminatingOrFailed';
    // A Job's pods must not restart in place, so Always is no default here: the server asks the
    // user to choose (`restartPolicy: Required value`) rather than choosing for them.
    const unset = obj(obj(spec.template).spec).restartPolicy === undefined;
    defaultTemplate(spec);
    if (unset && isObject(spec.template) && isObject(spec.template.spec)) delete spec.template.spec.restartPolicy;
  };
  return {
    nameRule: 'subdomain',
    prepareForCreate(o) {
      apply(o);
      const spec = o.spec as JsonObject;
      if (isObject(spec) && spec.manualSelector !== true) {
        // The uid the registry will keep (it assigns one before this runs).
        const uid = (o.metadata.uid ??= randomUUID());
        const generated = { 'batch.kubernetes.io/controller-uid': uid, 'batch.kubernetes.io/job-name': o.metadata.name ?? '', 'controller-uid': uid, 'job-name': o.metadata.name ?? '' };
        if (spec.selector === undefined) spec.selector = { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } };
        const template = isObject(spec.template) ? spec.template : undefined;
        if (template) {
          const meta = (template.metadata ??= {}) as JsonObject;
          meta.labels = { ...obj(meta.labels), ...generated };
        }
      }
      o.status = {};
    },
    prepareForUpdate: apply,
    validate(o, c, old) {
      const spec = expectObject(c, o.spec, 'spec');
      if (!spec) return c.required('spec');
      for (const k of ['parallelism', 'completions', 'backoffLimit', 'activeDeadlineSeconds', 'ttlSecondsAfterFinished']) nonNegative(c, spec[k], `spec.${k}`);
      if (isObject(spec.template) && obj(spec.template.spec).restartPolicy === undefined) {
        c.required('spec.template.spec.restartPolicy', 'valid values: "OnFailure", "Never"');
      }
      validateTemplate(c, spec, 'Job', ['OnFailure', 'Never'], podStrategy());
      if (old) {
        const before = obj(old.spec);
        immutable(c, spec.selector, before.selector, 'spec.selector');
        immutable(c, spec.completions, before.completions, 'spec.completions');
        immutable(c, spec.template, before.template, 'spec.template');
      }
    },
  };
}

const podDisruptionBudget: Strategy = {
  nameRule: 'subdomain',
  prepareForCreate(o) {
    o.status = { disruptionsAllowed: 0, currentHealthy: 0, desiredHealthy: 0, expectedPods: 0 };
  },
  validate(o, c) {
    const spec = expectObject(c, o.spec, 'spec') ?? {};
    if (spec.minAvailable !== undefined && spec.maxUnavailable !== undefined) c.invalid('spec', spec, 'minAvailable and maxUnavailable cannot be both set');
    for (const k of ['minAvailable', 'maxUnavailable']) {
      const v = spec[k];
      if (v === undefined) continue;
      if (typeof v === 'number') nonNegative(c, v, `spec.${k}`);
      else if (typeof v !== 'string' || !/^\d+%$/.test(v)) c.invalid(`spec.${k}`, v, 'a valid percent string must be a numeric string followed by an ending \'%\' (e.g. \'1%\',  or \'93%\', regex used for validation is \'[0-9]+%\')');
    }
    if (isObject(spec.selector)) validateSelector(c, spec.selector, 'spec.selector');
  },
};

const lease: Strategy = {
  nameRule: 'subdomain',
  validate(o, c) {
    const spec = expectObject(c, o.spec, 'spec') ?? {};
    const d = spec.leaseDurationSeconds;
    if (d !== undefined && d !== null && !(Number.isInteger(d) && (d as number) > 0)) c.invalid('spec.leaseDurationSeconds', d, 'must be greater than 0');
    nonNegative(c, spec.leaseTransitions, 'spec.leaseTransitions');
  },
};

const networkPolicy: Strategy = {
  nameRule: 'subdomain',
  prepareForCreate(o) {
    const spec = (o.spec ??= {}) as JsonObject;
    if (!isObject(spec)) return;
    spec.podSelector ??= {};
    // SetDefaults_NetworkPolicySpec: Ingress always, Egress when egress rules are given.
    spec.policyTypes ??= Array.isArray(spec.egress) && spec.egress.length ? ['Ingress', 'Egress'] : ['Ingress'];
  },
  validate(o, c) {
    const spec = expectObject(c, o.spec, 'spec') ?? {};
    if (isObject(spec.podSelector)) validateSelector(c, spec.podSelector, 'spec.podSelector');
    expectArray(c, spec.policyTypes, 'spec.policyTypes').forEach((t, i) => {
      if (t !== 'Ingress' && t !== 'Egress') c.unsupported(`spec.policyTypes[${i}]`, t, ['Ingress', 'Egress']);
    });
  },
};

// The scale subresource (autoscaling/v1 Scale) of Deployments, ReplicaSets and StatefulSets: what
// `kubectl scale` and autoscalers read and write. A Scale is a view of spec.replicas; writing it
// changes only that field of the main object (k8s.io/kubernetes/pkg/registry/apps/deployment/storage).
import { BadRequestError, InvalidError } from './errors.ts';
import { jsonPatch, mergePatch } from './patch.ts';
import type { PatchType, Registry } from './registry.ts';
import type { ResourceDef } from './resources.ts';
import { isObject, type JsonObject, type KubeObject } from './types.ts';

/** The Scale for `o`: spec.replicas, status.replicas and the selector as a string. */
export function toScale(o: KubeObject): JsonObject {
  const spec = isObject(o.spec) ? o.spec : {};
  const status = isObject(o.status) ? o.status : {};
  const m = o.metadata;
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion, creationTimestamp: m.creationTimestamp },
    spec: { replicas: spec.replicas ?? 0 },
    status: { replicas: status.replicas ?? 0, selector: selectorString(spec.selector) },
  };
}

export function getScale(reg: Registry, d: ResourceDef, ns: string | undefined, name: string): JsonObject {
  return toScale(reg.get(d, ns, name));
}

/** PUT {name}/scale: only spec.replicas counts; a resourceVersion is a precondition. */
export async function updateScale(reg: Registry, d: ResourceDef, ns: string | undefined, name: string, body: unknown, dryRun: boolean): Promise<JsonObject> {
  if (!isObject(body)) throw new BadRequestError('the request body must be a Scale object');
  const spec = isObject(body.spec) ? body.spec : {};
  const replicas = spec.replicas ?? 0;
  if (!Number.isInteger(replicas) || (replicas as number) < 0) {
    const message = Number.isInteger(replicas) ? `Invalid value: ${String(replicas)}: must be greater than or equal to 0` : `Invalid value: ${JSON.stringify(replicas)}: must be an integer`;
    throw new InvalidError('autoscaling', 'Scale', name, [{ reason: 'FieldValueInvalid', field: 'spec.replicas', message }]);
  }
  const rv = isObject(body.metadata) && typeof body.metadata.resourceVersion === 'string' ? body.metadata.resourceVersion : undefined;
  const { object } = await reg.patch(d, ns, name, 'merge', { metadata: rv ? { resourceVersion: rv } : {}, spec: { replicas } }, { dryRun });
  return toScale(object);
}

/** PATCH {name}/scale: the patch applies to the Scale, then as a PUT of the result. */
export async function patchScale(reg: Registry, d: ResourceDef, ns: string | undefined, name: string, type: PatchType, patch: unknown, dryRun: boolean): Promise<JsonObject> {
  const current = getScale(reg, d, ns, name);
  let next: unknown;
  if (type === 'json') next = jsonPatch(current, patch, { group: 'autoscaling', kind: 'Scale', name });
  else if (isObject(patch)) next = mergePatch(current, patch); // Scale has no lists: strategic = merge
  else throw new BadRequestError('a patch for the scale subresource must be a JSON object');
  // The patched Scale carries the resourceVersion it was read at only if the patch set one.
  if (isObject(next) && isObject(next.metadata) && !(isObject(patch) && isObject(patch.metadata) && 'resourceVersion' in patch.metadata)) delete next.metadata.resourceVersion;
  return updateScale(reg, d, ns, name, next, dryRun);
}

/** metav1.LabelSelectorAsSelector(...).String(): "app=web,tier in (a,b)". */
function selectorString(sel: unknown): string {
  if (!isObject(sel)) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(isObject(sel.matchLabels) ? sel.matchLabels : {})) parts.push(`${k}=${String(v)}`);
  for (const e of Array.isArray(sel.matchExpressions) ? sel.matchExpressions : []) {
    if (!isObject(e)) continue;
    const values = Array.isArray(e.values) ? [...e.values].map(String).sort().join(',') : '';
    if (e.operator === 'In') parts.push(`${String(e.key)} in (${values})`);
    else if (e.operator === 'NotIn') parts.push(`${String(e.key)} notin (${values})`);
    else if (e.operator === 'Exists') parts.push(String(e.key));
    else if (e.operator === 'DoesNotExist') parts.push(`!${String(e.key)}`);
  }
  return parts.sort().join(',');
}

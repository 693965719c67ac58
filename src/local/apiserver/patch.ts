// The four PATCH content types: RFC 7386 merge patch, RFC 6902 JSON patch (fast-json-patch),
// Kubernetes strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch, as far as our
// kinds need it), and server-side apply, which we treat as a strategic/merge patch of the applied
// configuration (no managedFields bookkeeping).
import jsonpatch from 'fast-json-patch';
import { BadRequestError, InvalidError } from './errors.ts';
import { clone, isObject, type JsonObject } from './types.ts';

/** RFC 7386: objects merge recursively, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

export function jsonPatch(target: unknown, ops: unknown, name: { group: string; kind: string; name: string }): unknown {
  if (!Array.isArray(ops)) throw new BadRequestError('a json-patch body must be a JSON array of operations (RFC 6902)');
  try {
    return jsonpatch.applyPatch(clone(target), ops as jsonpatch.Operation[], true, true, true).newDocument;
  } catch (err) {
    const e = err as { message?: string; name?: string; index?: number };
    if (e.name === 'TEST_OPERATION_FAILED') {
      throw new InvalidError(name.group, name.kind, name.name, [{ reason: 'FieldValueInvalid', message: `the json-patch "test" operation at index ${e.index ?? '?'} failed` }]);
    }
    throw new BadRequestError(`the json-patch could not be applied: ${(e.message ?? String(err)).split('\n')[0]}`);
  }
}

/**
 * Merge keys of list fields by path ("[]" steps into list items); lists not named here are
 * replaced whole, as strategic merge does for atomic lists. From the `patchMergeKey` tags in
 * k8s.io/api/core/v1/types.go.
 */
const CONTAINER_LISTS: Record<string, string> = {
  ports: 'containerPort',
  env: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
};
const MERGE_KEYS: Record<string, Record<string, string>> = {
  '*': { 'metadata.ownerReferences': 'uid' },
  Pod: {
    ...Object.fromEntries(
      ['containers', 'initContainers', 'ephemeralContainers'].flatMap((c) => [
        [`spec.${c}`, 'name'],
        ...Object.entries(CONTAINER_LISTS).map(([f, k]) => [`spec.${c}[].${f}`, k]),
      ]),
    ),
    'spec.volumes': 'name',
    'spec.imagePullSecrets': 'name',
    'spec.hostAliases': 'ip',
    'status.conditions': 'type',
    'status.podIPs': 'ip',
  },
  Service: { 'spec.ports': 'port' },
  Node: { 'status.conditions': 'type', 'status.addresses': 'type', 'spec.podCIDRs': '' },
  Namespace: { 'status.conditions': 'type' },
};
// Workloads embed a pod template: the pod's keys one level down, under spec.template.
const TEMPLATE_KEYS = Object.fromEntries(Object.entries(MERGE_KEYS.Pod!).filter(([k]) => k.startsWith('spec.')).map(([k, v]) => [`spec.template.${k}`, v]));
for (const kind of ['Deployment', 'ReplicaSet', 'DaemonSet', 'StatefulSet', 'Job']) MERGE_KEYS[kind] = { ...TEMPLATE_KEYS, 'status.conditions': 'type' };

/** Groups whose kinds are compiled into kube-apiserver, the ones strategic merge patch serves. */
const STRATEGIC_GROUPS = new Set(['', 'apps', 'batch', 'policy', 'coordination.k8s.io', 'networking.k8s.io', 'rbac.authorization.k8s.io']);
export const supportsStrategicMerge = (group: string): boolean => STRATEGIC_GROUPS.has(group);

/** Lists of scalars merged as sets (`patchStrategy:"merge"` on []string). */
const SET_LISTS = new Set(['metadata.finalizers']);

/** Applies a strategic merge patch to `target` for an object of kind `kind`. */
export function strategicMergePatch(target: unknown, patch: unknown, kind: string): unknown {
  if (!isObject(patch)) throw new BadRequestError('a strategic-merge-patch body must be a JSON object');
  const keys = { ...MERGE_KEYS['*'], ...(MERGE_KEYS[kind] ?? {}) };
  return smpObject(isObject(target) ? target : {}, patch, '', keys);
}

function smpObject(target: JsonObject, patch: JsonObject, path: string, keys: Record<string, string>): JsonObject {
  const directive = patch.$patch;
  if (directive === 'replace') {
    const { $patch: _, ...rest } = patch;
    return clone(rest);
  }
  if (directive === 'delete') return {};
  let out: JsonObject = { ...target };
  const retain = patch.$retainKeys;
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k === '$retainKeys') continue;
    if (k.startsWith('$setElementOrder/') || k.startsWith('$deleteFromPrimitiveList/')) continue;
    const p = path ? `${path}.${k}` : k;
    if (v === null) {
      delete out[k];
    } else if (Array.isArray(v)) {
      out[k] = smpList(Array.isArray(out[k]) ? (out[k] as unknown[]) : [], v, p, keys);
    } else if (isObject(v)) {
      if (v.$patch === 'delete') delete out[k];
      else out[k] = smpObject(isObject(out[k]) ? (out[k] as JsonObject) : {}, v, p, keys);
    } else {
      out[k] = v;
    }
  }
  // Directives that refer to sibling list fields run after the fields themselves merged.
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$deleteFromPrimitiveList/') && Array.isArray(out[k.slice(25)])) {
      const field = k.slice(25);
      out[field] = (out[field] as unknown[]).filter((x) => !v || !(v as unknown[]).includes(x));
    } else if (k.startsWith('$setElementOrder/') && Array.isArray(v) && Array.isArray(out[k.slice(17)])) {
      const field = k.slice(17);
      out[field] = reorder(out[field] as unknown[], v, keys[path ? `${path}.${field}` : field]);
    }
  }
  if (Array.isArray(retain)) {
    out = Object.fromEntries(Object.entries(out).filter(([k]) => retain.includes(k)));
  }
  return out;
}

function smpList(target: unknown[], patch: unknown[], path: string, keys: Record<string, string>): unknown[] {
  const key = keys[path.replace(/\[\]/g, '[]')];
  if (patch.some((e) => isObject(e) && e.$patch === 'replace' && Object.keys(e).length === 1)) {
    return clone(patch.filter((e) => !(isObject(e) && e.$patch === 'replace')));
  }
  if (SET_LISTS.has(path)) return [...new Set([...target, ...patch])];
  if (!key) return clone(patch.filter((e) => !(isObject(e) && e.$patch)));
  const out = [...target];
  for (const item of patch) {
    if (!isObject(item)) throw new BadRequestError(`${path}: expected a list of objects merged by "${key}"`);
    const idx = out.findIndex((e) => isObject(e) && e[key] === item[key]);
    if (item.$patch === 'delete') {
      if (idx >= 0) out.splice(idx, 1);
    } else if (idx >= 0) {
      out[idx] = smpObject(out[idx] as JsonObject, item, `${path}[]`, keys);
    } else {
      const { $patch: _, ...rest } = item;
      out.push(smpObject({}, rest, `${path}[]`, keys));
    }
  }
  return out;
}

/** `$setElementOrder`: items named in `order` come first in that order, the rest keep theirs. */
function reorder(list: unknown[], order: unknown[], key: string | undefined): unknown[] {
  const idOf = (e: unknown) => (key && isObject(e) ? e[key] : e);
  const wanted = order.map((o) => (key && isObject(o) ? o[key] : o));
  const ranked = list.map((e, i) => ({ e, i, r: wanted.indexOf(idOf(e)) }));
  ranked.sort((a, b) => (a.r < 0 ? Infinity : a.r) - (b.r < 0 ? Infinity : b.r) || a.i - b.i);
  return ranked.map((x) => x.e);
}

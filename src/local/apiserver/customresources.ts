// Serving the objects of a CRD-defined kind: what happens on write (defaulting, pruning, schema
// validation), version conversion (None: the stored object with apiVersion rewritten), the scale
// subresource, additionalPrinterColumns for Tables, and the OpenAPI v3 schema kubectl explain reads.
import { BadRequestError, InvalidError } from './errors.ts';
import { type ResourceDef, apiVersionOf } from './resources.ts';
import { applyDefaults, prune, validateSchema } from './schema.ts';
import { clone, isObject, type JsonObject, type KubeObject } from './types.ts';
import { Causes, validateMeta } from './validate.ts';

export type FieldValidation = 'Ignore' | 'Warn' | 'Strict';

export function parseFieldValidation(v: string | null): FieldValidation {
  if (v === null || v === '' || v === 'Warn') return 'Warn';
  if (v === 'Ignore' || v === 'Strict') return v;
  throw new BadRequestError(`fieldValidation must be one of "Ignore", "Warn" or "Strict" (got "${v}")`);
}

const storageApiVersion = (d: ResourceDef): string => `${d.group}/${d.crd!.storageVersion}`;

/**
 * Shapes a written custom resource as the apiextensions server decodes it: unknown fields pruned
 * (refused under fieldValidation=Strict, reported as warnings under Warn), defaults applied, and
 * the apiVersion set to the storage version.
 */
export function admitCustom(d: ResourceDef, obj: KubeObject, fieldValidation: FieldValidation = 'Warn', warnings?: string[]): void {
  const schema = d.crd?.schema;
  if (schema) {
    const dropped = prune(obj, schema);
    if (dropped.length && fieldValidation === 'Strict') throw new BadRequestError(`strict decoding error: ${dropped.map((p) => `unknown field "${p}"`).join(', ')}`);
    if (fieldValidation === 'Warn') warnings?.push(...dropped.map((p) => `unknown field "${p}"`));
    applyDefaults(obj, schema);
  }
  obj.apiVersion = storageApiVersion(d);
}

/** A new object's status is the server's to set: dropped, then defaulted (Gateway's "Pending"). */
export function resetStatus(d: ResourceDef, obj: KubeObject): void {
  if (!d.subresources.includes('status')) return;
  delete obj.status;
  if (d.crd?.schema) applyDefaults(obj, d.crd.schema);
}

/** Metadata rules and the version's structural schema; throws 422 Invalid naming each field. */
export function validateCustom(d: ResourceDef, obj: KubeObject): void {
  const c = new Causes();
  validateMeta(obj, c, 'subdomain');
  const causes = [...c.list];
  if (d.crd?.schema) {
    const { apiVersion: _a, kind: _k, ...rest } = obj;
    causes.push(...validateSchema(rest, d.crd.schema));
  }
  if (causes.length) throw new InvalidError(d.group, d.kind, obj.metadata.name ?? obj.metadata.generateName ?? '', causes);
}

/** The stored object as version `d` shows it. */
export function present(d: ResourceDef, obj: KubeObject): KubeObject {
  if (!d.crd || obj.apiVersion === apiVersionOf(d)) return obj;
  return { ...obj, apiVersion: apiVersionOf(d) };
}

// ---- the scale subresource (autoscaling/v1 Scale) ----

const steps = (path: string): string[] => path.replace(/^\./, '').split('.');

function readPath(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const s of steps(path)) cur = isObject(cur) ? cur[s] : undefined;
  return cur;
}

export function scaleOf(d: ResourceDef, obj: KubeObject): JsonObject {
  const sc = d.crd!.scale!;
  const selector = sc.labelSelectorPath ? readPath(obj, sc.labelSelectorPath) : undefined;
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name: obj.metadata.name, namespace: obj.metadata.namespace, uid: obj.metadata.uid, resourceVersion: obj.metadata.resourceVersion, creationTimestamp: obj.metadata.creationTimestamp },
    spec: { replicas: Number(readPath(obj, sc.specReplicasPath) ?? 0) },
    status: { replicas: Number(readPath(obj, sc.statusReplicasPath) ?? 0), ...(typeof selector === 'string' ? { selector } : {}) },
  };
}

/** The object with the Scale's spec.replicas written to specReplicasPath. */
export function withReplicas(d: ResourceDef, obj: KubeObject, scale: unknown): KubeObject {
  const replicas = isObject(scale) && isObject(scale.spec) ? scale.spec.replicas : undefined;
  if (!Number.isInteger(replicas) || (replicas as number) < 0) {
    throw new InvalidError('autoscaling', 'Scale', obj.metadata.name!, [{ reason: 'FieldValueInvalid', field: 'spec.replicas', message: `Invalid value: ${JSON.stringify(replicas ?? null)}: must be greater than or equal to 0` }]);
  }
  const next = clone(obj);
  const path = steps(d.crd!.scale!.specReplicasPath);
  let cur = next as JsonObject;
  for (const s of path.slice(0, -1)) cur = (isObject(cur[s]) ? cur[s] : (cur[s] = {})) as JsonObject;
  cur[path[path.length - 1]!] = replicas;
  return next;
}

// ---- additionalPrinterColumns ----

/** Evaluates the JSONPath subset printer columns use: .a.b, [n], [*], [?(@.k=="v")]. */
export function jsonPath(obj: unknown, path: string): unknown[] {
  let cur: unknown[] = [obj];
  const re = /\.([A-Za-z0-9_$-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*["']([^"']*)["']\)\]/g;
  const expr = path.trim().replace(/^\{(.*)\}$/, '$1');
  let m: RegExpExecArray | null;
  while ((m = re.exec(expr))) {
    const [, field, index, filterKey, filterValue] = m;
    cur = cur.flatMap((v): unknown[] => {
      if (field !== undefined) return isObject(v) && v[field] !== undefined ? [v[field]] : [];
      if (!Array.isArray(v)) return [];
      if (index === '*') return v;
      if (index !== undefined) return v[Number(index)] !== undefined ? [v[Number(index)]] : [];
      return v.filter((e) => String(readPath(e, filterKey!)) === filterValue);
    });
  }
  return cur;
}

/** A cell as the apiextensions table convertor prints it: scalars as text, others as JSON. */
export function cellOf(obj: KubeObject, jsonPathExpr: string): string {
  return jsonPath(obj, jsonPathExpr)
    .map((v) => (typeof v === 'string' ? v : JSON.stringify(v)))
    .join(',');
}

// ---- OpenAPI v3 ----

/** The version's schema for /openapi/v3, tagged with its group-version-kind (kubectl explain). */
export function openApiSchemaOf(d: ResourceDef): JsonObject {
  const schema = clone(d.crd?.schema ?? { type: 'object', 'x-kubernetes-preserve-unknown-fields': true });
  const p = (schema.properties ??= {}) as JsonObject;
  p.apiVersion ??= { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' };
  p.kind ??= { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' };
  p.metadata = { type: 'object', description: "Standard object's metadata.", 'x-kubernetes-preserve-unknown-fields': true };
  schema['x-kubernetes-group-version-kind'] = [{ group: d.group, version: d.version, kind: d.kind }];
  return schema;
}

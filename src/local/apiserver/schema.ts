// Structural OpenAPI v3 schemas of CustomResourceDefinitions, applied as kube-apiserver's
// apiextensions server does (k8s.io/apiextensions-apiserver/pkg/apiserver/schema): defaulting from
// `default:`, pruning of fields the schema does not declare, then validation with the messages of
// k8s.io/kube-openapi/pkg/validation and pkg/util/validation/field, e.g.
//   spec.rules[0].matches[0].path.type: Unsupported value: "Bogus": supported values: "Exact", …
// Not evaluated: x-kubernetes-validations (CEL rules), `format`, allOf/anyOf/oneOf/not
// (ARCHITECTURE.md says so).
import type { StatusCause } from './errors.ts';
import { clone, isObject, type JsonObject } from './types.ts';

export type Schema = JsonObject;

const ROOT_META = new Set(['apiVersion', 'kind', 'metadata']);

const props = (s: Schema): Record<string, Schema> => (isObject(s.properties) ? (s.properties as Record<string, Schema>) : {});
const items = (s: Schema): Schema | undefined => (isObject(s.items) ? (s.items as Schema) : undefined);
const additional = (s: Schema): Schema | true | undefined => (s.additionalProperties === true ? true : isObject(s.additionalProperties) ? (s.additionalProperties as Schema) : undefined);
const preserves = (s: Schema): boolean => s['x-kubernetes-preserve-unknown-fields'] === true;

/** Fills absent (or null, when not nullable) fields that declare a default; mutates `v`. */
export function applyDefaults(v: unknown, s: Schema): void {
  if (isObject(v)) {
    for (const [k, ps] of Object.entries(props(s))) {
      if (ps.default !== undefined && (v[k] === undefined || (v[k] === null && ps.nullable !== true))) v[k] = clone(ps.default);
      if (v[k] !== undefined) applyDefaults(v[k], ps);
    }
    const ap = additional(s);
    if (ap && ap !== true) for (const k of Object.keys(v)) applyDefaults(v[k], ap);
  } else if (Array.isArray(v)) {
    const it = items(s);
    if (it) for (const e of v) applyDefaults(e, it);
  }
}

/** Removes fields the schema does not declare; returns their paths ("spec.foo") for warnings. */
export function prune(v: unknown, s: Schema, path = '', root = true): string[] {
  const dropped: string[] = [];
  if (isObject(v)) {
    const ps = props(s);
    const ap = additional(s);
    for (const k of Object.keys(v)) {
      const p = path ? `${path}.${k}` : k;
      if (root && ROOT_META.has(k)) continue;
      if (ps[k]) dropped.push(...prune(v[k], ps[k], p, false));
      else if (ap && ap !== true) dropped.push(...prune(v[k], ap, p, false));
      else if (!ap && !preserves(s)) {
        delete v[k];
        dropped.push(p);
      }
    }
  } else if (Array.isArray(v)) {
    const it = items(s);
    if (it) v.forEach((e, i) => dropped.push(...prune(e, it, `${path}[${i}]`, false)));
  }
  return dropped;
}

/** Every violation of `s` by `v`, with the field paths and wording of a real API server. */
export function validateSchema(v: unknown, s: Schema, path = ''): StatusCause[] {
  const out: StatusCause[] = [];
  check(v, s, path, out);
  return out;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : v === null || v === undefined ? 'null' : typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** Schema patterns are RE2; most are valid ECMAScript too, in unicode mode or, failing that, legacy mode. */
function compile(pattern: string): RegExp | undefined {
  for (const flags of ['u', '']) {
    try {
      return new RegExp(pattern, flags);
    } catch {
      /* try the next mode */
    }
  }
  return undefined; // not expressible here: not enforced rather than refusing every object
}

function check(v: unknown, s: Schema, path: string, out: StatusCause[]): void {
  const field = path || '<root>';
  const invalid = (detail: string, reason = 'FieldValueInvalid') => out.push({ reason, field, message: `Invalid value: ${show(v)}: ${detail}` });
  if (v === null) {
    if (s.nullable === true || (!s.type && preserves(s))) return;
    if (s.type || s['x-kubernetes-int-or-string']) out.push({ reason: 'FieldValueTypeInvalid', field, message: `Invalid value: "null": ${field} in body must be of type ${s['x-kubernetes-int-or-string'] ? 'integer,string' : String(s.type)}: "null"` });
    return;
  }
  const t = typeOf(v);
  if (s['x-kubernetes-int-or-string'] === true) {
    if (t !== 'integer' && t !== 'string') return void out.push({ reason: 'FieldValueTypeInvalid', field, message: `Invalid value: ${show(v)}: ${field} in body must be of type integer,string: ${JSON.stringify(t)}` });
  } else if (typeof s.type === 'string' && !(s.type === t || (s.type === 'number' && t === 'integer'))) {
    return void out.push({ reason: 'FieldValueTypeInvalid', field, message: `Invalid value: ${show(v)}: ${field} in body must be of type ${s.type}: ${JSON.stringify(t)}` });
  }
  if (Array.isArray(s.enum) && !s.enum.some((e) => JSON.stringify(e) === JSON.stringify(v))) {
    out.push({ reason: 'FieldValueNotSupported', field, message: `Unsupported value: ${show(v)}: supported values: ${s.enum.map((e) => show(e)).join(', ')}` });
  }
  if (typeof v === 'string') {
    const len = [...v].length;
    if (typeof s.maxLength === 'number' && len > s.maxLength) out.push({ reason: 'FieldValueTooLong', field, message: `Too long: may not be more than ${s.maxLength} bytes` });
    if (typeof s.minLength === 'number' && len < s.minLength) invalid(`${field} in body should be at least ${s.minLength} chars long`);
    if (typeof s.pattern === 'string') {
      const re = compile(s.pattern);
      if (re && !re.test(v)) invalid(`${field} in body should match '${s.pattern}'`);
    }
  }
  if (typeof v === 'number') {
    if (typeof s.minimum === 'number' && (s.exclusiveMinimum === true ? v <= s.minimum : v < s.minimum)) invalid(`${field} in body should be greater than ${s.exclusiveMinimum === true ? '' : 'or equal to '}${s.minimum}`);
    if (typeof s.maximum === 'number' && (s.exclusiveMaximum === true ? v >= s.maximum : v > s.maximum)) invalid(`${field} in body should be less than ${s.exclusiveMaximum === true ? '' : 'or equal to '}${s.maximum}`);
  }
  if (Array.isArray(v)) {
    if (typeof s.maxItems === 'number' && v.length > s.maxItems) out.push({ reason: 'FieldValueTooMany', field, message: `Too many: ${v.length}: must have at most ${s.maxItems} items` });
    if (typeof s.minItems === 'number' && v.length < s.minItems) invalid(`${field} in body should have at least ${s.minItems} items`);
    const it = items(s);
    if (it) v.forEach((e, i) => check(e, it, `${path}[${i}]`, out));
    if (s['x-kubernetes-list-type'] === 'set') {
      const seen = new Set<string>();
      v.forEach((e, i) => {
        const k = JSON.stringify(e);
        if (seen.has(k)) out.push({ reason: 'FieldValueDuplicate', field: `${path}[${i}]`, message: `Duplicate value: ${show(e)}` });
        seen.add(k);
      });
    }
  }
  if (isObject(v)) {
    const n = Object.keys(v).length;
    if (typeof s.maxProperties === 'number' && n > s.maxProperties) out.push({ reason: 'FieldValueTooMany', field, message: `Too many: ${n}: must have at most ${s.maxProperties} items` });
    if (typeof s.minProperties === 'number' && n < s.minProperties) invalid(`${field} in body should have at least ${s.minProperties} properties`);
    for (const r of Array.isArray(s.required) ? s.required : []) {
      if (v[r as string] === undefined) out.push({ reason: 'FieldValueRequired', field: path ? `${path}.${String(r)}` : String(r), message: 'Required value' });
    }
    const ps = props(s);
    const ap = additional(s);
    for (const [k, e] of Object.entries(v)) {
      const p = path ? `${path}.${k}` : k;
      if (ps[k]) check(e, ps[k], p, out);
      else if (ap && ap !== true) check(e, ap, p, out);
    }
  }
}

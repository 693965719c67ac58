// Validation on write. Messages follow k8s.io/apimachinery/pkg/util/validation/field so clients
// and people see the same text as from a real API server:
//   spec.action: Unsupported value: "PERMIT": supported values: "ALLOW", "DENY", "AUDIT", "CUSTOM"
import { isIP } from 'node:net';
import type { StatusCause } from './errors.ts';
import { isObject, type JsonObject, type KubeObject } from './types.ts';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Collects causes; `path` strings are the field paths clients see. */
export class Causes {
  readonly list: StatusCause[] = [];
  required(field: string, detail = ''): void {
    this.list.push({ reason: 'FieldValueRequired', field, message: `Required value${detail ? `: ${detail}` : ''}` });
  }
  invalid(field: string, value: unknown, detail: string): void {
    this.list.push({ reason: 'FieldValueInvalid', field, message: `Invalid value: ${show(value)}: ${detail}` });
  }
  unsupported(field: string, value: unknown, supported: readonly string[]): void {
    this.list.push({ reason: 'FieldValueNotSupported', field, message: `Unsupported value: ${show(value)}: supported values: ${supported.map((s) => `"${s}"`).join(', ')}` });
  }
  duplicate(field: string, value: unknown): void {
    this.list.push({ reason: 'FieldValueDuplicate', field, message: `Duplicate value: ${show(value)}` });
  }
  forbidden(field: string, detail: string): void {
    this.list.push({ reason: 'FieldValueForbidden', field, message: `Forbidden: ${detail}` });
  }
  typeInvalid(field: string, value: unknown, expected: string): void {
    this.list.push({ reason: 'FieldValueTypeInvalid', field, message: `Invalid value: ${show(value)}: must be ${expected}` });
  }
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === undefined || v === null) return 'null';
  return JSON.stringify(v) ?? '?';
}

export function isDns1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}
export function isDns1123Subdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}

/** Metadata rules every kind shares; `nameRule` is the kind's name format. */
export function validateMeta(obj: KubeObject, c: Causes, nameRule: 'subdomain' | 'label' | 'dns1035' | 'path'): void {
  const m = obj.metadata;
  const name = m.name;
  if (typeof name !== 'string' || name === '') {
    c.required('metadata.name', 'name or generateName is required');
  } else if (nameRule === 'label' && !isDns1123Label(name)) {
    c.invalid('metadata.name', name, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')");
  } else if (nameRule === 'dns1035' && !(name.length <= 63 && DNS1035_LABEL.test(name))) {
    c.invalid('metadata.name', name, "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')");
  } else if (nameRule === 'path' && (name === '.' || name === '..' || /[/%]/.test(name))) {
    c.invalid('metadata.name', name, name.length <= 2 ? `may not be '${name}'` : `may not contain '${name.includes('/') ? '/' : '%'}'`); // RBAC names: path segments
  } else if (nameRule === 'subdomain' && !isDns1123Subdomain(name)) {
    c.invalid('metadata.name', name, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
  }
  for (const field of ['labels', 'annotations'] as const) {
    const map: unknown = m[field];
    if (map === undefined || map === null) continue;
    if (!isObject(map)) {
      c.typeInvalid(`metadata.${field}`, map, 'a map of string keys to string values');
      continue;
    }
    for (const [k, v] of Object.entries(map)) {
      if (!validKey(k)) c.invalid(`metadata.${field}`, k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')");
      if (typeof v !== 'string') c.typeInvalid(`metadata.${field}.${k}`, v, 'a string');
      else if (field === 'labels' && !(v.length <= 63 && LABEL_VALUE.test(v))) c.invalid(`metadata.labels`, v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
    }
  }
}

function validKey(k: string): boolean {
  const slash = k.lastIndexOf('/');
  const prefix = slash >= 0 ? k.slice(0, slash) : undefined;
  const name = slash >= 0 ? k.slice(slash + 1) : k;
  if (prefix !== undefined && !isDns1123Subdomain(prefix)) return false;
  return name.length > 0 && name.length <= 63 && QUALIFIED_NAME.test(name);
}

// ---- small structural helpers used by the kind validators ----

export function expectObject(c: Causes, v: unknown, field: string): JsonObject | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) {
    c.typeInvalid(field, v, 'an object');
    return undefined;
  }
  return v;
}

export function expectArray(c: Causes, v: unknown, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    c.typeInvalid(field, v, 'a list');
    return [];
  }
  return v;
}

export function expectStringMap(c: Causes, v: unknown, field: string): void {
  const m = expectObject(c, v, field);
  for (const [k, val] of Object.entries(m ?? {})) if (typeof val !== 'string') c.typeInvalid(`${field}.${k}`, val, 'a string');
}

export function isPort(v: unknown): boolean {
  return Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;
}

/** An IP or a CIDR ("10.0.0.0/8", "fd00::/8"). */
export function isIpOrCidr(s: string): boolean {
  const [ip, bits, extra] = s.split('/');
  if (extra !== undefined || !ip) return false;
  const fam = isIP(ip);
  if (!fam) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n >= 0 && n <= (fam === 4 ? 32 : 128);
}

// The Kubernetes protobuf wire format for request bodies (Content-Type
// application/vnd.kubernetes.protobuf), as client-go's typed clients send them — kubectl's
// `create namespace|configmap|secret|serviceaccount|service|deployment|job|token|role…` and
// `auth can-i` (kubectl run and expose send JSON).
// A body is the 4-byte magic "k8s\0" and a runtime.Unknown{typeMeta{apiVersion, kind}, raw,
// contentEncoding, contentType} whose raw bytes are the object's own message (proto/k8s/). It is
// decoded into the object the same body sent as JSON would give, so nothing downstream changes.
// Responses stay JSON: client-go asks "application/vnd.kubernetes.protobuf,application/json" and
// decodes whatever Content-Type comes back.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { BadRequestError, UnsupportedMediaTypeError } from './errors.ts';
import type { JsonObject } from './types.ts';

export const PROTOBUF = 'application/vnd.kubernetes.protobuf';
const MAGIC = Buffer.from('k8s\0', 'latin1');
const PROTO_DIR = fileURLToPath(new URL('../../../proto/k8s/', import.meta.url));

/** apiVersion → the proto package its kinds live in. */
const PACKAGES: Record<string, string> = {
  v1: 'k8s.io.api.core.v1',
  'apps/v1': 'k8s.io.api.apps.v1',
  'batch/v1': 'k8s.io.api.batch.v1',
  'autoscaling/v1': 'k8s.io.api.autoscaling.v1',
  'authentication.k8s.io/v1': 'k8s.io.api.authentication.v1',
  'authorization.k8s.io/v1': 'k8s.io.api.authorization.v1',
  'rbac.authorization.k8s.io/v1': 'k8s.io.api.rbac.v1',
  'policy/v1': 'k8s.io.api.policy.v1',
  'coordination.k8s.io/v1': 'k8s.io.api.coordination.v1',
  'networking.k8s.io/v1': 'k8s.io.api.networking.v1',
  'meta.k8s.io/v1': 'k8s.io.apimachinery.pkg.apis.meta.v1',
};
const META = 'k8s.io.apimachinery.pkg.apis.meta.v1';
/** Kinds of meta/v1 that client-go sends under the group-version of the resource it talks to. */
const META_KINDS = new Set(['DeleteOptions']);

let schema: protobuf.Root | undefined;
function root(): protobuf.Root {
  if (!schema) {
    const files = readdirSync(PROTO_DIR).filter((f) => f.endsWith('.proto')).map((f) => PROTO_DIR + f);
    schema = new protobuf.Root().loadSync(files, { keepCase: true });
    schema.resolveAll();
  }
  return schema;
}

/** The object in a protobuf request body, as JSON; 400 for a malformed body, 415 for a kind without a schema. */
export function decodeProtobuf(body: Buffer, accepted: string[]): JsonObject {
  if (body.length < MAGIC.length || !body.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new BadRequestError(`the request body is not a Kubernetes protobuf message: it must start with the 4 bytes "k8s\\0" (got ${JSON.stringify(body.subarray(0, 4).toString('latin1'))})`);
  }
  const Unknown = root().lookupType('k8s.io.apimachinery.pkg.runtime.Unknown');
  let envelope: { typeMeta?: { apiVersion?: string; kind?: string }; raw?: Uint8Array; contentEncoding?: string; contentType?: string };
  try {
    envelope = Unknown.toObject(Unknown.decode(body.subarray(MAGIC.length)), { defaults: false });
  } catch (err) {
    throw new BadRequestError(`the protobuf request body is malformed: its runtime.Unknown envelope does not decode (${(err as Error).message})`);
  }
  const apiVersion = envelope.typeMeta?.apiVersion ?? '';
  const kind = envelope.typeMeta?.kind ?? '';
  if (!apiVersion || !kind) throw new BadRequestError('the protobuf request body is malformed: its envelope names no apiVersion and kind (typeMeta)');
  if (envelope.contentEncoding) throw new UnsupportedMediaTypeError(`${PROTOBUF} with contentEncoding ${envelope.contentEncoding}`, accepted, 'send the object unencoded');
  const pkg = META_KINDS.has(kind) ? META : PACKAGES[apiVersion];
  const type = pkg ? (root().lookup(`${pkg}.${kind}`) as protobuf.Type | null) : null;
  if (!(type instanceof protobuf.Type)) {
    throw new UnsupportedMediaTypeError(PROTOBUF, accepted, `this API server has no protobuf schema for ${apiVersion} ${kind}; send it as application/json`);
  }
  const raw = envelope.raw ?? new Uint8Array();
  let object: JsonObject;
  const unknown: string[] = [];
  try {
    object = toJson(type, type.decode(raw) as unknown as Record<string, unknown>);
    unknownFields(type, protobuf.Reader.create(raw), raw.length, '', unknown);
  } catch (err) {
    throw new BadRequestError(`the protobuf request body is not a valid ${apiVersion} ${kind}: ${(err as Error).message}`);
  }
  if (unknown.length) {
    // The real server knows these fields; dropping them silently would lose what the client set.
    throw new BadRequestError(`the protobuf body of this ${apiVersion} ${kind} sets fields this API server's protobuf schema (proto/k8s/) does not carry: ${unknown.join(', ')}; send the object as JSON instead (kubectl create -f / apply -f)`);
  }
  return META_KINDS.has(kind) ? { kind, apiVersion, ...object } : { apiVersion, kind, ...object };
}

/**
 * Finds fields the schema lacks that carry a value (Go writes zero non-pointer fields it always
 * writes; those are harmless), naming each by its JSON path and field number.
 */
function unknownFields(type: protobuf.Type, r: protobuf.Reader, end: number, path: string, out: string[]): void {
  while (r.pos < end) {
    const tag = r.uint32();
    const [no, wire] = [tag >>> 3, tag & 7];
    const field = type.fieldsById[no];
    const start = r.pos;
    if (!field) {
      r.skipType(wire);
      const bytes = r.buf.subarray(start, r.pos);
      const zero = wire === 2 ? bytes.length === 1 && bytes[0] === 0 : bytes.every((b) => b === 0);
      if (!zero) out.push(`${path || '(top level)'}: field ${no} of ${type.name}`);
      continue;
    }
    const at = field.options?.['(inline)'] === true ? path : path ? `${path}.${field.name}` : field.name;
    if (wire !== 2 || !(field.resolvedType instanceof protobuf.Type)) {
      r.skipType(wire);
      continue;
    }
    const len = r.uint32();
    const stop = r.pos + len;
    if (field.map) {
      // A map entry: key = 1, value = 2 (the value's own message).
      while (r.pos < stop) {
        const t = r.uint32();
        if (t >>> 3 === 2 && (t & 7) === 2) {
          const l = r.uint32();
          unknownFields(field.resolvedType, r, r.pos + l, at, out);
        } else r.skipType(t & 7);
      }
    } else unknownFields(field.resolvedType, r, stop, at, out);
    r.pos = stop;
  }
}

/**
 * A decoded message as Kubernetes' JSON: Go writes every non-pointer field to the wire, zero or
 * not, where its JSON encoder mostly omits them (omitempty), so zero scalars are dropped unless the
 * schema marks the field (keep_zero): a pointer the client set (`replicas: 0` stays) or a field
 * Go's JSON always writes (a container status's `restartCount: 0`). A
 * struct Go embeds (inline: a Volume's source, a Probe's handler) lends its fields to its parent.
 */
function toJson(type: protobuf.Type, message: Record<string, unknown>): JsonObject {
  const out: JsonObject = {};
  for (const field of type.fieldsArray) {
    if (!Object.hasOwn(message, field.name)) continue;
    const value = message[field.name];
    const keepZero = field.options?.['(keep_zero)'] === true;
    let json: unknown;
    if (field.map) {
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length === 0) continue;
      json = Object.fromEntries(entries.map(([k, v]) => [k, convert(field, v, true)]));
    } else if (field.repeated) {
      const items = value as unknown[];
      if (items.length === 0) continue;
      json = items.map((v) => convert(field, v, true));
    } else {
      json = convert(field, value, keepZero);
    }
    if (json === undefined) continue;
    if (field.options?.['(inline)'] === true) Object.assign(out, json);
    else out[field.name] = json as JsonObject[string];
  }
  return out;
}

/** One value of a field; undefined when it is a zero Go would omit. */
function convert(field: protobuf.Field, value: unknown, keepZero: boolean): unknown {
  const type = field.resolvedType;
  if (type instanceof protobuf.Type) return message(type, value as Record<string, unknown>, keepZero);
  if (value instanceof Uint8Array) return value.length || keepZero ? Buffer.from(value).toString('base64') : undefined;
  const scalar = isLong(value) ? value.toNumber() : value;
  if (!keepZero && (scalar === '' || scalar === 0 || scalar === false)) return undefined;
  return scalar;
}

/** Messages with a JSON form of their own (a time, an int-or-string, a quantity), or an object. */
function message(type: protobuf.Type, m: Record<string, unknown>, keepZero: boolean): unknown {
  const num = (v: unknown): number => (isLong(v) ? v.toNumber() : Number(v ?? 0));
  switch (type.fullName) {
    case `.${META}.Time`:
    case `.${META}.MicroTime`: {
      const seconds = num(m.seconds);
      const nanos = num(m.nanos);
      if (seconds === 0 && nanos === 0) return undefined; // a zero time: JSON null
      const iso = new Date(seconds * 1000).toISOString().slice(0, 19);
      // metav1.Time is RFC 3339 to the second; MicroTime adds six fractional digits.
      return type.name === 'Time' ? `${iso}Z` : `${iso}.${String(Math.floor(nanos / 1000)).padStart(6, '0')}Z`;
    }
    case '.k8s.io.apimachinery.pkg.util.intstr.IntOrString': {
      if (num(m.type) === 1) return (m.strVal as string | undefined) ?? '';
      const n = num(m.intVal);
      return n === 0 && !keepZero ? undefined : n;
    }
    case '.k8s.io.apimachinery.pkg.api.resource.Quantity':
      return (m.string as string | undefined) ?? '0';
    case '.k8s.io.api.authentication.v1.ExtraValue':
    case '.k8s.io.api.authorization.v1.ExtraValue':
      return (m.items as string[] | undefined) ?? []; // a []string in Go: a plain list in JSON
    case `.${META}.FieldsV1`:
      return m.raw instanceof Uint8Array && m.raw.length ? JSON.parse(Buffer.from(m.raw).toString('utf8')) : {};
    default:
      return toJson(type, m);
  }
}

/** protobufjs gives 64-bit integers as Long objects (the long package is installed). */
function isLong(v: unknown): v is { toNumber(): number } {
  return typeof v === 'object' && v !== null && typeof (v as { toNumber?: unknown }).toNumber === 'function';
}

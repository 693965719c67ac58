// The wire side of proto/mesh/config.proto: the gRPC method, the decoded message shapes, and the
// encoding of resources. A resource is encoded once, when it is set, into the exact bytes of one
// DeltaConfigResponse.resources entry; a response is those entries appended to its other fields
// (a protobuf message may list its fields in any order, and a repeated field's elements may be
// spread out — protobuf encoding spec, "Field Order"). So 50 clients cost one encode, not 50.
import { hash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { type DecodeOptions, loadDescriptor, serviceDefinition } from '../common/proto.ts';
import { XdsError } from './errors.ts';
import { TYPE_URL_PREFIX } from './resources.ts';

export const PROTO_PATH = fileURLToPath(new URL('../../proto/mesh/config.proto', import.meta.url));

/** How messages decode: see the contract at the top of resources.ts. Field names are camelCase
 * (proto/gen/config.json is generated with keepCase false). */
export const LOADER_OPTIONS: DecodeOptions = {
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

// Generated from PROTO_PATH by proto/generate.ts (`make proto`; CI checks it matches).
const root = loadDescriptor('config');
const method = serviceDefinition(root, 'mesh.config.v1.ConfigDiscovery', LOADER_OPTIONS).DeltaConfig as unknown as grpc.MethodDefinition<WireRequest, WireResponse>;

export const DELTA_CONFIG_PATH = method.path;
export const serializeRequest = method.requestSerialize;
export const deserializeRequest = method.requestDeserialize;
export const deserializeResponse = method.responseDeserialize;
const serializeResponse = method.responseSerialize;

/** The server writes responses it assembled from pre-encoded entries: Buffers go out as they are. */
export const SERVER_SERVICE: grpc.ServiceDefinition = {
  DeltaConfig: {
    path: method.path,
    requestStream: true,
    responseStream: true,
    requestSerialize: method.requestSerialize,
    requestDeserialize: method.requestDeserialize,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: method.responseDeserialize,
  },
};

export interface WireNode {
  id: string;
  name: string;
  cluster: string;
  metadata?: Record<string, string>;
}

export interface WireResourceError {
  name: string;
  version: string;
  message: string;
}

export interface WireErrorDetail {
  code: number;
  message: string;
  resourceErrors: WireResourceError[];
}

export interface WireRequest {
  node: WireNode | null;
  typeUrl: string;
  initialResourceVersions: Record<string, string>;
  resourceNamesSubscribe: string[];
  resourceNamesUnsubscribe: string[];
  responseNonce: string;
  errorDetail: WireErrorDetail | null;
}

export interface WireResource {
  name: string;
  version: string;
  /** The oneof member that is set, e.g. "workload". */
  resource?: string;
  [field: string]: unknown;
}

export interface WireResponse {
  systemVersionInfo: string;
  typeUrl: string;
  resources: WireResource[];
  removedResources: string[];
  nonce: string;
  synced: boolean;
}

// Type URL → the Resource oneof member that carries it, read from the proto so that a new
// resource type needs a proto change only.
const FIELDS = new Map<string, string>();
for (const f of root.lookupType('mesh.config.v1.Resource').fieldsArray) {
  // Message-typed members only (name and version are strings); the type as the proto names it.
  if (!f.resolvedType || !('fields' in f.resolvedType)) continue;
  FIELDS.set(TYPE_URL_PREFIX + f.resolvedType.fullName.replace(/^\.?mesh\.config\.v1\./, ''), f.name);
}

/** Every type URL the proto defines. */
export const TYPE_URLS: readonly string[] = [...FIELDS.keys()];

/** The Resource oneof member for a type URL; throws MESH_ERR_XDS_UNKNOWN_TYPE. */
export function resourceField(typeUrl: string): string {
  const field = FIELDS.get(typeUrl);
  if (!field) {
    throw new XdsError(
      'MESH_ERR_XDS_UNKNOWN_TYPE',
      `unknown resource type ${JSON.stringify(typeUrl)}: proto/mesh/config.proto defines ${TYPE_URLS.join(', ')}`,
    );
  }
  return field;
}

export interface EncodedResource {
  /** A hash of the encoded content: equal content, equal version, in any process. */
  readonly version: string;
  /** One complete DeltaConfigResponse.resources entry (tag, length, Resource). */
  readonly bytes: Buffer;
}

/** Encodes a value as a resource entry; throws MESH_ERR_XDS_ENCODE when it does not fit the message. */
export function encodeResource(typeUrl: string, name: string, value: unknown): EncodedResource {
  const field = resourceField(typeUrl);
  if (typeof name !== 'string' || name === '') {
    throw new XdsError('MESH_ERR_XDS_ENCODE', `a ${typeUrl} resource needs a non-empty name`);
  }
  if (value === null || typeof value !== 'object') {
    throw new XdsError('MESH_ERR_XDS_ENCODE', `${typeUrl} ${name}: the value must be an object, got ${typeof value}`);
  }
  let only: Buffer;
  try {
    // A response with one resource that has only its oneof member set: 0x1a, length, member.
    only = serializeResponse({ resources: [{ [field]: canonical(value) }] } as unknown as WireResponse);
  } catch (e) {
    throw new XdsError(
      'MESH_ERR_XDS_ENCODE',
      `${typeUrl} ${name} does not fit its message in proto/mesh/config.proto: ${(e as Error).message}`,
      { cause: e },
    );
  }
  const member = only.subarray(1 + varintLength(only, 1));
  const version = hash('sha256', member, 'base64url').slice(0, 16);
  const head = Buffer.concat([stringField(1, name), stringField(2, version)]);
  const length = head.length + member.length;
  const bytes = Buffer.concat([Buffer.from([0x1a]), varint(length), head, member]);
  return { version, bytes };
}

export interface ResponseHead {
  systemVersionInfo: string;
  typeUrl: string;
  removedResources: string[];
  nonce: string;
  synced: boolean;
}

/** A DeltaConfigResponse: its head fields followed by pre-encoded resource entries. */
export function encodeResponse(head: ResponseHead, entries: Buffer[]): Buffer {
  const h = serializeResponse({ ...head, resources: [] });
  return entries.length === 0 ? h : Buffer.concat([h, ...entries]);
}

// Map fields are encoded in the object's key order; sorting keys makes the bytes — and so the
// version — independent of the order in which the controller happened to build a map.
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = canonical((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

function stringField(field: number, s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([(field << 3) | 2]), varint(b.length), b]);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

function varintLength(b: Buffer, at: number): number {
  let i = at;
  while ((b[i]! & 0x80) !== 0) i++;
  return i - at + 1;
}

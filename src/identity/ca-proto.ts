// The CA contract (proto/ca.proto) loaded for @grpc/grpc-js, and its message shapes. Field names
// keep the proto's snake_case (keepCase), so what we read matches the .proto text.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadDescriptor, serviceDefinition } from '../common/proto.ts';

export const CA_PROTO_PATH = fileURLToPath(new URL('../../proto/ca.proto', import.meta.url));
export const CA_SERVICE = 'istio.v1.auth.IstioCertificateService';

/** google.protobuf.Value as proto-loader decodes it: protobufjs defines the well-known types with camelCase names, keepCase or not. */
export interface ProtoValue {
  nullValue?: 0 | 'NULL_VALUE';
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: { values: ProtoValue[] };
  kind?: string;
}
export interface ProtoStruct {
  fields?: Record<string, ProtoValue>;
}

export interface CertificateRequest {
  csr: string;
  /** Seconds; int64 decoded as a Number. */
  validity_duration: number;
  metadata?: ProtoStruct | null;
}

export interface CertificateResponse {
  cert_chain: string[];
}

let loaded: grpc.ServiceClientConstructor | undefined;

/** The generated client constructor; `.service` is the definition a grpc.Server adds. */
export function caServiceClient(): grpc.ServiceClientConstructor {
  if (loaded) return loaded;
  // proto/gen/ca.json is generated from CA_PROTO_PATH with keepCase (proto/generate.ts).
  const def = serviceDefinition(loadDescriptor('ca'), CA_SERVICE, { longs: Number, enums: String, defaults: true, oneofs: true });
  loaded = grpc.makeGenericClientConstructor(def, 'IstioCertificateService');
  return loaded;
}

/** A Struct of string values, e.g. { ImpersonatedIdentity: 'spiffe://...' }. */
export function stringStruct(values: Record<string, string>): ProtoStruct {
  return { fields: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { stringValue: v }])) };
}

/** The string value of `key` in a Struct; undefined when absent, null when present but not a string. */
export function structString(s: ProtoStruct | null | undefined, key: string): string | null | undefined {
  const v = s?.fields?.[key];
  if (!v) return undefined;
  return typeof v.stringValue === 'string' && (v.kind === undefined || v.kind === 'stringValue') ? v.stringValue : null;
}

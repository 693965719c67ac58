// gRPC contracts from generated descriptors (proto/gen/*.json, made by proto/generate.ts from
// proto/): a method's path and its (de)serializers, built the way @grpc/proto-loader builds them
// (fromObject + encode; decode + toObject with the caller's options) but with protobufjs's light
// build and none of proto-loader's reflection descriptors. Parsing the .proto text and building
// those descriptors was ~50 ms of a ztunnel start.
import { readFileSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs/light.js';

/** How decoded messages look: the options of protobufjs's toObject (proto-loader's Options). */
export type DecodeOptions = protobuf.IConversionOptions;

/** A generated descriptor, e.g. 'config' for proto/gen/config.json. */
export function loadDescriptor(name: string): protobuf.Root {
  const json = JSON.parse(readFileSync(new URL(`../../proto/gen/${name}.json`, import.meta.url), 'utf8')) as protobuf.INamespace;
  const root = protobuf.Root.fromJSON(json);
  root.resolveAll();
  return root;
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    return type.encode(type.fromObject(value)).finish() as Buffer;
  };
}

function deserializer(type: protobuf.Type, options: DecodeOptions): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), options);
}

/** The service `name` (fully qualified) as @grpc/grpc-js takes it: grpc.Server#addService,
 * grpc.makeGenericClientConstructor. */
export function serviceDefinition(root: protobuf.Root, name: string, options: DecodeOptions): grpc.ServiceDefinition {
  const service = root.lookupService(name);
  const def: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const m of service.methodsArray) {
    const req = m.resolvedRequestType!;
    const res = m.resolvedResponseType!;
    def[m.name] = {
      path: `/${name}/${m.name}`,
      requestStream: !!m.requestStream,
      responseStream: !!m.responseStream,
      requestSerialize: serializer(req),
      requestDeserialize: deserializer(req, options),
      responseSerialize: serializer(res),
      responseDeserialize: deserializer(res, options),
      // grpc-js names a client's methods by both spellings, as for proto-loader's definitions.
      originalName: m.name.charAt(0).toLowerCase() + m.name.slice(1),
    };
  }
  return def as grpc.ServiceDefinition;
}

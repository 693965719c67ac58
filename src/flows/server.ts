// Serving and dialling the Observer API (proto/mesh/observer.proto).
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { uriSans } from '../xds/index.ts';
import { ObserverService } from './types.ts';

export interface ServingObserver {
  port: number;
  close(): Promise<void>;
}

/** Why a caller may not read flows (undefined: it may), from its verified client certificate. */
export type ObserverAuthorizer = (peer: { uris: readonly string[]; certificate: PeerCertificate | undefined; address: string }) => string | undefined;

/**
 * Binds `address` (host:port, port 0 picks one) and serves `impl`. With `authorize`, every call
 * is checked first and refused with PERMISSION_DENIED and the reason.
 */
export async function serveObserver(impl: grpc.UntypedServiceImplementation, address: string, creds: grpc.ServerCredentials, authorize?: ObserverAuthorizer): Promise<ServingObserver> {
  const server = new grpc.Server({ 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_permit_without_calls': 1 });
  server.addService(ObserverService.service, authorize ? guarded(impl, authorize) : impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, creds, (err, p) => (err ? reject(new Error(`the flows API cannot listen on ${address}: ${err.message}`)) : resolve(p))),
  );
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      }),
  };
}

type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

function guarded(impl: grpc.UntypedServiceImplementation, authorize: ObserverAuthorizer): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(impl)) {
    out[name] = ((call: AnyCall, cb?: grpc.sendUnaryData<unknown>) => {
      const certificate = call.getAuthContext()?.sslPeerCertificate;
      const refusal = authorize({ uris: uriSans(certificate), certificate, address: call.getPeer() });
      if (refusal === undefined) return (handler as (c: AnyCall, cb?: grpc.sendUnaryData<unknown>) => void)(call, cb);
      const err = { code: grpc.status.PERMISSION_DENIED, details: `the flows API refused ${call.getPeer()}: ${refusal}` };
      if (cb) cb(err);
      else call.emit('error', err);
    }) as grpc.UntypedHandleCall;
  }
  return out;
}

export type ObserverClient = grpc.Client & {
  GetFlows(req: unknown, opts?: grpc.CallOptions): grpc.ClientReadableStream<unknown>;
  ServerStatus(req: unknown, cb: (e: grpc.ServiceError | null, r: unknown) => void): grpc.ClientUnaryCall;
  ServerStatus(req: unknown, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void): grpc.ClientUnaryCall;
  GetNodes(req: unknown, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void): grpc.ClientUnaryCall;
};

export function observerClient(address: string, creds: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): ObserverClient {
  return new ObserverService(address, creds, options) as unknown as ObserverClient;
}

/** A unary call as a promise, with a deadline. */
export function unary<T>(fn: (opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => unknown, timeoutMs = 5000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    fn({ deadline: Date.now() + timeoutMs }, (e, r) => (e ? reject(e) : resolve(r as T)));
  });
}

// CA failures. Each kind has a stable code and the gRPC status the CA answers with, so the node
// sees the same words the controller logs.
import { status } from '@grpc/grpc-js';

export type CaErrorCode =
  | 'MESH_ERR_CA_UNAUTHENTICATED'
  | 'MESH_ERR_CA_PERMISSION_DENIED'
  | 'MESH_ERR_CA_INVALID_REQUEST'
  | 'MESH_ERR_CA_ROOT'
  | 'MESH_ERR_CA_KUBE'
  | 'MESH_ERR_CA_INTERNAL';

const GRPC: Record<CaErrorCode, status> = {
  MESH_ERR_CA_UNAUTHENTICATED: status.UNAUTHENTICATED,
  MESH_ERR_CA_PERMISSION_DENIED: status.PERMISSION_DENIED,
  MESH_ERR_CA_INVALID_REQUEST: status.INVALID_ARGUMENT,
  MESH_ERR_CA_ROOT: status.FAILED_PRECONDITION,
  MESH_ERR_CA_KUBE: status.UNAVAILABLE,
  MESH_ERR_CA_INTERNAL: status.INTERNAL,
};

export class CaError extends Error {
  readonly code: CaErrorCode;
  override name = 'CaError';

  constructor(code: CaErrorCode, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
  }

  get grpcStatus(): status {
    return GRPC[this.code];
  }
}

export const unauthenticated = (m: string, cause?: unknown): CaError => new CaError('MESH_ERR_CA_UNAUTHENTICATED', m, cause);
export const permissionDenied = (m: string): CaError => new CaError('MESH_ERR_CA_PERMISSION_DENIED', m);
export const invalidRequest = (m: string, cause?: unknown): CaError => new CaError('MESH_ERR_CA_INVALID_REQUEST', m, cause);

// Identity failures, each with a stable code and a message that says what to check.

export type IdentityErrorCode = 'MESH_ERR_SPIFFE_ID' | 'MESH_ERR_TRUST_DOMAIN';

/** A string is not a mesh SPIFFE identity, or belongs to a trust domain we do not accept. */
export class IdentityError extends Error {
  readonly code: IdentityErrorCode;
  override name = 'IdentityError';

  constructor(code: IdentityErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export type CaClientErrorCode = 'MESH_ERR_CA_REQUEST' | 'MESH_ERR_CA_RESPONSE' | 'MESH_ERR_CA_TOKEN';

/**
 * Getting a certificate from the CA failed. `grpcCode` is the CA's gRPC status when it answered
 * (7 PERMISSION_DENIED, 16 UNAUTHENTICATED, 3 INVALID_ARGUMENT, 14 UNAVAILABLE, ...).
 */
export class CaClientError extends Error {
  readonly code: CaClientErrorCode;
  override name = 'CaClientError';
  readonly grpcCode: number | undefined;

  constructor(code: CaClientErrorCode, message: string, grpcCode?: number, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.grpcCode = grpcCode;
  }
}

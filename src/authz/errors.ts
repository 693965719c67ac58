// Authorization failures: one class per kind, a stable code, a message that says what to check.
// A *decision* to deny is not an error (evaluate() returns it); these are for unusable input.

export type AuthzErrorCode = 'MESH_ERR_AUTHZ_INVALID_POLICY';

/** An Authorization cannot be compiled (a CIDR of the wrong size, a port out of range, …). */
export class AuthzInvalidError extends Error {
  readonly code: AuthzErrorCode = 'MESH_ERR_AUTHZ_INVALID_POLICY';
  override name = 'AuthzInvalidError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}


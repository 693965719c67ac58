// Admin, metrics and readiness server failures: a stable code and a message that says what to check.

export type AdminErrorCode = 'MESH_ERR_ADMIN_LISTEN';

/** A server could not bind its address (usually: the port is taken by another ztunnel). */
export class AdminListenError extends Error {
  readonly code: AdminErrorCode = 'MESH_ERR_ADMIN_LISTEN';
  override name = 'AdminListenError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

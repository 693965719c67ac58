// Config stream failures: one class, a stable code per kind, and a message that says what to check.

export type XdsErrorCode =
  /** A value given to set() cannot be encoded as its type's message. */
  | 'MESH_ERR_XDS_ENCODE'
  /** A type URL that proto/mesh/config.proto does not define. */
  | 'MESH_ERR_XDS_UNKNOWN_TYPE'
  /** The server could not bind its address. */
  | 'MESH_ERR_XDS_LISTEN'
  /** The peer broke the protocol (no node on the first request, an unknown nonce type, …). */
  | 'MESH_ERR_XDS_PROTOCOL'
  /** The authorizer refused the caller. */
  | 'MESH_ERR_XDS_UNAUTHORIZED'
  /** The client refused a resource (NACK). */
  | 'MESH_ERR_XDS_REJECTED'
  /** The server or client was closed. */
  | 'MESH_ERR_XDS_CLOSED'
  /** The client did not receive the full state in time. */
  | 'MESH_ERR_XDS_NOT_READY';

export class XdsError extends Error {
  readonly code: XdsErrorCode;

  constructor(code: XdsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'XdsError';
    this.code = code;
  }
}

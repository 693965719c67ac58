// Certificate and TLS failures, each with a stable code and a message that says what to check.

export type TlsErrorCode =
  | 'MESH_ERR_PEM'
  | 'MESH_ERR_CERT'
  | 'MESH_ERR_CSR'
  | 'MESH_ERR_KEY'
  | 'MESH_ERR_PEER_IDENTITY';

export class TlsError extends Error {
  readonly code: TlsErrorCode;
  override name = 'TlsError';

  constructor(code: TlsErrorCode, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
  }
}

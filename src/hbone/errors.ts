// HBONE failures, one class per kind, each with a stable code and a message that says what to
// check. The client maps every failure of a connect() to one of these; the server logs them.

export type HboneErrorCode =
  | 'MESH_ERR_HBONE_ARGUMENT'
  | 'MESH_ERR_HBONE_CONNECT'
  | 'MESH_ERR_HBONE_TLS'
  | 'MESH_ERR_HBONE_PEER_IDENTITY'
  | 'MESH_ERR_HBONE_DENIED'
  | 'MESH_ERR_HBONE_UPSTREAM'
  | 'MESH_ERR_HBONE_BAD_REQUEST'
  | 'MESH_ERR_HBONE_STATUS'
  | 'MESH_ERR_HBONE_SESSION'
  | 'MESH_ERR_HBONE_STREAM'
  | 'MESH_ERR_HBONE_CLOSED';

export abstract class HboneError extends Error {
  abstract readonly code: HboneErrorCode;

  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

/** A caller passed something unusable (an authority that is not ip:port, an empty identity list). */
export class HboneArgumentError extends HboneError {
  readonly code = 'MESH_ERR_HBONE_ARGUMENT';
  override name = 'HboneArgumentError';
}

/** The TCP connection to the peer's HBONE port could not be made (refused, unreachable, timed out). */
export class HboneConnectError extends HboneError {
  readonly code = 'MESH_ERR_HBONE_CONNECT';
  override name = 'HboneConnectError';
}

/** The TLS handshake failed: untrusted chain, a peer that refused our certificate, no ALPN h2. */
export class HboneTlsError extends HboneError {
  readonly code = 'MESH_ERR_HBONE_TLS';
  override name = 'HboneTlsError';
}

/** The peer's certificate is trusted but its SPIFFE identity is not one we accept. */
export class HbonePeerIdentityError extends HboneError {
  readonly code = 'MESH_ERR_HBONE_PEER_IDENTITY';
  override name = 'HbonePeerIdentityError';
}

/** The server answered the CONNECT with a status other than 200. */
export class HboneStatusError extends HboneError {
  readonly code: HboneErrorCode = 'MESH_ERR_HBONE_STATUS';
  override name = 'HboneStatusError';
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** 401: the destination's authorization policy denied this source. */
export class HboneDeniedError extends HboneStatusError {
  override readonly code = 'MESH_ERR_HBONE_DENIED';
  override name = 'HboneDeniedError';
}

/** 503: the destination ztunnel could not reach the application (not listening, pod gone). */
export class HboneUpstreamError extends HboneStatusError {
  override readonly code = 'MESH_ERR_HBONE_UPSTREAM';
  override name = 'HboneUpstreamError';
}

/** 400: the destination found the CONNECT request malformed. */
export class HboneBadRequestError extends HboneStatusError {
  override readonly code = 'MESH_ERR_HBONE_BAD_REQUEST';
  override name = 'HboneBadRequestError';
}

/** The HTTP/2 session carrying the tunnel died (connection lost, PING unanswered, GOAWAY). */
export class HboneSessionError extends HboneError {
  readonly code = 'MESH_ERR_HBONE_SESSION';
  override name = 'HboneSessionError';
}

/** The tunnel's stream was reset by the peer or timed out waiting for the CONNECT response. */
export class HboneStreamError extends HboneError {
  readonly code = 'MESH_ERR_HBONE_STREAM';
  override name = 'HboneStreamError';
  /** The peer refused the stream unprocessed (REFUSED_STREAM: draining, at its limit); RFC 9113
   * §8.7 lets the client retry it on another connection. */
  refused = false;
}

/** The pool or server was closed (draining); no new tunnels. */
export class HboneClosedError extends HboneError {
  readonly code = 'MESH_ERR_HBONE_CLOSED';
  override name = 'HboneClosedError';
}

/** The typed error for a non-200 CONNECT response from `dst`. */
export function statusError(status: number, dst: string, authority: string): HboneStatusError {
  switch (status) {
    case 401:
      return new HboneDeniedError(
        401,
        `${dst} denied the tunnel to ${authority} (401) — an AuthorizationPolicy or PeerAuthentication on the destination does not allow this source`,
      );
    case 503:
      return new HboneUpstreamError(
        503,
        `${dst} could not reach ${authority} (503) — is the application listening on that port, and is the pod still running?`,
      );
    case 400:
      return new HboneBadRequestError(400, `${dst} rejected the CONNECT to ${authority} as malformed (400) — check the authority (ip:port) and the forwarded/baggage headers`);
    default:
      return new HboneStatusError(status, `${dst} answered the CONNECT to ${authority} with status ${status} — is that an HBONE endpoint (ztunnel port 15008)?`);
  }
}

// Waypoint upstream failures, one class per kind with a stable code and a message that says what
// to check. The proxy maps them to a status and response flag; they reach logs, never clients.

export type WaypointErrorCode = 'MESH_ERR_WAYPOINT_UPSTREAM_CONNECT' | 'MESH_ERR_WAYPOINT_UPSTREAM_RESET';

export abstract class WaypointError extends Error {
  abstract readonly code: WaypointErrorCode;

  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

/**
 * No connection (or HTTP/2 session) to the endpoint could be made, or the endpoint refused the
 * stream before reading it: nothing reached the application, so the request is safe to retry.
 */
export class UpstreamConnectError extends WaypointError {
  readonly code = 'MESH_ERR_WAYPOINT_UPSTREAM_CONNECT';
  override name = 'UpstreamConnectError';
}

/** The connection or stream broke after the request was sent, before a complete response. */
export class UpstreamResetError extends WaypointError {
  readonly code = 'MESH_ERR_WAYPOINT_UPSTREAM_RESET';
  override name = 'UpstreamResetError';
}

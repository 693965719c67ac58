// Failure kinds of the API server. Each maps to a metav1.Status with the HTTP code and reason a
// real kube-apiserver would send (k8s.io/apimachinery/pkg/api/errors), and carries a stable code.

export interface StatusCause {
  reason: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

/** Base of every error the HTTP layer turns into a metav1.Status. */
export class ApiError extends Error {
  readonly code: string = 'MESH_ERR_API';
  override name = 'ApiError';
  readonly httpStatus: number;
  readonly reason: string;
  readonly details: StatusDetails | undefined;

  constructor(httpStatus: number, reason: string, message: string, details?: StatusDetails) {
    super(message);
    this.httpStatus = httpStatus;
    this.reason = reason;
    this.details = details;
  }

  toStatus(): Record<string, unknown> {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.httpStatus,
    };
  }
}

/** `resource` is the plural name ("pods"), as real NotFound details carry. */
export class NotFoundError extends ApiError {
  override readonly code = 'MESH_ERR_API_NOT_FOUND';
  override name = 'NotFoundError';
  constructor(group: string, resource: string, name: string) {
    super(404, 'NotFound', `${qualified(resource, group)} "${name}" not found`, { name, group, kind: resource });
  }
}

export class AlreadyExistsError extends ApiError {
  override readonly code = 'MESH_ERR_API_ALREADY_EXISTS';
  override name = 'AlreadyExistsError';
  constructor(group: string, resource: string, name: string) {
    super(409, 'AlreadyExists', `${qualified(resource, group)} "${name}" already exists`, { name, group, kind: resource });
  }
}

export class ConflictError extends ApiError {
  override readonly code = 'MESH_ERR_API_CONFLICT';
  override name = 'ConflictError';
  constructor(group: string, resource: string, name: string, why: string) {
    super(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(resource, group)} "${name}": ${why}`, {
      name,
      group,
      kind: resource,
    });
  }
}

/** 422: the object fails validation; `causes` name each offending field. */
export class InvalidError extends ApiError {
  override readonly code = 'MESH_ERR_API_INVALID';
  override name = 'InvalidError';
  constructor(group: string, kind: string, name: string, causes: StatusCause[]) {
    const parts = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message));
    const summary = parts.length === 1 ? parts[0] : `[${parts.join(', ')}]`;
    super(422, 'Invalid', `${qualified(kind, group)} "${name}" is invalid: ${summary}`, { name, group, kind, causes });
  }
}

export class BadRequestError extends ApiError {
  override readonly code = 'MESH_ERR_API_BAD_REQUEST';
  override name = 'BadRequestError';
  constructor(message: string) {
    super(400, 'BadRequest', message);
  }
}

export class UnauthorizedError extends ApiError {
  override readonly code = 'MESH_ERR_API_UNAUTHORIZED';
  override name = 'UnauthorizedError';
  constructor() {
    super(401, 'Unauthorized', 'Unauthorized: send "Authorization: Bearer <token>" with the admin token from the kubeconfig or a service-account token');
  }
}

/** 410: the requested resourceVersion has left the kept event window; the client must relist. */
export class GoneError extends ApiError {
  override readonly code = 'MESH_ERR_API_GONE';
  override name = 'GoneError';
  constructor(requested: string, oldest: number) {
    super(410, 'Expired', `too old resource version: ${requested} (${oldest})`);
  }
}

export class ForbiddenError extends ApiError {
  override readonly code = 'MESH_ERR_API_FORBIDDEN';
  override name = 'ForbiddenError';
  constructor(group: string, resource: string, name: string, why: string) {
    super(403, 'Forbidden', `${qualified(resource, group)} "${name}" is forbidden: ${why}`, { name, group, kind: resource });
  }
}

export class MethodNotAllowedError extends ApiError {
  override readonly code = 'MESH_ERR_API_METHOD_NOT_ALLOWED';
  override name = 'MethodNotAllowedError';
  constructor(method: string, path: string) {
    super(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource: ${method} ${path}`);
  }
}

export class UnsupportedMediaTypeError extends ApiError {
  override readonly code = 'MESH_ERR_API_UNSUPPORTED_MEDIA_TYPE';
  override name = 'UnsupportedMediaTypeError';
  constructor(contentType: string, supported: string[], hint = '') {
    super(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${supported.join(', ')} (got "${contentType}")${hint ? `; ${hint}` : ''}`);
  }
}

export class RequestTooLargeError extends ApiError {
  override readonly code = 'MESH_ERR_API_TOO_LARGE';
  override name = 'RequestTooLargeError';
  constructor(limit: number) {
    super(413, 'RequestEntityTooLarge', `the request body is larger than ${limit} bytes`);
  }
}

/** Writing an object to disk failed: check free space and permissions under the data directory. */
export class StorageError extends ApiError {
  override readonly code = 'MESH_ERR_API_STORAGE';
  override name = 'StorageError';
  constructor(path: string, cause: unknown) {
    super(500, 'InternalError', `could not persist ${path}: ${cause instanceof Error ? cause.message : String(cause)} — is the data directory writable and is the disk full?`);
    this.cause = cause;
  }
}

/** "pods" for the core group, "authorizationpolicies.security.mesh.io" otherwise. */
function qualified(resource: string, group: string): string {
  return group ? `${resource}.${group}` : resource;
}

export function cause(field: string, reason: string, message: string): StatusCause {
  return { reason, message, field };
}

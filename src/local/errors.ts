// Failure kinds of the local cluster, each with a stable code.

/** An external command (ip, sysctl, mount) exited non-zero or could not start. */
export class CommandError extends Error {
  readonly code = 'MESH_ERR_COMMAND';
  override name = 'CommandError';
  readonly command: string;
  readonly stderr: string;
  readonly exitCode: number | string | undefined;

  constructor(command: string, stderr: string, exitCode: number | string | undefined, cause?: unknown) {
    super(`\`${command}\` failed (exit ${exitCode ?? '?'}): ${stderr.trim() || 'no output on stderr'}`, {
      cause,
    });
    this.command = command;
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

/** Building or tearing down the local topology failed; `errors` holds each underlying failure. */
export class TopologyError extends Error {
  readonly code = 'MESH_ERR_TOPOLOGY';
  override name = 'TopologyError';
  readonly errors: readonly unknown[];

  constructor(message: string, errors: readonly unknown[] = []) {
    super(errors.length ? `${message}:\n  ${errors.map(describe).join('\n  ')}` : message);
    this.errors = errors;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** meshctl could not get something done by the running local-cluster daemon. */
export class LocalError extends Error {
  readonly code: 'MESH_ERR_LOCAL_DAEMON';
  override name = 'LocalError';

  constructor(code: 'MESH_ERR_LOCAL_DAEMON', message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
  }
}

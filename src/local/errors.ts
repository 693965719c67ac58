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

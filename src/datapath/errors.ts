// Datapath failures: one class, a stable code per kind, and a message that says what to check.
import type { NativeError } from './native.ts';

export type DatapathErrorCode =
  | 'MESH_ERR_BPFFS'
  | 'MESH_ERR_BPF_LOAD'
  | 'MESH_ERR_BPF_PERMISSION'
  | 'MESH_ERR_ATTACH'
  | 'MESH_ERR_NETNS'
  | 'MESH_ERR_MAP'
  | 'MESH_ERR_STATE';

export class DatapathError extends Error {
  readonly code: DatapathErrorCode;
  readonly errno: number | undefined;
  readonly detail: string | undefined;

  constructor(code: DatapathErrorCode, message: string, cause?: NativeError) {
    super(message, cause ? { cause } : undefined);
    this.name = 'DatapathError';
    this.code = code;
    this.errno = cause?.errno;
    this.detail = cause?.detail;
  }
}

/** The last lines of a verifier log: where the verdict is. */
export function verifierTail(detail: string | undefined, lines = 8): string {
  if (!detail) return '';
  return detail.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Turns an addon error from a load into a DatapathError that names the likely cause. */
export function explainLoadError(e: NativeError, objectPath: string): DatapathError {
  const detail = e.detail ?? '';
  if (e.code === 'EPERM' || (e.code === 'EACCES' && !detail.includes('processed'))) {
    return new DatapathError(
      'MESH_ERR_BPF_PERMISSION',
      `loading ${objectPath} was refused (${e.code}): the agent needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN`,
      e,
    );
  }
  if (detail.includes("couldn't reuse pinned map") || detail.includes('reuse pinned map')) {
    return new DatapathError(
      'MESH_ERR_STATE',
      'a pinned map from an earlier version has a different layout; run `meshctl dev uninstall-datapath` (or remove the bpffs directory) and restart the agent',
      e,
    );
  }
  if (detail.includes('not on BPF FS')) {
    return new DatapathError(
      'MESH_ERR_BPFFS',
      'the pin directory is not on a bpf filesystem: mount it with `mount -t bpf bpf /sys/fs/bpf`',
      e,
    );
  }
  if (detail.includes('vmlinux') || detail.includes('BTF')) {
    return new DatapathError(
      'MESH_ERR_BPF_LOAD',
      `loading ${objectPath} failed: the kernel's BTF is missing or unusable (needs CONFIG_DEBUG_INFO_BTF=y)\n${verifierTail(detail)}`,
      e,
    );
  }
  return new DatapathError(
    'MESH_ERR_BPF_LOAD',
    `loading ${objectPath} failed (${e.code}): ${verifierTail(detail) || e.message}`,
    e,
  );
}

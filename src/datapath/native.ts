// The contract between TypeScript and the addon (addon/*.cc). The addon is mechanism only: it takes
// numbers, Buffers and fds, and throws Errors carrying `errno`, `code`, `syscall` and `detail`
// (libbpf's log). Everything else — validation, policy, error classes — lives on this side.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface NativeProgram {
  name: string;
  section: string;
  fd: number;
  type: number;
}

export interface NativeMap {
  name: string;
  fd: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  pinPath: string | null;
}

export interface NativeObject {
  handle: unknown;
  programs: NativeProgram[];
  maps: NativeMap[];
}

export interface NativeLinkInfo {
  id: number;
  type: number;
  progId: number;
  attachType?: number;
  cgroupId?: bigint;
  netnsIno?: number;
}

export interface NetnsSocketOptions {
  family: 4 | 6;
  addr?: Buffer;
  port?: number;
  listen?: boolean;
  backlog?: number;
  mark?: number;
  v6only?: boolean;
  freebind?: boolean;
  transparent?: boolean;
  reuseport?: boolean;
}

export interface RingReader {
  close(): void;
}

export interface Native {
  loadObject(path: string, pinRoot: string, rodata: Record<string, number>): Promise<NativeObject>;
  closeObject(handle: unknown): void;
  linkCreate(progFd: number, targetFd: number, attachType: number): number;
  linkUpdate(linkFd: number, progFd: number): void;
  linkDetach(linkFd: number): void;
  objPin(fd: number, path: string): void;
  objGet(path: string): number;
  linkInfo(fd: number): NativeLinkInfo;
  progInfo(fd: number): { id: number; name: string; type: number; tag: string; runTimeNs: bigint; runCount: bigint };
  mapInfo(fd: number): {
    id: number;
    name: string;
    type: number;
    keySize: number;
    valueSize: number;
    maxEntries: number;
  };
  mapLookup(fd: number, key: Buffer, valueSize: number): Buffer | null;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags?: number): void;
  mapDelete(fd: number, key: Buffer): boolean;
  mapLookupAndDelete(fd: number, key: Buffer, valueSize: number): Buffer | null;
  mapKeys(fd: number, keySize: number, limit: number): Buffer[];
  progTestRun(progFd: number, ctxIn: Buffer, ctxOutSize: number): { retval: number; ctxOut: Buffer };
  probeProgType(progType: number): boolean;
  probeHelper(progType: number, helperId: number): boolean;
  numPossibleCpus(): number;
  libbpfVersion(): string;
  netnsSocket(netnsPath: string, opts: NetnsSocketOptions): number;
  netnsCookie(netnsPath: string): bigint;
  socketCookie(fd: number): bigint;
  localPort(fd: number): number;
  netnsSocketBatch(netnsPath: string, family: 4 | 6, count: number): number[];
  netnsSocketBatchAsync(netnsPath: string, family: 4 | 6, count: number): Promise<number[]>;
  configureSocket(fd: number, opts: NetnsSocketOptions): number;
  netnsDeliveryRouting(
    netnsPath: string,
    opts: { mark: number; table: number; priority: number; enable: boolean; families: (4 | 6)[]; sysctlNetDir?: string },
  ): void;
  setsockoptInt(fd: number, level: number, name: number, value: number): void;
  getsockoptInt(fd: number, level: number, name: number): number;
  closeFd(fd: number): void;
  /** Writes `file` (a net sysctl, absolute) from inside the netns. */
  netnsSysctl(netnsPath: string, file: string, value: string): void;
  /** Delivers each batch as one buffer of whole records of `recordSize` bytes, back to back
   * (a record of another size is cut or zero-filled to it: every program writes one struct). */
  RingReader: new (mapFd: number, onBatch: (records: Buffer) => void, pollMs: number, batchMs: number, recordSize: number) => RingReader;
  constants: {
    BPF_CGROUP_INET4_CONNECT: number;
    BPF_CGROUP_INET6_CONNECT: number;
    BPF_CGROUP_SOCK_OPS: number;
    BPF_SK_LOOKUP: number;
    BPF_LINK_TYPE_CGROUP: number;
    BPF_LINK_TYPE_NETNS: number;
    BPF_PROG_TYPE_CGROUP_SOCK_ADDR: number;
    BPF_PROG_TYPE_SOCK_OPS: number;
    BPF_PROG_TYPE_SK_LOOKUP: number;
    BPF_FUNC_get_netns_cookie: number;
    BPF_FUNC_sk_assign: number;
    BPF_FUNC_ringbuf_reserve: number;
    BPF_ANY: number;
    BPF_NOEXIST: number;
    BPF_EXIST: number;
    SOL_SOCKET: number;
    SO_MARK: number;
    IPPROTO_TCP: number;
    TCP_NODELAY: number;
  };
}

/** An error thrown by the addon. */
export interface NativeError extends Error {
  errno?: number;
  code?: string;
  syscall?: string;
  detail?: string;
}

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const addonPath = `${repoRoot}build/Release/mesh_native.node`;
export const bpfObjectPath = `${repoRoot}bpf/.output/mesh.bpf.o`;

let cached: Native | undefined;

/** Loads the addon once. Throws a message that says how to build it when it is missing. */
export function native(): Native {
  if (cached) return cached;
  if (!existsSync(addonPath)) {
    throw new Error(`the native addon is not built (${addonPath} is missing): run \`make\` in ${repoRoot}`);
  }
  cached = createRequire(import.meta.url)(addonPath) as Native;
  return cached;
}

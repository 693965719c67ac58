// The verdicts of `meshctl check`: can this host run the mesh datapath? Every function here is
// pure — it takes what was read from the host (kernel release, /proc/self/mountinfo,
// /proc/self/status, probe results) and returns a verdict — so the tests can feed it fixtures.
// Reading the host is commands/check.ts's job.
import { CgroupError, findCgroup2Mount, parseMountinfo } from '../common/cgroup.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** One line of `meshctl check`. `fix` says what to do; it is set for every warn and fail. */
export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

// ---------------------------------------------------------------------------------------------
// Kernel version

/** major.minor.patch of a kernel release string such as "6.18.44-fc-v669" or "5.4.0-150-generic". */
export type KernelVersion = readonly [major: number, minor: number, patch: number];

export function parseKernelRelease(release: string): KernelVersion | undefined {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release.trim());
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

/** Negative, zero or positive as `a` is older than, the same as or newer than `b`. */
export function compareKernel(a: KernelVersion, b: KernelVersion): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

export function kernelAtLeast(v: KernelVersion, major: number, minor: number): boolean {
  return compareKernel(v, [major, minor, 0]) >= 0;
}

const UPGRADE = 'run Linux 5.14 or later (5.17+ recommended) — distribution backports are not detected';

export function checkKernel(release: string): CheckResult {
  const name = 'kernel';
  const v = parseKernelRelease(release);
  if (!v) {
    return {
      name,
      status: 'warn',
      detail: `cannot read a version from the kernel release "${release}"`,
      fix: 'make sure the kernel is Linux 5.14 or later',
    };
  }
  if (!kernelAtLeast(v, 5, 10)) {
    return {
      name,
      status: 'fail',
      detail: `Linux ${release} is older than 5.10, the mesh's floor`,
      fix: UPGRADE,
    };
  }
  if (!kernelAtLeast(v, 5, 14)) {
    return {
      name,
      status: 'fail',
      detail: `Linux ${release}: the agent identifies pod network namespaces with SO_NETNS_COOKIE, which needs 5.14`,
      fix: UPGRADE,
    };
  }
  // The datapath does not read sk_lookup's ingress_ifindex (DESIGN: it cannot tell a pod's own
  // connections apart anyway), so 5.14–5.16 is fine; say so, because it is a common question.
  const note = kernelAtLeast(v, 5, 17)
    ? 'includes sk_lookup ingress_ifindex (5.17)'
    : "sk_lookup's ingress_ifindex needs 5.17; the datapath does not depend on it";
  return { name, status: 'ok', detail: `Linux ${release} (>= 5.14 for SO_NETNS_COOKIE; ${note})` };
}

/** BPF ring buffer maps (BPF_MAP_TYPE_RINGBUF) arrived in Linux 5.8; flow events use one. */
export function checkRingBuffer(release: string): CheckResult {
  const name = 'ring-buffer';
  const v = parseKernelRelease(release);
  if (!v) {
    return {
      name,
      status: 'warn',
      detail: 'unknown kernel version',
      fix: 'BPF ring buffers need Linux 5.8 or later',
    };
  }
  if (kernelAtLeast(v, 5, 8)) return { name, status: 'ok', detail: 'BPF ring buffer maps (Linux 5.8+)' };
  return {
    name,
    status: 'fail',
    detail: 'BPF ring buffer maps need Linux 5.8; the datapath reports flow events through one',
    fix: UPGRADE,
  };
}

// ---------------------------------------------------------------------------------------------
// BTF

/** `error` is the errno code from opening /sys/kernel/btf/vmlinux, or undefined when it opened. */
export function checkBtf(error: string | undefined): CheckResult {
  const name = 'btf';
  if (error === undefined) return { name, status: 'ok', detail: '/sys/kernel/btf/vmlinux is readable' };
  if (error === 'ENOENT') {
    return {
      name,
      status: 'fail',
      detail: '/sys/kernel/btf/vmlinux does not exist: the kernel has no BTF, so CO-RE programs cannot load',
      fix: 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since 2021 are)',
    };
  }
  return {
    name,
    status: 'fail',
    detail: `/sys/kernel/btf/vmlinux is not readable (${error})`,
    fix: 'run meshctl check as root; if it persists, the kernel needs CONFIG_DEBUG_INFO_BTF=y',
  };
}

// ---------------------------------------------------------------------------------------------
// Mounts: cgroup v2 and bpffs

export function checkCgroup2(mountinfo: string): CheckResult {
  const name = 'cgroup2';
  let mount: string;
  try {
    mount = findCgroup2Mount(mountinfo);
  } catch (err) {
    if (!(err instanceof CgroupError)) throw err;
    return {
      name,
      status: 'fail',
      detail:
        'no cgroup2 filesystem is mounted; the mesh attaches its connect and sockops programs to cgroup v2',
      fix: 'boot with systemd.unified_cgroup_hierarchy=1 (unified mode), or mount -t cgroup2 none /sys/fs/cgroup/unified',
    };
  }
  const v1 = parseMountinfo(mountinfo).filter((m) => m.fstype === 'cgroup');
  if (v1.length > 0) {
    return {
      name,
      status: 'warn',
      detail:
        `hybrid host: cgroup v2 is at ${mount}, and ${v1.length} cgroup v1 hierarch${v1.length === 1 ? 'y is' : 'ies are'} ` +
        `mounted too; the agent attaches to the pods' subtree of the v2 mount, so it captures only pods ` +
        'that the container runtime also places in the v2 hierarchy',
      fix: 'prefer unified mode (systemd.unified_cgroup_hierarchy=1 on the kernel command line); on a hybrid host check that pod cgroups appear under the v2 mount',
    };
  }
  return { name, status: 'ok', detail: `cgroup v2 (unified) at ${mount}` };
}

/** statfs(2) f_type of bpffs (include/uapi/linux/magic.h, BPF_FS_MAGIC). */
export const BPF_FS_MAGIC = 0xcafe4a11;

// For messages only: the f_type values (include/uapi/linux/magic.h) a user is likely to meet.
const FS_NAMES: Record<number, string> = {
  1650812274: 'sysfs',
  61267: 'ext4',
  16914836: 'tmpfs',
  2435016766: 'btrfs',
  1481003842: 'xfs',
  2035054128: 'overlayfs',
  40864: 'proc',
};

function fsName(type: number): string {
  return FS_NAMES[type] ?? `filesystem type 0x${type.toString(16)}`;
}

/** What the host said about the bpffs directory: its nearest existing ancestor and that one's statfs type. */
export type BpffsProbe = { ancestor: string; fsType: number } | { error: string };

export function checkBpffs(mountinfo: string, dir: string, probe: BpffsProbe): CheckResult {
  const name = 'bpffs';
  const bpfMounts = parseMountinfo(mountinfo)
    .filter((m) => m.fstype === 'bpf')
    .map((m) => m.mountPoint);
  if ('error' in probe) {
    return {
      name,
      status: 'fail',
      detail: `cannot inspect ${dir}: ${probe.error}`,
      fix: "run meshctl check as root, or pass the agent's bpffs directory with --bpffs-dir",
    };
  }
  if (probe.fsType === BPF_FS_MAGIC) {
    const where = probe.ancestor === dir ? `${dir} is` : `${dir} will be created on`;
    return { name, status: 'ok', detail: `${where} a bpf filesystem (pins survive agent restarts)` };
  }
  const underSysFsBpf = dir === '/sys/fs/bpf' || dir.startsWith('/sys/fs/bpf/');
  const mountCmd = underSysFsBpf
    ? 'mount -t bpf bpf /sys/fs/bpf'
    : `mkdir -p ${dir} && mount -t bpf bpf ${dir}`;
  const notOn = `${dir} is not on a bpf filesystem (${probe.ancestor} is ${fsName(probe.fsType)})`;
  if (bpfMounts.length === 0) {
    return {
      name,
      status: 'fail',
      detail: `${notOn} and no bpffs is mounted anywhere; the datapath pins its programs, links and maps there`,
      fix: mountCmd,
    };
  }
  return {
    name,
    status: 'fail',
    detail: `${notOn}; bpffs is mounted at ${bpfMounts.join(', ')}`,
    fix: `${mountCmd}, or point the agent at a directory on an existing bpffs (MESH_BPFFS_DIR=${bpfMounts[0]}/mesh, meshctl check --bpffs-dir ${bpfMounts[0]}/mesh)`,
  };
}

// ---------------------------------------------------------------------------------------------
// Capabilities

// include/uapi/linux/capability.h
export const CAP_NET_ADMIN = 12;
export const CAP_SYS_ADMIN = 21;
export const CAP_PERFMON = 38;
export const CAP_BPF = 39;

/** The effective capability set from the text of /proc/PID/status ("CapEff:\t000001ffffffffff"). */
export function parseCapEff(status: string): bigint | undefined {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(status);
  return m?.[1] ? BigInt(`0x${m[1]}`) : undefined;
}

export function hasCap(set: bigint, cap: number): boolean {
  return ((set >> BigInt(cap)) & 1n) === 1n;
}

/**
 * Whether bpf(2) program loads are allowed: CAP_BPF from 5.8 (commit a17b53c4a4b5), before that
 * CAP_SYS_ADMIN only; the kernel's bpf_capable() accepts either.
 */
export function bpfCapable(capEff: bigint): boolean {
  return hasCap(capEff, CAP_BPF) || hasCap(capEff, CAP_SYS_ADMIN);
}

export function checkCapabilities(status: string, release: string): CheckResult {
  const name = 'capabilities';
  const capEff = parseCapEff(status);
  if (capEff === undefined) {
    return {
      name,
      status: 'warn',
      detail: 'no CapEff line in /proc/self/status',
      fix: 'run the agent as root or privileged',
    };
  }
  const v = parseKernelRelease(release);
  const capBpfKnown = v === undefined || kernelAtLeast(v, 5, 8);
  const missing: string[] = [];
  if (capBpfKnown ? !bpfCapable(capEff) : !hasCap(capEff, CAP_SYS_ADMIN)) {
    missing.push(
      capBpfKnown ? 'CAP_BPF (or CAP_SYS_ADMIN) to load programs' : 'CAP_SYS_ADMIN to load programs',
    );
  }
  if (!hasCap(capEff, CAP_NET_ADMIN)) missing.push('CAP_NET_ADMIN to attach cgroup and sk_lookup programs');
  if (!hasCap(capEff, CAP_SYS_ADMIN)) missing.push('CAP_SYS_ADMIN to enter pod network namespaces (setns)');
  // The verifier's pointer and speculation checks relax with perfmon_capable(), which
  // CAP_SYS_ADMIN also satisfies (include/linux/capability.h).
  const perfmon = hasCap(capEff, CAP_PERFMON) || hasCap(capEff, CAP_SYS_ADMIN);
  if (missing.length > 0) {
    return {
      name,
      status: 'fail',
      detail: `this process lacks ${missing.join('; ')}`,
      fix: 'run meshctl check (and the agent) as root, or grant CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_PERFMON',
    };
  }
  if (!perfmon) {
    return {
      name,
      status: 'warn',
      detail: 'CAP_PERFMON is missing: the verifier may reject programs that compare pointers',
      fix: 'grant CAP_PERFMON to the agent',
    };
  }
  return {
    name,
    status: 'ok',
    detail: `${capBpfKnown ? 'CAP_BPF' : 'CAP_SYS_ADMIN'}, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON are effective`,
  };
}

// ---------------------------------------------------------------------------------------------
// Program types and helpers, probed through the addon (libbpf_probe_bpf_prog_type/_helper)

export interface FeatureProbe {
  /** What the datapath uses, e.g. "cgroup/connect4" or "bpf_get_netns_cookie in sockops". */
  feature: string;
  supported: boolean;
}

export type ProgTypeProbe =
  | { addon: 'missing'; message: string }
  | { addon: 'failed'; message: string }
  | { addon: 'ok'; features: FeatureProbe[] };

/**
 * `privileged` is bpfCapable(): libbpf's probes load a tiny program, and a load refused with
 * EPERM reads as "unsupported", so without privileges a negative answer means nothing.
 */
export function checkProgramTypes(probe: ProgTypeProbe, privileged: boolean): CheckResult {
  const name = 'program-types';
  if (probe.addon === 'missing') {
    return {
      name,
      status: 'warn',
      detail: `not probed: ${probe.message}`,
      fix: 'run `make` in the repository, then meshctl check again',
    };
  }
  if (probe.addon === 'failed') {
    return {
      name,
      status: 'warn',
      detail: `not probed: ${probe.message}`,
      fix: 'run meshctl check as root',
    };
  }
  const missing = probe.features.filter((f) => !f.supported).map((f) => f.feature);
  const all = probe.features.map((f) => f.feature).join(', ');
  if (missing.length === 0) return { name, status: 'ok', detail: `the kernel loads ${all}` };
  if (!privileged) {
    return {
      name,
      status: 'warn',
      detail: `probes for ${missing.join(', ')} were refused, likely for lack of CAP_BPF`,
      fix: 'run meshctl check as root for a real answer',
    };
  }
  return {
    name,
    status: 'fail',
    detail: `the kernel cannot load ${missing.join(', ')}`,
    fix: 'use Linux 5.14+ built with CONFIG_BPF_SYSCALL=y, CONFIG_CGROUP_BPF=y and CONFIG_BPF_JIT=y',
  };
}

// ---------------------------------------------------------------------------------------------
// Socket-level load balancers attached at the cgroup v2 root

export interface AttachedProgram {
  id: number;
  attachType: string;
  /** bpftool's spelling of the cgroup's attach flags: "multi", "override", or "" for none. */
  attachFlags: string;
  name: string;
}

/**
 * Parses `bpftool -j cgroup show <dir>`: an array of {id, attach_type, attach_flags, name}, or
 * nothing at all when no program is attached. bpftool 7+ names attach types as libbpf does
 * ("cgroup_inet4_connect"), older versions used its own names ("connect4"), and an attach type
 * that it cannot name is a number.
 */
export function parseBpftoolCgroupShow(stdout: string): AttachedProgram[] {
  if (stdout.trim() === '') return [];
  const parsed: unknown = JSON.parse(stdout);
  if (!Array.isArray(parsed)) throw new Error('bpftool printed something other than a JSON array');
  return parsed.map((p: Record<string, unknown>) => ({
    id: Number(p['id']),
    attachType: String(p['attach_type']),
    attachFlags: typeof p['attach_flags'] === 'string' ? p['attach_flags'] : '',
    name: typeof p['name'] === 'string' ? p['name'] : '',
  }));
}

// BPF_CGROUP_INET4_CONNECT = 10, BPF_CGROUP_INET6_CONNECT = 11 (include/uapi/linux/bpf.h).
const CONNECT_ATTACH_TYPES = new Set([
  'connect4',
  'connect6',
  'cgroup_inet4_connect',
  'cgroup_inet6_connect',
  '10',
  '11',
]);

export type RootCgroupProbe =
  | { bpftool: 'missing' }
  | { bpftool: 'failed'; message: string }
  | {
      bpftool: 'ok';
      cgroup: string;
      programs: AttachedProgram[];
      /** The cgroup2 mount is a subtree (a cgroup namespace, as in a container): the host's root is out of sight. */
      namespaced?: boolean;
    };

export function checkSocketLb(probe: RootCgroupProbe): CheckResult {
  const name = 'socket-lb';
  if (probe.bpftool === 'missing') {
    return {
      name,
      status: 'warn',
      detail: 'skipped: bpftool is not installed, so programs at the root cgroup were not listed',
      fix: 'install bpftool (e.g. apt-get install bpftool) and run meshctl check again',
    };
  }
  if (probe.bpftool === 'failed') {
    return {
      name,
      status: 'warn',
      detail: `skipped: bpftool could not list the root cgroup's programs: ${probe.message}`,
      fix: 'run meshctl check as root',
    };
  }
  const connect = probe.programs.filter((p) => CONNECT_ATTACH_TYPES.has(p.attachType));
  if (connect.length === 0) {
    const caveat = probe.namespaced
      ? " (the root of this cgroup namespace; the host's root cgroup is not visible from here)"
      : '';
    return {
      name,
      status: probe.namespaced ? 'warn' : 'ok',
      detail: `none: no connect4/connect6 program at the root cgroup ${probe.cgroup}${caveat}`,
      ...(probe.namespaced ? { fix: 'run meshctl check on the node itself, outside the container' } : {}),
    };
  }
  const names = connect.map((p) => `${p.name || `id ${p.id}`} (${p.attachType})`).join(', ');
  const where = `${connect.length} program(s) attached at the root cgroup ${probe.cgroup} (${names})`;
  // A cgroup whose program was attached with no flags forbids programs in every cgroup below it
  // (include/uapi/linux/bpf.h, BPF_PROG_ATTACH): the mesh's connect programs could not attach.
  if (connect.some((p) => p.attachFlags === '')) {
    return {
      name,
      status: 'fail',
      detail: `${where}, attached without BPF_F_ALLOW_MULTI — the kernel refuses the mesh's connect programs in any cgroup below`,
      fix: "disable the CNI's socket load balancing, or have it attach with BPF_F_ALLOW_MULTI or a bpf_link; see docs/meshctl.md#socket-load-balancers",
    };
  }
  return {
    name,
    status: 'warn',
    detail: `${where} — a CNI's socket load balancing may rewrite service addresses that the mesh would otherwise see`,
    fix: 'see docs/meshctl.md#socket-load-balancers (for Cilium: socketLB.hostNamespaceOnly=true)',
  };
}

// ---------------------------------------------------------------------------------------------

/** Everything `meshctl check` reads from the host, gathered once. */
export interface HostFacts {
  kernelRelease: string;
  /** errno code from opening /sys/kernel/btf/vmlinux, undefined when it opened. */
  btfError: string | undefined;
  mountinfo: string;
  procStatus: string;
  bpffsDir: string;
  bpffs: BpffsProbe;
  progTypes: ProgTypeProbe;
  rootCgroup: RootCgroupProbe;
}

/** All checks in the order they are shown. */
export function runChecks(host: HostFacts): CheckResult[] {
  const capEff = parseCapEff(host.procStatus);
  return [
    checkKernel(host.kernelRelease),
    checkBtf(host.btfError),
    checkCgroup2(host.mountinfo),
    checkBpffs(host.mountinfo, host.bpffsDir, host.bpffs),
    checkCapabilities(host.procStatus, host.kernelRelease),
    checkProgramTypes(host.progTypes, capEff !== undefined && bpfCapable(capEff)),
    checkRingBuffer(host.kernelRelease),
    checkSocketLb(host.rootCgroup),
  ];
}

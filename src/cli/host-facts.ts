// What `meshctl check` reads from the host — without loading, attaching or mounting anything that
// outlives the call. Kept apart from the command so that the node image's small entry
// (src/cli/node-check.ts) runs the same reads without commander or the API client.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statfsSync } from 'node:fs';
import { release } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { findCgroup2Mount, parseMountinfo } from '../common/cgroup.ts';
import { native } from '../datapath/index.ts';
import { type BpffsProbe, type FeatureProbe, type HostFacts, parseBpftoolCgroupShow, type ProgTypeProbe, type RootCgroupProbe } from './checks.ts';

// bpftool lives in sbin, which is not on a normal user's PATH.
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** A directory's entries, or the errno code that stopped the read. */
export function listDir(dir: string): string[] | { error: string } {
  try {
    return readdirSync(dir);
  } catch (e) {
    return { error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
  }
}

/** Reads the host. Each read is fenced: one that fails becomes part of the facts, not an exception. */
export function gatherHostFacts(bpffsDir: string): HostFacts {
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  return {
    kernelRelease: release(),
    btfError: openError('/sys/kernel/btf/vmlinux'),
    mountinfo,
    procStatus: readFileSync('/proc/self/status', 'utf8'),
    bpffsDir,
    bpffs: probeBpffs(bpffsDir),
    progTypes: probeProgTypes(),
    rootCgroup: probeRootCgroup(mountinfo),
  };
}

function openError(path: string): string | undefined {
  try {
    closeSync(openSync(path, 'r'));
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

/** The nearest existing directory at or above `dir`, and its filesystem type. */
function probeBpffs(dir: string): BpffsProbe {
  try {
    let ancestor = dir;
    while (!existsSync(ancestor)) ancestor = dirname(ancestor);
    return { ancestor, fsType: Number(statfsSync(ancestor).type) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

function probeProgTypes(): ProgTypeProbe {
  let n: ReturnType<typeof native>;
  try {
    n = native();
  } catch (err) {
    return { addon: 'missing', message: (err as Error).message };
  }
  if (typeof n.probeProgType !== 'function') {
    // An addon built before probing existed.
    return { addon: 'missing', message: 'the native addon predates feature probes' };
  }
  const c = n.constants;
  try {
    const features: FeatureProbe[] = [];
    const progType = (feature: string, type: number) => {
      const supported = n.probeProgType(type);
      features.push({ feature, supported });
      return supported;
    };
    // A helper probe on a program type the kernel lacks says nothing more; skip it.
    const helper = (feature: string, type: number, helperId: number) =>
      features.push({ feature, supported: n.probeHelper(type, helperId) });
    if (progType('cgroup/connect4+6', c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR)) {
      helper(
        'bpf_get_netns_cookie in cgroup/connect',
        c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        c.BPF_FUNC_get_netns_cookie,
      );
    }
    if (progType('sockops', c.BPF_PROG_TYPE_SOCK_OPS)) {
      helper('bpf_get_netns_cookie in sockops', c.BPF_PROG_TYPE_SOCK_OPS, c.BPF_FUNC_get_netns_cookie);
    }
    if (progType('sk_lookup', c.BPF_PROG_TYPE_SK_LOOKUP)) {
      helper('bpf_sk_assign in sk_lookup', c.BPF_PROG_TYPE_SK_LOOKUP, c.BPF_FUNC_sk_assign);
    }
    return { addon: 'ok', features };
  } catch (err) {
    return { addon: 'failed', message: (err as Error).message };
  }
}

/** Lists (never attaches) the programs at the cgroup v2 root with bpftool. */
function probeRootCgroup(mountinfo: string): RootCgroupProbe {
  let cgroup: string;
  try {
    cgroup = findCgroup2Mount(mountinfo);
  } catch {
    return { bpftool: 'failed', message: 'no cgroup2 mount to inspect' };
  }
  const bpftool = findExecutable('bpftool');
  if (!bpftool) return { bpftool: 'missing' };
  const namespaced = parseMountinfo(mountinfo).some(
    (m) => m.fstype === 'cgroup2' && m.mountPoint === cgroup && m.root !== '/',
  );
  let stdout: string;
  try {
    stdout = execFileSync(bpftool, ['-j', 'cgroup', 'show', cgroup], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    // bpftool -j reports its own errors on stdout as {"error": "..."}.
    const e = err as { stdout?: string; message: string };
    return { bpftool: 'failed', message: bpftoolError(e.stdout) ?? e.message };
  }
  try {
    return { bpftool: 'ok', cgroup, programs: parseBpftoolCgroupShow(stdout), namespaced };
  } catch (err) {
    return { bpftool: 'failed', message: `unexpected bpftool output: ${(err as Error).message}` };
  }
}

function bpftoolError(stdout: string | undefined): string | undefined {
  try {
    const parsed = JSON.parse(stdout ?? '') as { error?: unknown };
    return typeof parsed.error === 'string' ? parsed.error : undefined;
  } catch {
    return undefined;
  }
}

function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SBIN_DIRS];
  return dirs.map((d) => join(d, name)).find((p) => existsSync(p));
}

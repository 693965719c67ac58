// The OCI side of the local kubelet's runtime: containers run from images in the host's local
// image store (containers-storage) by podman with runc, each in its pod's netns and cgroup. Nothing
// is pulled from a registry: an image gets into the store with `podman build`, `podman load` or
// `meshctl dev image load`.
//
// Which containers run here rather than as host commands (runtime.ts, the demo's mode): see
// `chooseRuntime`.
//
// runc, not crun: crun refuses this host's hybrid cgroups ("cgroups in hybrid mode not
// supported"); cgroupfs, not systemd: pod cgroups are plain directories we own. The ulimits are
// this process's own hard limits (containerUlimits).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { findCgroup2Mount } from '../../common/cgroup.ts';

/** The label on every container the local cluster makes; its value is the cluster's prefix. */
export const CONTAINER_LABEL = 'io.mesh.local.cluster';

const GLOBAL = ['--runtime', 'runc', '--cgroup-manager', 'cgroupfs'];

/**
 * `--ulimit` flags holding a container's open files at the hard limit this process has (and so
 * podman and runc, its children), and its processes at that hard limit or the host's pid_max,
 * whichever is lower. podman's defaults ask for more (1048576 of each), and a container without
 * CAP_SYS_RESOURCE (the chart's CNI installer drops every capability) cannot raise a hard limit:
 * runc then fails with "error setting rlimits … operation not permitted" before the process
 * starts, and the pod crash-loops with an empty log. Measured here: nproc above pid_max (32768)
 * fails the same way even below the hard limit (96367), and no container can have more
 * processes than pid_max anyway. The limits differ from host to host and from a shell to a
 * service, so they are read, not written down.
 */
export function containerUlimits(limits = readFileSync('/proc/self/limits', 'utf8'), pidMax = readPidMax() ?? Infinity): string[] {
  const hard = (name: string): number | undefined => {
    const line = limits.split('\n').find((l) => l.startsWith(name));
    // "Max open files            20000                20000                files"
    const value = line?.slice(name.length).trim().split(/\s+/)[1];
    if (value === 'unlimited') return Infinity;
    return value && /^\d+$/.test(value) ? Number(value) : undefined;
  };
  const flags: string[] = [];
  const nofile = hard('Max open files');
  if (nofile !== undefined) flags.push('--ulimit', `nofile=${limitValue(nofile)}:${limitValue(nofile)}`);
  const nproc = hard('Max processes');
  if (nproc !== undefined) {
    const value = limitValue(Math.min(nproc, pidMax));
    flags.push('--ulimit', `nproc=${value}:${value}`);
  }
  return flags;
}

const limitValue = (n: number): string => (Number.isFinite(n) ? String(n) : '-1');

function readPidMax(): number | undefined {
  try {
    const n = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
const ULIMITS = containerUlimits();

function podman(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('podman', [...GLOBAL, ...args], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 127) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Whether `image` is in the local store (`podman image exists`). False when podman is absent. */
export async function imageExists(image: string): Promise<boolean> {
  return (await podman(['image', 'exists', image])).code === 0;
}

/**
 * Which runtime a container gets. The rule keeps every pod written for the host-command mode
 * working: an image in the local store runs as OCI; so does any `localhost/…` image (it can only
 * come from the store, so a missing one is an image error, not a hint to run on the host) and any
 * container without a `command` (nothing to run on the host). Otherwise — `image: local`, or any
 * image that is not in the store, with a `command` — the command runs on this host as before.
 */
export async function chooseRuntime(c: { image?: string; command?: string[] }): Promise<'oci' | 'host'> {
  const image = c.image ?? '';
  if (image === 'local' && c.command?.length) return 'host';
  if (image.startsWith('localhost/') || !c.command?.length) return 'oci';
  return (await imageExists(image)) ? 'oci' : 'host';
}

export interface OciContainerSpec {
  /** Unique on this host; the kubelet derives it from cluster prefix, pod and container. */
  name: string;
  clusterPrefix: string;
  image: string;
  command?: string[];
  args?: string[];
  env: Record<string, string>;
  workingDir?: string;
  hostname: string;
  /** /run/netns/<pod> for a pod, the node's netns path for hostNetwork. */
  netnsPath: string;
  /** Absolute cgroup v2 directory of the pod; the container gets a child of it. */
  cgroup: string;
  hostPID: boolean;
  privileged: boolean;
  capAdd: string[];
  capDrop: string[];
  user?: string;
  /** securityContext.readOnlyRootFilesystem. */
  readOnly?: boolean;
  /** securityContext.allowPrivilegeEscalation false: no_new_privs. */
  noNewPrivileges?: boolean;
  /** securityContext.seccompProfile Unconfined (default: the runtime's profile). */
  seccompUnconfined?: boolean;
  mounts: { source: string; target: string; readOnly: boolean; propagation?: 'rslave' | 'rshared' }[];
  /** podman's flags for the container's cgroup limits (resources.ts). */
  resourceArgs: string[];
  labels: Record<string, string>;
}

/** The `podman run` argv (after `podman`) that starts the container attached: its output is the
 *  process's stdout/stderr, so the kubelet's log file gets it as for a host command. */
export function runArgs(s: OciContainerSpec): string[] {
  const a = [...GLOBAL, 'run', '--rm', '--replace', '--name', s.name, '--label', `${CONTAINER_LABEL}=${s.clusterPrefix}`];
  for (const [k, v] of Object.entries(s.labels)) a.push('--label', `${k}=${v}`);
  a.push('--network', `ns:${s.netnsPath}`, '--hostname', s.hostname);
  // podman's cgroup parent is relative to the cgroup root, the same path in every hierarchy.
  a.push('--cgroup-parent', `/${relative(findCgroup2Mount(), s.cgroup)}`);
  // --pull never: even if the image vanished since the kubelet looked, nothing is fetched.
  a.push('--pull', 'never', ...ULIMITS, '--log-driver', 'none', '--sig-proxy=true');
  a.push(...s.resourceArgs);
  if (s.hostPID) a.push('--pid', 'host');
  if (s.privileged) a.push('--privileged');
  for (const c of s.capAdd) a.push('--cap-add', c);
  for (const c of s.capDrop) a.push('--cap-drop', c);
  if (s.user) a.push('--user', s.user);
  if (s.readOnly) a.push('--read-only');
  if (s.noNewPrivileges) a.push('--security-opt', 'no-new-privileges');
  // The runtime's default seccomp profile refuses bpf() and setns() whatever the capabilities.
  // (No AppArmor here: appArmorProfile has nothing to change on this host.)
  if (s.seccompUnconfined) a.push('--security-opt', 'seccomp=unconfined');
  if (s.workingDir) a.push('--workdir', s.workingDir);
  for (const [k, v] of Object.entries(s.env)) a.push('--env', `${k}=${v}`);
  for (const m of s.mounts) a.push('--mount', `type=bind,source=${m.source},destination=${m.target}${m.readOnly ? ',ro' : ''}${m.propagation ? `,bind-propagation=${m.propagation}` : ''}`);
  if (s.command?.length) a.push('--entrypoint', JSON.stringify(s.command));
  a.push(s.image, ...(s.args ?? []));
  return a;
}

/**
 * podman's own failure, not the container's exit: `podman run` exits 125 (podman), 126 (the
 * runtime could not start the process, e.g. runc's "error setting rlimits") or 127 (no such
 * command) and writes `Error: …` last. A container's own exit with those codes writes no such line
 * (or one of its own that the runtime's prefix would not start).
 */
export function runtimeError(exitCode: number, lastLine: string): string | undefined {
  if (exitCode < 125 || exitCode > 127) return undefined;
  const m = /^Error: (.+)$/.exec(lastLine);
  return m ? m[1] : undefined;
}

/** Stops a container as kubelet does — SIGTERM, SIGKILL after `graceSeconds` — and removes it. */
export async function stopContainer(name: string, graceSeconds: number): Promise<void> {
  await podman(['stop', '--ignore', '-t', String(Math.ceil(graceSeconds)), name]);
  await podman(['rm', '--force', '--ignore', name]);
}

/**
 * Removes the container if it exists, killing it. For after its `podman run` has exited: a run
 * stopped while it was still setting up can leave a container that the first stop did not see.
 */
export async function removeContainer(name: string): Promise<void> {
  await podman(['rm', '--force', '--ignore', '--time', '0', name]);
}

/** SIGKILL to the container now, whatever stop is in progress. */
export async function killContainer(name: string): Promise<void> {
  await podman(['kill', '--signal', 'KILL', name]);
}

/**
 * Runs `command` inside a running OCI container (`podman exec`), for kubectl exec. stdin/stdout/
 * stderr are the returned process's pipes; with `tty` the container side gets a terminal (the
 * caller then writes raw bytes to stdin). The exit code of the command is the process's.
 * Resize is not handled here.
 */
export function exec(name: string, command: string[], opts: { tty?: boolean; stdin?: boolean } = {}): ChildProcess {
  const a = [...GLOBAL, 'exec', ...(opts.stdin !== false ? ['-i'] : []), ...(opts.tty ? ['-t'] : []), name, ...command];
  return spawn('podman', a, { stdio: 'pipe' });
}

/** Names of the containers this cluster (or every local cluster, without a prefix) made. */
export async function listContainers(clusterPrefix?: string): Promise<string[]> {
  const filter = clusterPrefix ? `label=${CONTAINER_LABEL}=${clusterPrefix}` : `label=${CONTAINER_LABEL}`;
  const r = await podman(['ps', '-a', '--filter', filter, '--format', '{{.Names}}']);
  return r.code === 0 ? r.stdout.split('\n').filter(Boolean) : [];
}

/** Removes every container of a cluster: `meshctl dev down` and the sweep after a crash. */
export async function removeAllContainers(clusterPrefix: string): Promise<void> {
  const names = await listContainers(clusterPrefix);
  if (names.length) await podman(['rm', '--force', '--time', '0', ...names]);
}

/**
 * On a hybrid-cgroup host runc (and conmon) also make the pod's path in each cgroup v1 hierarchy,
 * which our topology does not know of. Removes those v1 twins of the cgroup v2 tree `cgroup` (a
 * pod's, or the cluster's pod parent), deepest first; ones still in use stay.
 */
export function removeV1Tree(cgroup: string): string[] {
  const root = findCgroup2Mount();
  const base = '/sys/fs/cgroup';
  const removed: string[] = [];
  if (root === base) return removed;
  const rm = (dir: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) rm(join(dir, e.name));
    try {
      rmdirSync(dir);
      removed.push(dir);
    } catch {
      // still in use
    }
  };
  let hierarchies: string[] = [];
  try {
    hierarchies = readdirSync(base).filter((h) => join(base, h) !== root);
  } catch {
    // no cgroup v1 tree
  }
  for (const h of hierarchies) rm(join(base, h, relative(root, cgroup)));
  return removed;
}

/** `podman load -i file`: puts an image archive (docker-archive or oci-archive) into the local
 *  store; resolves with the names podman reports loaded. */
export async function loadImage(file: string): Promise<string[]> {
  const r = await podman(['load', '-i', file]);
  if (r.code !== 0) {
    const why = r.code === 127 ? 'podman is not installed (apt-get install podman runc, or `make setup`)' : r.stderr.trim();
    throw new Error(`could not load ${file}: ${why}`);
  }
  return [...r.stdout.matchAll(/^Loaded image(?:\(s\))?: (.+)$/gm)].flatMap((m) => m[1]!.split(',').map((s) => s.trim()));
}

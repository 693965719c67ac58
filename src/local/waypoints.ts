// Waypoints on the local cluster. The controller deploys them as on a real cluster — a Deployment
// whose pod runs the waypoint in its own network namespace, with a projected token and the trust
// bundle mounted. The pod runs the waypoint image `make images` builds (localhost/mesh-waypoint,
// FROM scratch, uid 1337) when the host's local image store has it built from this checkout's
// commit. Otherwise the image is the
// host's own runtime: an empty image (localhost/mesh-hostfs) with the host's /usr, this checkout
// and Node.js bind-mounted read-only, so no image has to be built for a dev loop (kind's
// extraMounts, in spirit).
//
// Pods cannot reach the host's loopback, where the controller listens; the controller's config
// stream and CA are forwarded into unix sockets under the state directory, which the waypoint
// pod mounts (the bytes are TLS end to end: the forwarder sees only ciphertext).
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, realpathSync, rmSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as k8s from '@kubernetes/client-node';
import type { WaypointTemplate } from '../controller/waypoint-deployer.ts';

export const HOSTFS_IMAGE = 'localhost/mesh-hostfs:latest';
/** What `make images` tags (src/images/build.ts); the chart's default waypoint image too. */
export const WAYPOINT_IMAGE = 'localhost/mesh-waypoint:latest';
const WAYPOINT_MAIN = fileURLToPath(new URL('../waypoint/main.ts', import.meta.url));
const REPO = realpathSync(fileURLToPath(new URL('../..', import.meta.url)));
const SOCKETS_IN_POD = '/var/run/mesh-controller';
const L7_IN_POD = '/var/run/mesh-l7-flows';

/** Where the local cluster's agents take L7 flow records: one socket per node. */
export function l7FlowsDir(stateDir: string): string {
  return join(stateDir, 'l7-flows');
}

function run(cmd: string, args: string[], input?: Buffer): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = execFile(cmd, args, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    if (input) p.stdin?.end(input);
  });
}

function podman(args: string[], input?: Buffer): Promise<{ code: number; stdout: string; stderr: string }> {
  return run('podman', ['--runtime', 'runc', '--cgroup-manager', 'cgroupfs', ...args], input);
}

/**
 * Whether WAYPOINT_IMAGE holds this checkout's waypoint: it is in the local store and its
 * revision label is this checkout's HEAD with no uncommitted changes. An image from another commit
 * or worktree (the store is the host's, shared by every checkout) would run other code than the
 * controller beside it; `why` says which it is.
 */
export async function waypointImageCurrent(): Promise<{ current: boolean; why: string }> {
  const label = await podman(['image', 'inspect', '--format', '{{index .Labels "org.opencontainers.image.revision"}}', WAYPOINT_IMAGE]);
  if (label.code !== 0) return { current: false, why: `no ${WAYPOINT_IMAGE} in the local store (\`make images\` builds it)` };
  const head = await run('git', ['-C', REPO, 'rev-parse', 'HEAD']);
  const dirty = await run('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no']);
  if (head.code !== 0 || dirty.code !== 0) return { current: false, why: `${REPO} is not a git checkout, so ${WAYPOINT_IMAGE} cannot be matched to it` };
  if (dirty.stdout.trim()) return { current: false, why: `this checkout has uncommitted changes, which ${WAYPOINT_IMAGE} cannot hold` };
  const built = label.stdout.trim();
  if (built !== head.stdout.trim()) return { current: false, why: `${WAYPOINT_IMAGE} was built from ${built.slice(0, 12) || 'an unknown revision'}, not this checkout's ${head.stdout.trim().slice(0, 12)} (\`make images\` rebuilds it)` };
  return { current: true, why: `${WAYPOINT_IMAGE} was built from this checkout` };
}

/**
 * Which image the waypoint pods run: the waypoint image when it holds this checkout's waypoint,
 * else the empty host-runtime image, made here unless it is there already.
 */
export async function ensureWaypointImage(): Promise<{ from: 'image' | 'hostfs'; why: string }> {
  const image = await waypointImageCurrent();
  if (image.current) return { from: 'image', why: image.why };
  await ensureHostfsImage();
  return { from: 'hostfs', why: image.why };
}

/** Makes the empty image the waypoint pods run from, unless it is in the local store. */
export async function ensureHostfsImage(): Promise<void> {
  if ((await podman(['image', 'exists', HOSTFS_IMAGE])).code === 0) return;
  // An empty tar archive: two 512-byte zero blocks.
  const r = await podman(['import', '--message', 'mesh: the host runtime is bind-mounted', '-', HOSTFS_IMAGE], Buffer.alloc(1024));
  if (r.code !== 0) throw new Error(`creating the waypoint base image ${HOSTFS_IMAGE} with podman failed: ${r.stderr.trim()} — is podman installed (make setup)?`);
}

/**
 * The waypoint pod template of the local cluster: the waypoint image (`from: 'image'`), or the
 * waypoint from this checkout on the host's runtime (`'hostfs'`). `proc` is a benchmark's Node flags
 * and process environment in place of the waypoint's own (WAYPOINT_NODE_FLAGS, WAYPOINT_PROCESS_ENV).
 */
export function localWaypointTemplate(
  stateDir: string,
  logLevel = 'info',
  from: 'image' | 'hostfs' = 'hostfs',
  proc: { nodeFlags?: readonly string[]; env?: Readonly<Record<string, string>> } = {},
): WaypointTemplate {
  const sockets = join(stateDir, 'controller-sockets');
  mkdirSync(sockets, { recursive: true });
  mkdirSync(l7FlowsDir(stateDir), { recursive: true });
  const env = {
    MESH_CONTROLLER: `unix:${SOCKETS_IN_POD}/xds.sock`,
    MESH_CA_ADDRESS: `unix:${SOCKETS_IN_POD}/ca.sock`,
    MESH_CONTROLLER_NAME: 'mesh-controller.mesh-system.svc',
    MESH_LOG_LEVEL: logLevel,
    // $(MESH_NODE_NAME) is expanded by the kubelet from the variable the deployer sets before it.
    MESH_L7_FLOWS_SOCKET: `${L7_IN_POD}/$(MESH_NODE_NAME).sock`,
    // A benchmark's process environment (WAYPOINT_PROCESS_ENV's keys; '' unsets one).
    ...proc.env,
  };
  const flags = proc.nodeFlags ? { nodeFlags: proc.nodeFlags } : {};
  if (from === 'image') {
    // The image's own entrypoint and user; only the sockets come from the host.
    const mounts = [
      { name: 'mesh-sockets', path: sockets, inPod: SOCKETS_IN_POD },
      { name: 'mesh-l7-flows', path: l7FlowsDir(stateDir), inPod: L7_IN_POD },
    ];
    return {
      image: WAYPOINT_IMAGE,
      imagePullPolicy: 'Never',
      command: [],
      ...flags,
      env,
      volumes: mounts.map((m) => ({ name: m.name, hostPath: { path: m.path, type: 'Directory' } })),
      volumeMounts: mounts.map((m) => ({ name: m.name, mountPath: m.inPod, readOnly: m.name !== 'mesh-sockets' })),
    };
  }
  const nodeBin = realpathSync(process.execPath);
  const mounts: { name: string; path: string }[] = [
    { name: 'host-usr', path: '/usr' },
    { name: 'host-lib', path: '/lib' },
    { name: 'host-lib64', path: '/lib64' },
    { name: 'mesh-source', path: REPO },
    { name: 'mesh-sockets', path: sockets },
    // Every node's agent takes L7 flows at <state dir>/l7-flows/<node>.sock (meshSettingsEnv);
    // only that directory is mounted, not the nodes' own (their tokens are there).
    { name: 'mesh-l7-flows', path: l7FlowsDir(stateDir) },
  ];
  // node_modules may be a link out of the checkout (a git worktree's); Node.js may live outside /usr.
  const modules = realpathSync(join(REPO, 'node_modules'));
  if (!modules.startsWith(`${REPO}/`)) mounts.push({ name: 'mesh-modules', path: modules });
  const nodeDir = dirname(nodeBin);
  if (!nodeDir.startsWith('/usr/') && !nodeDir.startsWith(`${REPO}/`) && !nodeDir.startsWith(`${modules}/`)) mounts.push({ name: 'node-runtime', path: nodeDir });
  const volumes: k8s.V1Volume[] = mounts.map((m) => ({ name: m.name, hostPath: { path: m.path, type: 'Directory' } }));
  const inPod: Record<string, string> = { 'mesh-sockets': SOCKETS_IN_POD, 'mesh-l7-flows': L7_IN_POD };
  const volumeMounts: k8s.V1VolumeMount[] = mounts.map((m) => ({ name: m.name, mountPath: inPod[m.name] ?? m.path, readOnly: m.name !== 'mesh-sockets' }));
  return {
    image: HOSTFS_IMAGE,
    imagePullPolicy: 'Never',
    command: [nodeBin],
    entry: WAYPOINT_MAIN,
    ...flags,
    env,
    volumes,
    volumeMounts,
  };
}

/** Forwards the controller's config stream and CA into unix sockets for the waypoint pods. */
export async function forwardControllerSockets(stateDir: string, ports: { xds: number; ca: number }): Promise<() => Promise<void>> {
  const dir = join(stateDir, 'controller-sockets');
  mkdirSync(dir, { recursive: true });
  const servers: net.Server[] = [];
  for (const [file, port] of [
    ['xds.sock', ports.xds],
    ['ca.sock', ports.ca],
  ] as const) {
    const path = join(dir, file);
    rmSync(path, { force: true });
    const server = net.createServer((client) => {
      const up = net.connect({ host: '127.0.0.1', port });
      client.pipe(up).pipe(client);
      const end = () => {
        client.destroy();
        up.destroy();
      };
      client.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
    // The waypoint image runs as uid 1337, and connecting needs write permission on the socket;
    // only waypoint pods get this directory mounted.
    chmodSync(path, 0o666);
    servers.push(server);
  }
  return async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  };
}

// The node's CNI chain, run as a container runtime runs it (libcni's ExecPlugin): at sandbox
// creation every plugin of the node's primary conflist gets ADD in turn, with the network's name
// and version and the previous plugin's result on stdin; at teardown DEL in reverse. The first
// plugin is the local cluster's own network (the kubelet made the veth and addresses itself,
// topology.ts), so its result is written from the pod's PodNet; whatever an installer chained
// after it — the mesh's CNI plugin, which the chart's `mesh-cni` DaemonSet installs — runs for
// real: the node's binary, in the node's netns (a runtime runs plugins in the host netns, which
// reaches the API server through the `kubernetes` Service), with the node-local host paths of its
// config resolved into the node's own root (noderoot.ts), as hostPath volumes are.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { primaryConfFile } from '../../cni/index.ts';
import { NETNS_DIR } from '../host.ts';
import type { PodNet } from '../topology.ts';
import type { NodeRoot } from './noderoot.ts';
import { systemTool } from '../run.ts';

/** The primary plugin's type: the network the local kubelet sets up itself. */
export const LOCAL_NETWORK_TYPE = 'mesh-local-network';
/** The node's primary conflist, lexically first as a CNI's own file usually is. */
export const LOCAL_CONFLIST = '10-mesh-local.conflist';
const CONF_DIR = '/etc/cni/net.d';
const BIN_DIR = '/opt/cni/bin';
const CNI_VERSION = '1.0.0';
/** A plugin that has not answered by then is killed (kubelet's CRI call has a similar deadline). */
const PLUGIN_TIMEOUT_MS = 60_000;

/** Writes the node's primary conflist (the local network), which installers chain onto. */
export function writeLocalConflist(root: NodeRoot): void {
  const file = join(root.resolve(CONF_DIR), LOCAL_CONFLIST);
  if (existsSync(file)) return; // an installer may have chained onto it: never overwrite
  writeFileSync(file, `${JSON.stringify({ cniVersion: CNI_VERSION, name: 'mesh-local', plugins: [{ type: LOCAL_NETWORK_TYPE }] }, null, 2)}\n`);
}

export class CniChainError extends Error {
  readonly code = 'MESH_ERR_LOCAL_CNI';
}

interface Conflist {
  cniVersion?: string;
  name?: string;
  plugins?: Record<string, unknown>[];
}

/** The chain a pod's sandbox went through, to be torn down with it. */
export interface ChainRun {
  conflist: Conflist;
  /** The plugins after the local network that ADD ran (DEL runs them in reverse). */
  plugins: Record<string, unknown>[];
  prevResult: Record<string, unknown>;
}

/** The chained plugins of the node's primary conflist (after the local network), or none. */
export function chainedPlugins(root: NodeRoot): { conflist: Conflist; plugins: Record<string, unknown>[] } | undefined {
  const dir = root.resolve(CONF_DIR);
  const file = existsSync(dir) ? primaryConfFile(readdirSync(dir)) : undefined;
  if (!file) return undefined;
  let conflist: Conflist;
  try {
    conflist = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Conflist;
  } catch (e) {
    throw new CniChainError(`the node's CNI configuration ${join(CONF_DIR, file)} is not JSON: ${(e as Error).message}`);
  }
  const plugins = (conflist.plugins ?? []).filter((p) => p['type'] !== LOCAL_NETWORK_TYPE);
  return plugins.length ? { conflist, plugins } : undefined;
}

/**
 * The pod's netns path as containerd and CRI-O name it, under /var/run/netns (on the host the
 * same file as /run/netns/…): the chart mounts the host's /var/run/netns into the node pod, so
 * the agent and ztunnel open the path the plugin passes them.
 */
function cniNetns(net: PodNet): string {
  return net.netnsPath.startsWith(`${NETNS_DIR}/`) ? `/var/run/netns/${net.netnsPath.slice(NETNS_DIR.length + 1)}` : net.netnsPath;
}

/** What the local network plugin would have returned: the pod's eth0 and its addresses. */
function localResult(net: PodNet): Record<string, unknown> {
  return {
    cniVersion: CNI_VERSION,
    interfaces: [{ name: 'eth0', sandbox: cniNetns(net) }],
    ips: [
      { address: `${net.ip4}/32`, interface: 0 },
      ...(net.ip6 ? [{ address: `${net.ip6}/128`, interface: 0 }] : []),
    ],
  };
}

/** Node-local host paths in a plugin's config resolved into the node's root (hostPath's rule). */
function resolvePaths(v: unknown, root: NodeRoot): unknown {
  if (typeof v === 'string') return v.startsWith('/') ? root.resolve(v) : v;
  if (Array.isArray(v)) return v.map((x) => resolvePaths(x, root));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolvePaths(x, root)]));
  return v;
}

interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

/** Runs one plugin binary: env in, config on stdin, JSON out; a failure carries the plugin's error. */
function execPlugin(root: NodeRoot, nodeNetnsPath: string, plugin: Record<string, unknown>, stdin: Record<string, unknown>, env: Record<string, string>): Promise<Record<string, unknown>> {
  const type = String(plugin['type'] ?? '');
  const bin = join(root.resolve(BIN_DIR), type);
  if (!/^[\w.-]+$/.test(type) || !existsSync(bin)) {
    return Promise.reject(new CniChainError(`CNI plugin '${type}' of the node's conflist is not in ${BIN_DIR} (${bin})`));
  }
  return new Promise((resolve, reject) => {
    const child = spawn(systemTool('nsenter', 'util-linux'), [`--net=${nodeNetnsPath}`, bin], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', CNI_PATH: root.resolve(BIN_DIR), ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: PLUGIN_TIMEOUT_MS,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdin.on('error', () => {});
    child.on('error', (e) => reject(new CniChainError(`CNI plugin ${type}: ${e.message}`)));
    child.on('close', (code, signal) => {
      let parsed: Record<string, unknown> = {};
      try {
        parsed = out.trim() ? (JSON.parse(out) as Record<string, unknown>) : {};
      } catch {
        // not JSON: reported below with the raw output
      }
      if (code === 0) return resolve(parsed);
      // The CNI error result: {code, msg, details} (CNI spec, "Error").
      const msg = typeof parsed['msg'] === 'string' ? `${parsed['msg']}${parsed['details'] ? ` (${String(parsed['details'])})` : ''}` : out.trim() || err.trim() || `exit ${code ?? signal}`;
      reject(new CniChainError(`CNI plugin ${type} ${env['CNI_COMMAND']} failed: ${msg}`));
    });
    child.stdin.end(JSON.stringify(resolvePaths(stdin, root)));
  });
}

function envFor(command: 'ADD' | 'DEL', pod: PodRef, net: PodNet): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: net.netns,
    CNI_NETNS: cniNetns(net),
    CNI_IFNAME: 'eth0',
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${net.netns};K8S_POD_UID=${pod.uid}`,
  };
}

/**
 * ADD through the node's chained plugins for a pod whose sandbox (netns, addresses) is made.
 * Undefined when nothing is chained; throws the failing plugin's error (the caller retries, as
 * kubelet retries a sandbox whose CNI ADD failed, and starts no container meanwhile).
 */
export async function cniAdd(root: NodeRoot, nodeNetnsPath: string, pod: PodRef, net: PodNet): Promise<ChainRun | undefined> {
  const chain = chainedPlugins(root);
  if (!chain) return undefined;
  let prevResult = localResult(net);
  const ran: Record<string, unknown>[] = [];
  for (const p of chain.plugins) {
    const stdin = { ...p, name: chain.conflist.name, cniVersion: chain.conflist.cniVersion ?? CNI_VERSION, prevResult };
    prevResult = await execPlugin(root, nodeNetnsPath, p, stdin, envFor('ADD', pod, net));
    ran.push(p);
  }
  return { conflist: chain.conflist, plugins: ran, prevResult };
}

/** DEL through the plugins that ADD ran, last first (errors are the caller's to log). */
export async function cniDel(root: NodeRoot, nodeNetnsPath: string, pod: PodRef, net: PodNet, run: ChainRun): Promise<void> {
  for (const p of [...run.plugins].reverse()) {
    const stdin = { ...p, name: run.conflist.name, cniVersion: run.conflist.cniVersion ?? CNI_VERSION, prevResult: run.prevResult };
    await execPlugin(root, nodeNetnsPath, p, stdin, envFor('DEL', pod, net));
  }
}

// Running the fixture programs (test/fixtures) inside test pods.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { type NodeNet, type PodNet, run, type Topology } from '../../src/local/index.ts';
import type { StandinReply } from './standin.ts';

const NODE = process.execPath;
const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));

export interface AppReply {
  listener: 'app';
  name: string;
  local: string;
  remote: string;
}

export interface ClientResult {
  target: string;
  cookie?: string | null;
  reply?: AppReply | StandinReply;
  error?: string;
}

/** Starts the app server in a pod on the given ports and waits until it listens. */
export async function startApp(topo: Topology, pod: PodNet, ports: number[]): Promise<ChildProcess> {
  const child = topo.spawn(pod, NODE, [fixture('app-server.cjs'), pod.name, ...ports.map(String)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout!.setEncoding('utf8');
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`app in ${pod.netns} exited with ${code} before it was ready`);
  });
  await Promise.race([once(child.stdout!, 'data'), exited]);
  return child;
}

/** Connects from inside a pod (its netns and cgroup) to each target ("host:port[:mark]"). */
export async function connectFrom(topo: Topology, pod: PodNet, targets: string[]): Promise<ClientResult[]> {
  const r = await topo.exec(pod, NODE, [fixture('client.cjs'), ...targets], { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`client in ${pod.netns} failed (${r.code}): ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ClientResult);
}

/**
 * Connects from a node's network namespace, as the node's own processes do (kubelet, a
 * hostNetwork pod), to each target; a link-local target names the node's veth as its scope
 * ("[fe80::…%v0]:8080"). The client runs in no pod's cgroup, so no capture applies to it.
 */
export async function connectFromNode(node: NodeNet, targets: string[]): Promise<ClientResult[]> {
  const out = await run('ip', ['netns', 'exec', node.netns, NODE, fixture('client.cjs'), ...targets]);
  return out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ClientResult);
}

/** IPv6 literal in host:port form. */
export function hp(host: string, port: number, mark?: number): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return mark === undefined ? `${h}:${port}` : `${h}:${port}:${mark}`;
}

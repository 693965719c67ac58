// The mesh CNI plugin (Istio's istio-cni plugin, in our terms): chained after the node's primary
// CNI plugin, it enrols a pod of an ambient namespace at sandbox creation — before its first
// instruction — and waits until ztunnel serves it, so that no connection of the pod precedes
// capture. Fail closed: when the agent cannot be reached, ADD fails and the pod does not start
// outside the mesh (the runtime retries the sandbox). Pods of other namespaces pass straight through.
import { AgentRefused, AgentUnreachable, agentRequest } from './agent-client.ts';
import { cniAddRequest, type MeshPodMeta, podInMesh, requireServed } from './enrol.ts';
import { type KubeTarget, kubeGet, readKubeconfig } from './kube.ts';
import { CniError, CODES, type CniResult, type Invocation, type NetConf, passThrough, podAddresses, versionResult } from './protocol.ts';

/** Our entry in the conflist (the installer writes it; see src/cni/conflist.ts). */
export interface PluginConfig {
  /** The agent's control socket (MESH_AGENT_SOCKET), a hostPath the installer and agent share. */
  agentSocket: string;
  /** Written by the installer: the API server and a token of the mesh-node service account. */
  kubeconfig: string;
  /** Namespaces never enrolled, without asking the API (the mesh's own, kube-system). */
  excludeNamespaces: readonly string[];
  /** How long ADD waits for ztunnel to serve the pod; 0 enrols without waiting. */
  waitZtunnelMs: number;
  /** How long each Kubernetes API call may take. */
  apiTimeoutMs: number;
}

const KNOWN = new Set(['cniVersion', 'name', 'type', 'prevResult', 'runtimeConfig', 'args', 'capabilities', 'agentSocket', 'kubeconfig', 'excludeNamespaces', 'waitZtunnelMs', 'apiTimeoutMs', 'cni.dev/valid-attachments', 'cni.dev/attachments']);

export const DEFAULTS = Object.freeze({
  agentSocket: '/var/run/mesh/agent.sock',
  kubeconfig: '/etc/cni/net.d/mesh-cni-kubeconfig',
  // ztunnel opens a pod's listeners in ~10 ms; 5 s covers a ztunnel that is restarting (its
  // start is ~0.5 s) without holding a sandbox long when something is really wrong.
  waitZtunnelMs: 5000,
  // The API answers in milliseconds; a node that cannot reach it for 5 s should retry later.
  apiTimeoutMs: 5000,
});

/** Validates our entry; unknown keys are refused (a typo would silently keep a default). */
export function pluginConfig(conf: NetConf): PluginConfig {
  const unknown = Object.keys(conf).filter((k) => !KNOWN.has(k));
  if (unknown.length) throw new CniError(CODES.UNSUPPORTED_FIELD, `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} in the ${conf.type} entry (known: agentSocket, kubeconfig, excludeNamespaces, waitZtunnelMs, apiTimeoutMs)`);
  const str = (k: 'agentSocket' | 'kubeconfig') => {
    const v = conf[k] ?? DEFAULTS[k];
    if (typeof v !== 'string' || v === '') throw new CniError(CODES.INVALID_CONFIG, `${k} must be a non-empty string`);
    return v;
  };
  const ms = (k: 'waitZtunnelMs' | 'apiTimeoutMs') => {
    const v = conf[k] ?? DEFAULTS[k];
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 600_000) throw new CniError(CODES.INVALID_CONFIG, `${k} must be an integer number of milliseconds in 0–600000`);
    return v as number;
  };
  const ex = conf['excludeNamespaces'] ?? [];
  if (!Array.isArray(ex) || !ex.every((n) => typeof n === 'string')) throw new CniError(CODES.INVALID_CONFIG, 'excludeNamespaces must be a list of namespace names');
  return { agentSocket: str('agentSocket'), kubeconfig: str('kubeconfig'), excludeNamespaces: ex as string[], waitZtunnelMs: ms('waitZtunnelMs'), apiTimeoutMs: ms('apiTimeoutMs') };
}

export type KubePod = MeshPodMeta;
export interface KubeNamespace {
  metadata?: { name?: string; labels?: Record<string, string> };
}

const LABEL = 'mesh.io/dataplane-mode';

/** What the plugin needs from the outside world; the tests give fakes. */
export interface Deps {
  namespace(name: string): Promise<KubeNamespace | undefined>;
  pod(namespace: string, name: string): Promise<KubePod | undefined>;
  agent(req: Record<string, unknown>, timeoutMs: number): Promise<unknown>;
}

export function realDeps(cfg: PluginConfig): Deps {
  let target: KubeTarget | undefined;
  const kube = () => (target ??= readKubeconfig(cfg.kubeconfig));
  return {
    namespace: (name) => kubeGet<KubeNamespace>(kube(), `/api/v1/namespaces/${encodeURIComponent(name)}`, cfg.apiTimeoutMs),
    pod: (ns, name) => kubeGet<KubePod>(kube(), `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`, cfg.apiTimeoutMs),
    agent: (req, timeoutMs) => agentRequest(cfg.agentSocket, req, timeoutMs),
  };
}

/** Why a pod is (or is not) for the mesh; `pod` is set when it is. */
interface Decision {
  pod?: KubePod;
  why: string;
}

async function decide(inv: Invocation, cfg: PluginConfig, deps: Deps): Promise<Decision> {
  const ns = inv.args['K8S_POD_NAMESPACE'];
  const name = inv.args['K8S_POD_NAME'];
  if (!ns || !name) return { why: 'not a Kubernetes pod (no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS)' };
  if (cfg.excludeNamespaces.includes(ns)) return { why: `namespace ${ns} is excluded` };
  const namespace = await deps.namespace(ns);
  if (!namespace) throw new CniError(CODES.KUBE_API, `namespace ${ns} of pod ${ns}/${name} was not found in the API`);
  if (namespace.metadata?.labels?.[LABEL] !== 'ambient') return { why: `namespace ${ns} is not labelled ${LABEL}=ambient` };
  const pod = await deps.pod(ns, name);
  if (!pod) throw new CniError(CODES.CONTAINER_UNKNOWN, `pod ${ns}/${name} was not found in the API`);
  const uid = inv.args['K8S_POD_UID'];
  if (uid && pod.metadata?.uid && uid !== pod.metadata.uid) {
    // The name now belongs to a newer pod: this sandbox is for one that is gone.
    throw new CniError(CODES.CONTAINER_UNKNOWN, `pod ${ns}/${name}: the API has uid ${pod.metadata.uid}, the runtime asked for ${uid} (the pod was replaced)`);
  }
  if (!podInMesh(pod, namespace.metadata?.labels ?? {})) return { why: pod.spec?.hostNetwork ? 'the pod uses the host network' : `the pod is labelled ${LABEL}=none` };
  return { pod, why: `namespace ${ns} is ambient` };
}

function agentError(e: unknown, pod: string, socket: string): CniError {
  if (e instanceof AgentUnreachable) {
    return new CniError(
      CODES.TRY_AGAIN_LATER,
      `pod ${pod} belongs in the mesh but the mesh agent cannot be reached (${e.message}); the pod does not start outside the mesh, and the runtime retries`,
      `Is the mesh node DaemonSet's agent running on this node and serving ${socket}? To start the pod without the mesh, label it ${LABEL}=none or its namespace off (kubectl label ns <ns> ${LABEL}-); to take the mesh out of pod creation entirely, remove the mesh-cni entry from the node's CNI conflist (uninstalling the chart does it).`,
    );
  }
  if (e instanceof AgentRefused) return new CniError(CODES.ENROL_FAILED, `the mesh agent could not enrol pod ${pod}: ${e.message}`, e.code);
  return e instanceof CniError ? e : new CniError(CODES.IO, (e as Error).message);
}

export interface Outcome {
  /** What goes to stdout (undefined: nothing, as for DEL and CHECK). */
  result?: unknown;
  /** One line for the runtime's log (stderr). */
  note: string;
}

export async function add(inv: Invocation, deps: Deps): Promise<Outcome> {
  const conf = inv.conf!;
  const result = passThrough(conf); // refuse an unchained config before anything else
  const cfg = pluginConfig(conf);
  const d = await decide(inv, cfg, deps);
  if (!d.pod) return { result, note: `passed through: ${d.why}` };
  const m = d.pod.metadata!;
  const who = `${m.namespace}/${m.name}`;
  const addresses = podAddresses(conf.prevResult);
  if (addresses.length === 0) throw new CniError(CODES.INVALID_CONFIG, `pod ${who}: the previous plugin's result has no IP address for the pod`);
  let reply: unknown;
  try {
    reply = await deps.agent(cniAddRequest(d.pod, { netnsPath: inv.netns, addresses }, cfg.waitZtunnelMs), cfg.waitZtunnelMs + 5000);
  } catch (e) {
    throw agentError(e, who, cfg.agentSocket);
  }
  // Failing ADD makes the runtime tear the sandbox down (DEL) and try again.
  const served = requireServed(reply, who, cfg.waitZtunnelMs);
  return { result, note: `enrolled ${who} (${addresses.join(', ')}); ${served}` };
}

/** The pod's uid for DEL: from CNI_ARGS, else from the API (best effort: the pod may be gone). */
async function uidFor(inv: Invocation, deps: Deps): Promise<string | undefined> {
  if (inv.args['K8S_POD_UID']) return inv.args['K8S_POD_UID'];
  const ns = inv.args['K8S_POD_NAMESPACE'];
  const name = inv.args['K8S_POD_NAME'];
  if (!ns || !name) return undefined;
  return (await deps.pod(ns, name).catch(() => undefined))?.metadata?.uid;
}

export async function del(inv: Invocation, deps: Deps): Promise<Outcome> {
  const cfg = pluginConfig(inv.conf!);
  const ns = inv.args['K8S_POD_NAMESPACE'];
  if (!ns || cfg.excludeNamespaces.includes(ns)) return { note: 'nothing to do' };
  const uid = await uidFor(inv, deps);
  if (!uid) return { note: 'nothing to do: the pod uid is unknown (not in CNI_ARGS, not in the API)' };
  try {
    const r = (await deps.agent({ op: 'unenrol', uid }, 5000)) as { removed?: boolean };
    return { note: r.removed ? `unenrolled ${uid}` : `${uid} was not enrolled` };
  } catch (e) {
    // DEL must not fail on what is already gone (spec: "plugins should generally complete a DEL
    // action without error even if some resources are missing"). An agent that is down drops the
    // pod itself when it starts again: its enrolment follows the model, and the pod is not in it.
    return { note: `could not tell the agent to unenrol ${uid} (${(e as Error).message}); it drops the pod when it next syncs` };
  }
}

interface Listed {
  uid: string;
  addresses: string[];
}

export async function check(inv: Invocation, deps: Deps): Promise<Outcome> {
  const conf = inv.conf!;
  passThrough(conf);
  const cfg = pluginConfig(conf);
  const d = await decide(inv, cfg, deps);
  const uid = d.pod?.metadata?.uid ?? inv.args['K8S_POD_UID'];
  const who = `${inv.args['K8S_POD_NAMESPACE']}/${inv.args['K8S_POD_NAME']}`;
  if (!d.pod && !uid) return { note: `not for the mesh (${d.why})` };
  let listed: Listed[];
  try {
    listed = (await deps.agent({ op: 'list' }, 5000)) as Listed[];
  } catch (e) {
    if (!d.pod) return { note: `not for the mesh (${d.why}); the agent is not reachable to confirm` };
    throw agentError(e, who, cfg.agentSocket);
  }
  const mine = listed.find((p) => p.uid === uid);
  if (d.pod && !mine) {
    throw new CniError(CODES.DRIFT, `pod ${who} should be in the mesh (${d.why}) but the agent has not enrolled it`, 'The agent enrols it again when it next syncs with the controller; if it does not, see the agent log (meshctl status).');
  }
  if (!d.pod && mine) throw new CniError(CODES.DRIFT, `pod ${who} is enrolled but should not be (${d.why})`);
  if (d.pod && mine) {
    const want = podAddresses(conf.prevResult).sort().join(',');
    const have = [...mine.addresses].sort().join(',');
    if (want && have !== want) throw new CniError(CODES.DRIFT, `pod ${who} is enrolled with addresses ${have}, but the network gave it ${want}`);
  }
  return { note: d.pod ? `${who} is enrolled, as it should be` : `${who} is not for the mesh` };
}

export async function status(inv: Invocation, deps: Deps): Promise<Outcome> {
  const cfg = pluginConfig(inv.conf!);
  try {
    await deps.agent({ op: 'status' }, 2000);
  } catch (e) {
    throw new CniError(CODES.NOT_AVAILABLE, `the mesh agent is not available: ${(e as Error).message}`);
  }
  return { note: `the agent at ${cfg.agentSocket} answers` };
}

/** Runs one invocation; CniError for what the runtime should hear. */
export async function runPlugin(inv: Invocation, deps?: Deps): Promise<Outcome> {
  if (inv.command === 'VERSION') return { result: versionResult(inv.conf), note: 'version' };
  const d = deps ?? realDeps(pluginConfig(inv.conf!));
  switch (inv.command) {
    case 'ADD':
      return add(inv, d);
    case 'DEL':
      return del(inv, d);
    case 'CHECK':
      return check(inv, d);
    case 'STATUS':
      return status(inv, d);
    case 'GC':
      // The agent's enrolment already follows the model; nothing of ours outlives a pod.
      return { note: 'nothing to collect' };
  }
}

export type { CniResult };

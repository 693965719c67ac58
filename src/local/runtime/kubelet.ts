// A small kubelet for one node of the local cluster. It registers its Node, runs the pods bound to
// it — each a network namespace with a routed veth, a cgroup named as kubelet's cgroupfs driver
// names it (pod<uid>), and its containers' commands as processes — and writes their status back.
// A container runs from an image in the local store with podman + runc (oci.ts), or as its
// `command` on this host (the demo's mode); chooseRuntime in oci.ts says which.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as k8s from '@kubernetes/client-node';
import { findCgroup2Mount } from '../../common/cgroup.ts';
import { logger } from '../../common/log.ts';
import { removeCgroup } from '../host.ts';
import type { NodeNet, PodNet, Topology } from '../topology.ts';
import { cgroupOomKills, Container, type ContainerEvent, type RestartPolicy } from './containers.ts';
import { EventRecorder } from './events.ts';
import type { HostsWriter } from './dns.ts';
import { podStatusParts } from './podstatus.ts';
import { ContainerProber } from './prober.ts';
import { pullLocal } from './images.ts';
import { type StopTarget, runPreStop, termGraceMs } from './lifecycle.ts';
import { chooseRuntime, exec as ociExec, killContainer, removeContainer, removeV1Tree, runArgs, runtimeError, stopContainer } from './oci.ts';
import { apiSources, containerEnv, fieldOf, ociSpec, unsupportedFields, unsupportedPodFields } from './podspec.ts';
import { containerLimits, podLimits, writeCgroupLimits } from './resources.ts';
import { type PreparedVolumes, prepareVolumes, removeVolumes, type VolumeSources, withServiceAccountVolume } from './volumes.ts';
import type { ApiServiceEnv } from './api-service.ts';
import type { NodeRoot } from './noderoot.ts';
import { type ChainRun, cniAdd, cniDel, writeLocalConflist } from './cni.ts';
import { ipBatch } from '../run.ts';
import { KUBERNETES_SERVICE_IP } from '../apiserver/index.ts';

const log = logger('kubelet');
const HEARTBEAT_MS = 10_000;
const STATUS_DEBOUNCE_MS = 50;
const INIT_POLL_MS = 100;
// A failed volume mount is tried again after 0.5 s, doubling up to 8 s.
const MOUNT_RETRY_MS = 500;
const MOUNT_RETRY_MAX_MS = 8000;
// A failed CNI ADD is tried again after 1 s, doubling up to 10 s (kubelet's sandbox backoff).
const CNI_RETRY_MS = 1000;
const CNI_RETRY_MAX_MS = 10_000;
// SIGTERM → SIGKILL when the whole cluster stops (dev down), whatever the pods' grace periods.
const STOP_GRACE_MS = 2000;

const namedPorts = (c: k8s.V1Container) => new Map((c.ports ?? []).filter((p) => p.name).map((p) => [p.name!, p.containerPort]));

interface StartContext {
  volumes: PreparedVolumes | undefined;
  volumeError: string;
  /** Sets the volumes up again (after a failed mount). */
  mount: () => Promise<PreparedVolumes>;
  src: VolumeSources;
  modes: Map<string, 'oci' | 'host'>;
}

/** Resolves true when the init container exits 0, false when it failed for good or the pod stops. */
async function completion(rt: PodRuntime, c: Container): Promise<boolean> {
  for (;;) {
    if (rt.stopped) return false;
    const state = c.st.state;
    if ('terminated' in state) return state.terminated.exitCode === 0;
    await sleep(INIT_POLL_MS);
  }
}

interface PodRuntime {
  uid: string;
  key: string;
  pod: k8s.V1Pod;
  net: PodNet | undefined; // undefined for hostNetwork pods
  cgroup: string;
  podIP: string;
  containers: Container[];
  /** Init containers made so far, in order (the last one may still run). */
  initContainers: Container[];
  /** runContainers in progress. */
  starting: Promise<void>;
  probers: Map<string, ContainerProber>;
  statusTimer: NodeJS.Timeout | undefined;
  startTime: string;
  stopped: boolean;
  /** Set while the pod terminates: kills what is left at once (force delete, shorter grace). */
  hurry: (() => void) | undefined;
  /** OCI container name by pod container name (host-command containers are absent). */
  ociNames: Map<string, string>;
  /** The node's chained CNI plugins that ADD ran for this sandbox (cni.ts), for DEL. */
  cni: ChainRun | undefined;
}

export interface KubeletOptions {
  kc: k8s.KubeConfig;
  topology: Topology;
  node: NodeNet;
  logDir: string;
  hosts: HostsWriter;
  /** Where pod volumes are made (<podsDir>/<uid>/volumes/<name>); default: beside logDir. */
  podsDir?: string;
  /** The node's own host directories, where node-local hostPaths resolve (noderoot.ts). */
  root?: NodeRoot;
  /** KUBERNETES_SERVICE_HOST/PORT for image containers, once the API is reachable from pods. */
  apiEnv?: () => ApiServiceEnv | undefined;
}

/** The podman name of a pod's container: unique per cluster, pod and container. */
export function ociName(clusterPrefix: string, uid: string, container: string): string {
  return `${clusterPrefix}_${uid}_${container}`.replace(/[^a-zA-Z0-9_.-]/g, '-');
}

/** The netns-name part for a pod: `<namespace>-<name>`, shortened with a hash when too long. */
export function sandboxName(namespace: string, name: string): string {
  const full = `${namespace}-${name}`;
  if (full.length <= 32) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 8);
  return `${full.slice(0, 23).replace(/-+$/, '')}-${hash}`;
}

export function containerLogPath(logDir: string, namespace: string, pod: string, container: string): string {
  return join(logDir, `${namespace}_${pod}_${container}.log`);
}

export class Kubelet {
  readonly node: NodeNet;
  private readonly opts: KubeletOptions;
  private readonly core: k8s.CoreV1Api;
  private readonly events: EventRecorder;
  private readonly podsDir: string;
  private readonly pods = new Map<string, PodRuntime>();
  private readonly pending = new Map<string, Promise<void>>();
  private readonly draining = new Map<string, Promise<void>>(); // "ns/name" → its teardown
  private heartbeat: NodeJS.Timeout | undefined;
  private stopping = false;
  /**
   * Runs once a pod's sandbox (netns, address, cgroup) exists and before its containers start —
   * where a CNI plugin chain runs on a real node. The mesh uses it as Istio's CNI plugin does: to
   * enrol an ambient pod before its first instruction, so no connection of it precedes capture.
   * A hook that fails is logged and the pod starts (the mesh enrols it later, fail closed).
   */
  sandboxHook: ((pod: k8s.V1Pod, net: PodNet) => Promise<void>) | undefined;

  constructor(opts: KubeletOptions) {
    this.opts = opts;
    this.node = opts.node;
    this.core = opts.kc.makeApiClient(k8s.CoreV1Api);
    this.events = new EventRecorder(this.core, 'kubelet', opts.node.name);
    this.podsDir = opts.podsDir ?? join(dirname(opts.logDir), 'pods');
    mkdirSync(opts.logDir, { recursive: true });
  }

  /** Registers (or re-registers) the Node object and keeps its Ready condition fresh. */
  async start(): Promise<void> {
    const n = this.node;
    await this.opts.root?.prepare();
    if (this.opts.root) {
      writeLocalConflist(this.opts.root);
      // The node's own processes (the CNI plugins it runs, with the installer's kubeconfig naming
      // https://10.96.0.1) reach the API server's ClusterIP as a real node's do: a route for the
      // connect() to find (a node has no default route here); the node's output DNAT does the rest.
      await ipBatch([`route replace ${KUBERNETES_SERVICE_IP}/32 dev eth0`], this.node.netns);
    }
    const body: k8s.V1Node = {
      metadata: { name: n.name, labels: { 'kubernetes.io/hostname': n.name, 'kubernetes.io/os': 'linux' } },
      spec: { podCIDR: n.podCidr4, podCIDRs: [n.podCidr4, ...(n.podCidr6 ? [n.podCidr6] : [])] },
    };
    await this.core.createNode({ body }).catch(async (e: { code?: number }) => {
      if (e.code !== 409) throw e;
    });
    await this.writeNodeStatus();
    this.heartbeat = setInterval(() => {
      this.writeNodeStatus().catch((e: Error) => log.warn({ node: n.name, err: e.message }, 'node heartbeat failed'));
    }, HEARTBEAT_MS);
  }

  private async writeNodeStatus(): Promise<void> {
    const now = new Date().toISOString();
    const n = this.node;
    const status: k8s.V1NodeStatus = {
      addresses: [
        { type: 'InternalIP', address: n.ip4 },
        ...(n.ip6 ? [{ type: 'InternalIP', address: n.ip6 }] : []),
        { type: 'Hostname', address: n.name },
      ],
      conditions: [
        { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'local cluster kubelet is posting ready status', lastHeartbeatTime: now as unknown as Date, lastTransitionTime: now as unknown as Date },
      ],
      nodeInfo: {
        kubeletVersion: 'v1.32.0-mesh-local',
        kubeProxyVersion: 'v1.32.0-mesh-local',
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        operatingSystem: 'linux',
        containerRuntimeVersion: 'mesh-local://processes',
        kernelVersion: (await import('node:os')).release(),
        osImage: 'host',
        machineID: '',
        systemUUID: '',
        bootID: '',
      },
    };
    await this.core.patchNodeStatus({ name: n.name, body: { status } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
  }

  /** Called for every change of a pod bound to this node (or its deletion). Serialized per pod. */
  podChanged(pod: k8s.V1Pod, deleted: boolean): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    // A pod recreated under the same name (a StatefulSet's, or `kubectl delete` then `apply`)
    // reuses its sandbox's name: it starts after the old one's teardown, not during it.
    const name = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
    const going = deleted || Boolean(pod.metadata?.deletionTimestamp);
    // A force delete (or a shorter grace period) while the pod terminates cuts the wait short.
    const rt = this.pods.get(uid);
    if (going && rt?.hurry && (deleted || (pod.metadata?.deletionGracePeriodSeconds ?? 0) < (rt.pod.metadata?.deletionGracePeriodSeconds ?? Infinity))) rt.hurry();
    const prev = this.pending.get(uid) ?? this.draining.get(name) ?? Promise.resolve();
    const next = prev
      .then(() => (going ? this.terminate(pod, deleted) : this.sync(pod)))
      .catch((e: Error) => log.error({ pod: name, err: e.message }, 'pod sync failed'));
    this.pending.set(uid, next);
    if (going) this.draining.set(name, next);
    void next.then(() => {
      if (this.pending.get(uid) === next) this.pending.delete(uid);
      if (this.draining.get(name) === next) this.draining.delete(name);
    });
  }

  /** The running pods, for status and logs. */
  runtimes(): { key: string; uid: string; podIP: string; netns: string | undefined; cgroup: string; pids: number[] }[] {
    return [...this.pods.values()].map((r) => ({
      key: r.key,
      uid: r.uid,
      podIP: r.podIP,
      netns: r.net?.netns,
      cgroup: r.cgroup,
      pids: [...r.initContainers, ...r.containers].flatMap((c) => (c.pid ? [c.pid] : [])),
    }));
  }

  /** A container of a pod on this node (by pod UID), for logs and exec (streaming.ts). */
  container(uid: string, name: string): Container | undefined {
    const rt = this.pods.get(uid);
    return rt?.containers.find((c) => c.name === name) ?? rt?.initContainers.find((c) => c.name === name);
  }

  private async sync(stored: k8s.V1Pod): Promise<void> {
    let pod = stored;
    const uid = pod.metadata!.uid!;
    const existing = this.pods.get(uid);
    if (existing) {
      existing.pod = pod;
      return;
    }
    const ns = pod.metadata!.namespace ?? 'default';
    const name = pod.metadata!.name!;
    const hostNetwork = pod.spec?.hostNetwork === true;
    let net: PodNet | undefined;
    let cgroup: string;
    if (hostNetwork) {
      cgroup = join(this.opts.topology.cgroupParent, `pod${uid}`);
      mkdirSync(cgroup, { recursive: true });
    } else {
      net = await this.opts.topology.addPod(this.node, sandboxName(ns, name), { uid });
      cgroup = net.cgroup;
      this.opts.hosts.addPod(net.netns, { ip: net.ip4, hostname: name, namespace: ns });
      if (this.sandboxHook) {
        const t0 = Date.now();
        await this.sandboxHook(pod, net).then(
          () => log.debug({ pod: `${ns}/${name}`, ms: Date.now() - t0 }, 'sandbox hook done'),
          (e: Error) => log.warn({ pod: `${ns}/${name}`, err: e.message }, 'sandbox hook failed; starting the pod anyway'),
        );
      }
    }
    const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
    const modes = new Map(await Promise.all(all.map(async (c) => [c.name, await chooseRuntime(c)] as const)));
    // Image containers get their service account's credentials (host commands have the host's).
    if (all.length && all.every((c) => modes.get(c.name) === 'oci')) pod = withServiceAccountVolume(pod, await this.automountToken(pod));
    const rt: PodRuntime = {
      uid,
      key: `${ns}/${name}`,
      pod,
      net,
      cgroup,
      podIP: net?.ip4 ?? this.node.ip4,
      containers: [],
      initContainers: [],
      starting: Promise.resolve(),
      probers: new Map(),
      statusTimer: undefined,
      startTime: new Date().toISOString(),
      stopped: false,
      hurry: undefined,
      ociNames: new Map(),
      cni: undefined,
    };
    this.pods.set(uid, rt);
    const podRef = { apiVersion: 'v1', kind: 'Pod', metadata: pod.metadata };
    const src = apiSources(this.core, fieldOf(pod, rt.podIP, this.node.ip4));
    const podDir = join(this.podsDir, uid);
    let volumes: PreparedVolumes | undefined;
    let volumeError = '';
    const mounted = pod;
    const mount = () => prepareVolumes(mounted, podDir, src, (p) => this.opts.root?.resolve(p) ?? p);
    try {
      volumes = await mount();
    } catch (e) {
      volumeError = (e as Error).message;
      void this.events.record(podRef, 'Warning', 'FailedMount', volumeError);
    }
    const ignored = [...unsupportedPodFields(pod), ...(volumes?.unsupported ?? []), ...all.flatMap((c) => unsupportedFields(pod, c, modes.get(c.name) === 'oci'))];
    // Host commands share the pod's cgroup: it gets their limits (resources.ts).
    const hostContainers = (pod.spec?.containers ?? []).filter((c) => modes.get(c.name) === 'host');
    if (hostContainers.some((c) => c.resources?.limits || c.resources?.requests)) {
      const missing = writeCgroupLimits(findCgroup2Mount(), cgroup, podLimits(hostContainers.map((c) => containerLimits(c, '').limits)));
      for (const m of missing) ignored.push(...hostContainers.filter((c) => Object.keys({ ...c.resources?.limits, ...c.resources?.requests }).some((k) => m.includes(`.${k} `))).map((c) => `spec.containers{${c.name}}.${m}`));
    }
    if (ignored.length) {
      void this.events.record(podRef, 'Warning', 'FieldNotHonoured', `The local cluster's kubelet does not honour: ${ignored.join(', ')}`);
    }
    // Not awaited: init containers may run for long, and a delete must not wait behind them.
    rt.starting = this.runContainers(rt, { volumes, volumeError, mount, src, modes }).catch((e: Error) => log.error({ pod: rt.key, err: e.message }, 'starting containers failed'));
    log.info({ pod: rt.key, podIP: rt.podIP, netns: net?.netns ?? '(host network)' }, 'pod started');
    this.scheduleStatus(rt);
  }

  /**
   * The init containers one after another, each to a successful exit (restarted on failure with
   * backoff unless restartPolicy is Never, which fails the pod), then the containers together.
   */
  private async runContainers(rt: PodRuntime, ctx: StartContext): Promise<void> {
    const policy = (rt.pod.spec?.restartPolicy ?? 'Always') as RestartPolicy;
    // The node's CNI chain (cni.ts) before any container: a plugin chained there (the mesh's)
    // may have to see the sandbox first. A failed ADD is retried and no container starts
    // meanwhile, as kubelet does with a sandbox whose network setup failed.
    if (rt.net && this.opts.root) {
      const root = this.opts.root;
      const net = rt.net;
      const ref = { namespace: rt.pod.metadata?.namespace ?? 'default', name: rt.pod.metadata!.name!, uid: rt.uid };
      let last = '';
      for (let waitMs = CNI_RETRY_MS; !rt.stopped; waitMs = Math.min(waitMs * 2, CNI_RETRY_MAX_MS)) {
        try {
          const t0 = Date.now();
          rt.cni = await cniAdd(root, this.node.netnsPath, ref, net);
          if (rt.cni) log.debug({ pod: rt.key, ms: Date.now() - t0, plugins: rt.cni.plugins.map((p) => p['type']) }, 'CNI ADD done');
          break;
        } catch (e) {
          const msg = (e as Error).message;
          log.warn({ pod: rt.key, err: msg, retryMs: waitMs }, 'CNI ADD failed; no container starts until it succeeds');
          if (msg !== last) void this.events.record({ apiVersion: 'v1', kind: 'Pod', metadata: rt.pod.metadata }, 'Warning', 'FailedCreatePodSandBox', `Failed to set up the pod's network (CNI ADD): ${msg}`);
          last = msg;
          await sleep(waitMs);
        }
      }
      if (rt.stopped) return;
    }
    // A failed mount is retried, as kubelet's volume manager does: a ConfigMap or Secret may
    // appear later (the node pods wait for the trust bundle the mesh's controller publishes).
    for (let waitMs = MOUNT_RETRY_MS; ctx.volumeError && !rt.stopped; waitMs = Math.min(waitMs * 2, MOUNT_RETRY_MAX_MS)) {
      await sleep(waitMs);
      if (rt.stopped) return;
      try {
        ctx.volumes = await ctx.mount();
        ctx.volumeError = '';
      } catch (e) {
        if ((e as Error).message !== ctx.volumeError) void this.events.record({ apiVersion: 'v1', kind: 'Pod', metadata: rt.pod.metadata }, 'Warning', 'FailedMount', (e as Error).message);
        ctx.volumeError = (e as Error).message;
      }
    }
    for (const c of rt.pod.spec?.initContainers ?? []) {
      const container = await this.makeContainer(rt, c, ctx, policy === 'Never' ? 'Never' : 'OnFailure', true);
      if (!container || !(await completion(rt, container))) return;
    }
    for (const c of rt.pod.spec?.containers ?? []) {
      if (!(await this.makeContainer(rt, c, ctx, policy, false))) return;
    }
    this.scheduleStatus(rt);
  }

  /** Makes container `c` and starts it (or leaves it waiting with its reason); undefined once the pod stops. */
  private async makeContainer(rt: PodRuntime, c: k8s.V1Container, ctx: StartContext, policy: RestartPolicy, init: boolean): Promise<Container | undefined> {
    const { namespace: ns = 'default', name = '', uid = '' } = rt.pod.metadata ?? {};
    const podRef = { apiVersion: 'v1', kind: 'Pod', metadata: rt.pod.metadata };
    const record: ContainerEvent = (type, reason, message) => void this.events.record(podRef, type, reason, message, `spec.${init ? 'initContainers' : 'containers'}{${c.name}}`);
    const mode = ctx.modes.get(c.name) ?? 'host';
    const logPath = containerLogPath(this.opts.logDir, ns, name, c.name);
    const onChange = () => this.scheduleStatus(rt);
    const list = init ? rt.initContainers : rt.containers;
    const add = (container: Container, start: boolean): Container | undefined => {
      if (rt.stopped) return undefined;
      list.push(container);
      if (start) container.start();
      if (!init) this.startProbes(rt, c, container);
      onChange();
      return container;
    };
    let env: Record<string, string>;
    try {
      if (ctx.volumeError) throw new Error(ctx.volumeError);
      env = await containerEnv(c, ns, mode === 'oci' ? { HOSTNAME: name, ...this.opts.apiEnv?.() } : { PATH: process.env.PATH ?? '', HOSTNAME: name, HOME: '/root' }, ctx.src);
    } catch (e) {
      const container = new Container({ name: c.name, command: [], env: {}, logPath, policy, launch: () => { throw new Error('not started'); }, onChange });
      container.fail('CreateContainerConfigError', (e as Error).message);
      record('Warning', 'Failed', `Error: ${(e as Error).message}`);
      return add(container, false);
    }
    if (mode === 'oci') {
      const image = c.image ?? '';
      const oci = ociName(this.opts.topology.prefix, uid, c.name);
      const container = new Container({
        name: c.name,
        command: ['podman', ...runArgs(ociSpec(rt.pod, c, env, ctx.volumes!, {
          name: oci,
          clusterPrefix: this.opts.topology.prefix,
          netnsPath: rt.net?.netnsPath ?? this.node.netnsPath,
          cgroup: rt.cgroup,
          ...(rt.net ? { hostsFile: `/etc/netns/${rt.net.netns}/hosts` } : {}),
        }))],
        env: process.env,
        logPath,
        policy,
        launch: (cmd, args, o) => spawn(cmd, args, { env: o.env, stdio: o.stdio }),
        onChange,
        onEvent: record,
        pod: `${name}_${ns}(${uid})`,
        runtimeError,
        // The pod's cgroup counts its containers' OOM kills (memory.events is hierarchical).
        oomKills: () => cgroupOomKills(rt.cgroup),
      });
      rt.ociNames.set(c.name, oci);
      // A missing image: pullLocal starts the container itself once the image is there.
      if (!(await pullLocal(c, container, record, () => rt.stopped, onChange))) return add(container, false);
      record('Normal', 'Pulled', `Container image "${image}" already present on machine`);
      return add(container, true);
    }
    const net = rt.net;
    const container = new Container({
      name: c.name,
      command: [...(c.command ?? []), ...(c.args ?? [])],
      env,
      ...(c.workingDir ? { cwd: c.workingDir } : {}),
      logPath,
      policy,
      launch: (cmd, args, o) => {
        const spawnOpts = { env: o.env, ...(o.cwd ? { cwd: o.cwd } : {}), stdio: o.stdio };
        return net
          ? this.opts.topology.spawn(net, cmd, args, spawnOpts)
          : this.opts.topology.spawnInNode(this.node, rt.cgroup, cmd, args, spawnOpts);
      },
      onChange,
      onEvent: record,
      pod: `${name}_${ns}(${uid})`,
    });
    // Images are not pulled here (the command runs on this host): kubelet's words for that.
    record('Normal', 'Pulled', `Container image "${c.image ?? ''}" already present on machine`);
    return add(container, true);
  }

  /**
   * Starts `cmd` in the network namespace and cgroup of a pod on this node (whatever runs its
   * containers), for port-forward's connector; undefined when the pod is not here.
   */
  spawnInPod(uid: string, cmd: string, args: string[]): ChildProcess | undefined {
    const rt = this.pods.get(uid);
    if (!rt) return undefined;
    const o = { stdio: 'pipe' as const };
    return rt.net ? this.opts.topology.spawn(rt.net, cmd, args, o) : this.opts.topology.spawnInNode(this.node, rt.cgroup, cmd, args, o);
  }

  /**
   * Runs `command` in a running container of a pod on this node, for kubectl exec: the process's
   * stdin/stdout/stderr are the command's, its exit code the command's. OCI containers only
   * (`podman exec`); undefined when the pod or container is not here or runs as a host command.
   */
  exec(namespace: string, pod: string, container: string, command: string[], opts: { tty?: boolean; stdin?: boolean } = {}): ChildProcess | undefined {
    const rt = [...this.pods.values()].find((r) => r.key === `${namespace}/${pod}`);
    const name = rt?.ociNames.get(container);
    return name ? ociExec(name, command, opts) : undefined;
  }

  /** Startup, liveness and readiness probes of container `c` (prober.ts). */
  private startProbes(rt: PodRuntime, c: k8s.V1Container, container: Container): void {
    const oci = rt.ociNames.get(c.name);
    const podRef = { apiVersion: 'v1', kind: 'Pod', metadata: rt.pod.metadata };
    const prober = new ContainerProber(c, container, {
      target: {
        nodeNetnsPath: this.node.netnsPath,
        podIP: rt.podIP,
        namedPorts: namedPorts(c),
        exec: (command) => (!container.running ? undefined : oci ? ociExec(oci, command, { stdin: false }) : container.exec(command)),
      },
      record: (type, reason, message) => {
        if (!rt.stopped) void this.events.record(podRef, type, reason, message, `spec.containers{${c.name}}`);
      },
      kill: (why) => {
        if (rt.stopped) return;
        const probe = why === 'startup probe' ? c.startupProbe : c.livenessProbe;
        const graceMs = (probe?.terminationGracePeriodSeconds ?? rt.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000;
        log.info({ pod: rt.key, container: c.name, why }, 'killing the container for a failed probe');
        container.restartKill(oci ? graceMs + 2000 : graceMs, { term: !oci });
        if (oci) void stopContainer(oci, graceMs / 1000);
      },
      changed: () => this.scheduleStatus(rt),
    });
    rt.probers.set(c.name, prober);
    prober.start();
  }

  private scheduleStatus(rt: PodRuntime): void {
    if (rt.statusTimer || rt.stopped) return;
    rt.statusTimer = setTimeout(() => {
      rt.statusTimer = undefined;
      this.writePodStatus(rt).catch((e: { code?: number; message?: string }) => {
        if (e.code !== 404) log.warn({ pod: rt.key, err: e.message }, 'writing pod status failed');
      });
    }, STATUS_DEBOUNCE_MS);
  }

  private async writePodStatus(rt: PodRuntime): Promise<void> {
    if (rt.stopped) return;
    const containerID = (c: Container) => (rt.ociNames.has(c.name) ? `podman://${rt.ociNames.get(c.name)!}` : c.pid ? `process://${c.pid}` : '');
    const view = (c: Container) => ({ name: c.name, st: c.st, containerID: containerID(c) });
    const parts = podStatusParts({ spec: rt.pod.spec, initContainers: rt.initContainers.map(view), containers: rt.containers.map(view), probes: rt.probers });
    const now = new Date().toISOString();
    const cond = (type: string, ok: boolean) => ({ type, status: ok ? 'True' : 'False', lastTransitionTime: now, lastProbeTime: null });
    const status = {
      phase: parts.phase,
      hostIP: this.node.ip4,
      hostIPs: [{ ip: this.node.ip4 }],
      podIP: rt.podIP,
      podIPs: [{ ip: rt.podIP }, ...(rt.net?.ip6 ? [{ ip: rt.net.ip6 }] : [])],
      startTime: rt.startTime,
      conditions: [cond('PodScheduled', true), cond('Initialized', parts.initialized), cond('ContainersReady', parts.ready), cond('Ready', parts.ready)],
      ...(parts.initContainerStatuses ? { initContainerStatuses: parts.initContainerStatuses } : {}),
      containerStatuses: parts.containerStatuses,
    };
    const { namespace, name } = rt.pod.metadata!;
    await this.core.patchNamespacedPodStatus(
      { name: name!, namespace: namespace!, body: { status } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }

  /**
   * A pod being deleted. Graceful (deletionTimestamp set, the object still there): preStop hooks,
   * SIGTERM, SIGKILL after deletionGracePeriodSeconds, then the kubelet removes the object (DELETE
   * with grace 0), as kubelet's status manager does. Already removed (force delete, namespace
   * deletion): kill now, no hooks.
   */
  private async terminate(pod: k8s.V1Pod, deleted: boolean): Promise<void> {
    const uid = pod.metadata!.uid!;
    const rt = this.pods.get(uid);
    if (rt) {
      rt.pod = pod;
      const graceSeconds = deleted ? 0 : (pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30);
      await this.teardown(rt, graceSeconds * 1000, !deleted);
    }
    if (deleted) return;
    const { namespace, name } = pod.metadata!;
    await this.core
      .deleteNamespacedPod({ namespace: namespace!, name: name!, body: { gracePeriodSeconds: 0, preconditions: { uid } } })
      .catch((e: { code?: number; message?: string }) => {
        // 404: already gone; 409: a new pod under the same name.
        if (e.code !== 404 && e.code !== 409) log.warn({ pod: `${namespace}/${name}`, err: e.message }, 'removing the terminated pod failed');
      });
  }

  /** Stops a pod's containers (preStop, SIGTERM, SIGKILL after `graceMs`) and removes its sandbox. */
  private async teardown(rt: PodRuntime, graceMs: number, preStop: boolean): Promise<void> {
    const { uid } = rt;
    if (this.stopping) {
      graceMs = Math.min(graceMs, STOP_GRACE_MS);
      preStop = false;
    }
    rt.stopped = true;
    for (const p of rt.probers.values()) p.stop();
    if (rt.statusTimer) clearTimeout(rt.statusTimer);
    await rt.starting; // no container starts after this
    const containers = [...rt.initContainers, ...rt.containers];
    for (const c of containers) c.beginStop();
    const t0 = Date.now();
    let hurried = false;
    const hurry = new Promise<void>((resolve) => {
      rt.hurry = () => {
        hurried = true;
        for (const c of containers) c.kill();
        for (const oci of rt.ociNames.values()) void killContainer(oci);
        resolve();
      };
    });
    const podRef = { apiVersion: 'v1', kind: 'Pod', metadata: rt.pod.metadata };
    await Promise.all(containers.map(async (c) => {
      const spec = rt.pod.spec?.containers.find((s) => s.name === c.name);
      const oci = rt.ociNames.get(c.name);
      if (preStop && spec?.lifecycle?.preStop && c.running) {
        const target: StopTarget = {
          exec: (command) => (oci ? ociExec(oci, command, { stdin: false }) : c.exec(command)),
          probe: { nodeNetnsPath: this.node.netnsPath, podIP: rt.podIP, namedPorts: namedPorts(spec) },
          record: (type, reason, message) => void this.events.record(podRef, type, reason, message, `spec.containers{${c.name}}`),
        };
        await Promise.race([runPreStop(spec, target, graceMs), hurry]);
      }
      const term = hurried ? 0 : termGraceMs(graceMs, Date.now() - t0);
      // An OCI container's PID 1 may ignore SIGTERM (no handler): podman stop escalates in it;
      // the attached `podman run` gets a little longer so that it reports the container's end.
      // `podman stop` alone signals it (its `podman run` would forward a second SIGTERM).
      await Promise.all([c.stop(oci ? term + 2000 : term, { term: !oci }), oci ? stopContainer(oci, term / 1000) : undefined]);
      if (oci) await removeContainer(oci);
    }));
    rt.hurry = undefined;
    log.info({ pod: rt.key, graceMs, ms: Date.now() - t0 }, 'pod containers stopped');
    removeVolumes(join(this.podsDir, uid));
    // DEL through the chain that ADD ran (not when the whole cluster stops: no pod is deleted).
    if (rt.net && rt.cni && this.opts.root && !this.stopping) {
      const ref = { namespace: rt.pod.metadata?.namespace ?? 'default', name: rt.pod.metadata!.name!, uid };
      await cniDel(this.opts.root, this.node.netnsPath, ref, rt.net, rt.cni).catch((e: Error) => log.warn({ pod: rt.key, err: e.message }, 'CNI DEL failed'));
    }
    if (rt.net) {
      this.opts.hosts.removePod(rt.net.netns);
      await this.opts.topology.removePod(rt.net);
    } else {
      await removeCgroup(rt.cgroup);
    }
    if (rt.ociNames.size) removeV1Tree(rt.cgroup);
    this.pods.delete(uid);
    log.info({ pod: rt.key }, 'pod stopped');
  }

  /** automountServiceAccountToken of the pod, else of its service account, else true. */
  private async automountToken(pod: k8s.V1Pod): Promise<boolean> {
    if (pod.spec?.automountServiceAccountToken !== undefined) return pod.spec.automountServiceAccountToken;
    const sa = await this.core
      .readNamespacedServiceAccount({ namespace: pod.metadata?.namespace ?? 'default', name: pod.spec?.serviceAccountName ?? 'default' })
      .catch(() => undefined);
    return sa?.automountServiceAccountToken ?? true;
  }

  /** Stops every pod of this node (the cluster is going down). */
  async stop(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    // Pods in their grace period are killed now rather than waited for (and later ones quickly).
    this.stopping = true;
    for (const rt of this.pods.values()) rt.hurry?.();
    await Promise.allSettled([...this.pending.values()]);
    // The cluster going down is not a pod deletion: no hooks, and a short grace so that `meshctl
    // dev down` is quick; the pods start again with the next `dev up`.
    await Promise.all([...this.pods.values()].map((rt) => this.teardown(rt, Math.min((rt.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000, STOP_GRACE_MS), false).catch(() => {})));
    await this.opts.root?.release();
  }
}

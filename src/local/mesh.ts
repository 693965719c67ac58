// The mesh installed on a local cluster, as the Helm chart installs it on a real one: the
// controller (in this process, on loopback ports), and per node the agent and ztunnel as real
// processes with the node identity a DaemonSet pod would have (a hostNetwork placeholder pod in
// mesh-system whose service-account token they present). `meshctl dev up` runs it in its daemon;
// the end-to-end tests and the demo run it the same way. It records where everything listens in
// <state dir>/mesh.json for meshctl.
import { tracingEnv } from '../common/shared-settings.ts';
import type { TracingSettings } from '../tracing/index.ts';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { endpointsPath, type MeshEndpoints } from '../cli/endpoints.ts';
import { Controller } from '../controller/controller.ts';
import { Datapath } from '../datapath/index.ts';
import { installChartCrds } from './chart-crds.ts';
import { applyMeshRbac, LEADER_ELECTION_MANIFEST, tokenFileKubeConfig, writeControllerToken } from './mesh-rbac.ts';
import { ControllerReplicas, type ReplicaPorts } from './rollout-controller.ts';
import { run } from './run.ts';
import { type LocalCluster, podCgroupFor } from './runtime/cluster.ts';
import type { PodNet } from './topology.ts';
import { controlRequest } from '../agent/control.ts';
import { formatDuration, hostEnv } from '../common/settings.ts';
import { cniAddRequest, podInMesh, requireServed } from '../cni/index.ts';
import { CA_TOKEN_AUDIENCE } from '../identity/index.ts';
import { ZTUNNEL_ENTRY, ZTUNNEL_NODE_FLAGS, ZTUNNEL_PROCESS_ENV } from '../ztunnel/config.ts';
import { bundleZtunnel } from '../images/ztunnel-bundle.ts';
import { ensureWaypointImage, forwardControllerSockets, l7FlowsDir, localWaypointTemplate, WAYPOINT_IMAGE } from './waypoints.ts';

const AGENT = fileURLToPath(new URL('../agent/main.ts', import.meta.url));
const ZTUNNEL = fileURLToPath(new URL(`../../${ZTUNNEL_ENTRY}`, import.meta.url));
const ZTUNNEL_SOURCE = fileURLToPath(new URL('../ztunnel/main.ts', import.meta.url));
const CONTROLLER_REPLICA = fileURLToPath(new URL('../controller/main.ts', import.meta.url));
export const SERVER_NAME = 'mesh-controller.mesh-system.svc';
/** Separates a retired (draining) process's key from its pid: "ztunnel-node1~4242". */
const RETIRED = '~';
/** Node tokens (24 h) are rewritten this often, as kubelet refreshes projected tokens at 80 %. */
const TOKEN_REFRESH_MS = 4 * 3_600_000;
/** How much of each component's output is kept in memory (the rest is in its log file). */
const LOG_KEEP = 4 << 20;

export interface LocalMeshOptions {
  stateDir: string;
  prefix: string;
  /** Log level of the components (default info). */
  logLevel?: string;
  /** Workload and node certificate lifetime (the controller's MESH_WORKLOAD_CERT_TTL), ms. */
  workloadCertTtlMs?: number;
  /** MESH_MARK of the node's agent and ztunnel (default: theirs, 0x539). */
  mark?: number;
  /**
   * Run the controller as this many replica processes behind a Service, electing a leader on a
   * Lease (`dev up --controller-replicas`). Unset: one controller inside this process, as before.
   */
  controllerReplicas?: number;
  /** More MESH_* settings of the controller replicas (e.g. MESH_LEASE_DURATION for tests). */
  controllerSettings?: Record<string, string>;
  /** Where the waypoints export spans (the controller's MESH_TRACING_* settings); default: none. */
  tracing?: Partial<TracingSettings>;
  /**
   * ztunnels export L4 spans (the chart's tracing.l4) to this OTLP endpoint. Not the waypoints'
   * in-cluster one: here ztunnel runs in the host's network namespace, which reaches neither the
   * cluster's Service addresses nor its names — give a host address (loopback).
   */
  l4SpansEndpoint?: string;
  /**
   * Node/V8 flags for the ztunnel processes (space-separated), e.g. heap settings a benchmark
   * compares. Given, they replace ztunnel's own (ZTUNNEL_NODE_FLAGS) on its command line, where
   * Node takes V8 flags that NODE_OPTIONS refuses (--single-threaded-gc, e.g.).
   */
  ztunnelNodeOptions?: string;
  /**
   * The ztunnel processes' own environment (glibc's MALLOC_* tunables, e.g.) in place of
   * ZTUNNEL_PROCESS_ENV, for a benchmark to compare; a key whose value is '' is left unset.
   */
  ztunnelEnv?: Readonly<Record<string, string>>;
  /** Node/V8 flags of the waypoint pods in place of WAYPOINT_NODE_FLAGS, for a benchmark to compare. */
  waypointNodeFlags?: readonly string[];
  /** More environment of the waypoint pods (over WAYPOINT_PROCESS_ENV; a key given as '' is left unset). */
  waypointEnv?: Readonly<Record<string, string>>;
  /** ztunnel runs src/ztunnel/main.ts rather than its bundle (ZTUNNEL_ENTRY), for a benchmark to compare. */
  ztunnelFromSource?: boolean;
  onProgress?: (m: string) => void;
}

export class LocalMesh {
  readonly cluster: LocalCluster;
  readonly stateDir: string;
  readonly prefix: string;
  readonly nodes: string[];
  readonly core: k8s.CoreV1Api;
  /** The controller, when it runs in this process (no controllerReplicas). */
  controller!: Controller;
  /** The controller replicas and their Service, when controllerReplicas is set. */
  replicas: ControllerReplicas | undefined;
  root = '';
  readonly processes = new Map<string, ChildProcess>();
  /** When each component's current process was spawned (ms since epoch): crash recovery is
   * measured from there. */
  readonly spawnedAt = new Map<string, number>();
  /** Recent output of each component ("agent-node1", "ztunnel-node2"); also in logs/mesh/. */
  readonly logs = new Map<string, string>();
  /** What each component reported at start (ztunnel: its ports; agent: its flows API address),
   * kept apart from the log, whose in-memory tail a busy ztunnel's access log soon pushes out. */
  private readonly reported = new Map<string, Record<string, unknown>>();
  private readonly nodePods = new Map<string, k8s.V1Pod>();
  private readonly bpffsRoot: string;
  private readonly opts: LocalMeshOptions;
  private bpffsMounted = false;
  private tokenTimer: NodeJS.Timeout | undefined;
  /** The controller's API credential: its own service account's token, with the chart's RBAC. */
  private controllerKc: k8s.KubeConfig | undefined;
  /** Closes the unix sockets through which waypoint pods reach the controller. */
  private closeSockets: (() => Promise<void>) | undefined;

  private constructor(cluster: LocalCluster, opts: LocalMeshOptions) {
    this.cluster = cluster;
    this.opts = opts;
    this.stateDir = opts.stateDir;
    this.prefix = opts.prefix;
    this.nodes = cluster.kubelets.map((k) => k.node.name);
    this.core = cluster.kc.makeApiClient(k8s.CoreV1Api);
    this.bpffsRoot = join(opts.stateDir, 'bpffs');
  }

  /** Installs and starts the mesh; on failure, stops what it started before throwing. */
  static async start(cluster: LocalCluster, opts: LocalMeshOptions & { ztunnel?: boolean }): Promise<LocalMesh> {
    const m = new LocalMesh(cluster, opts);
    try {
      await m.install(opts.ztunnel ?? true);
    } catch (e) {
      await m.stop().catch(() => {});
      throw e;
    }
    return m;
  }

  private progress(msg: string): void {
    this.opts.onProgress?.(msg);
  }

  /** A lifetime asked for (`dev up --workload-cert-ttl`) is also the most the CA grants: a client
   * asking for longer gets what the operator configured. */
  /** The controller's tracing settings, which it passes to the waypoints it deploys. */
  private tracing(): Partial<TracingSettings> {
    return this.opts.tracing ?? {};
  }

  private certTtl(): { workloadCertTtlMs?: number; maxWorkloadCertTtlMs?: number } {
    const ttl = this.opts.workloadCertTtlMs;
    return ttl ? { workloadCertTtlMs: ttl, maxWorkloadCertTtlMs: ttl } : {};
  }

  bpffs(node: string): string {
    return join(this.bpffsRoot, node);
  }

  private async install(ztunnel: boolean): Promise<void> {
    mkdirSync(this.bpffsRoot, { recursive: true });
    mkdirSync(join(this.stateDir, 'logs', 'mesh'), { recursive: true });
    await run('mount', ['-t', 'bpf', 'bpf', this.bpffsRoot]);
    this.bpffsMounted = true;
    const core = this.core;
    // The node DaemonSet's pods: they hold the node identity the agents' tokens are bound to.
    await core.createNamespace({ body: { metadata: { name: 'mesh-system' } } }).catch(ignoreConflict);
    await core.createNamespacedServiceAccount({ namespace: 'mesh-system', body: { metadata: { name: 'mesh-node' } } }).catch(ignoreConflict);
    for (const node of this.nodes) {
      const name = `mesh-node-${node}`;
      // At once (grace 0): a pod of this name is made again right below.
      await core.deleteNamespacedPod({ name, namespace: 'mesh-system', body: { gracePeriodSeconds: 0 } }).catch(() => undefined);
      const pod = await core.createNamespacedPod({
        namespace: 'mesh-system',
        body: {
          metadata: { name },
          spec: { nodeName: node, hostNetwork: true, serviceAccountName: 'mesh-node', containers: [{ name: 'hold', image: 'unused', command: ['sleep', 'infinity'] }] },
        },
      });
      this.nodePods.set(node, pod);
    }
    // The chart's CRDs first, as Helm installs crds/ before the templates.
    await installChartCrds(this.cluster.kc);
    // The chart's RBAC, and the controller runs with it (not as admin), as it would on a real cluster.
    await applyMeshRbac(this.cluster.kc);
    await writeControllerToken(this.cluster.kc, this.controllerTokenFile());
    this.controllerKc = tokenFileKubeConfig(this.cluster.api.url, this.cluster.api.caCertPem, this.controllerTokenFile());
    this.progress(this.opts.controllerReplicas ? `starting ${this.opts.controllerReplicas} controller replicas (config stream, CA, flow relay; leader election on a Lease)` : 'starting the controller (config stream, CA, flow relay)');
    // Waypoints run the waypoint image when `make images` built it, else from an empty image with
    // the host's runtime mounted (src/local/waypoints.ts).
    const waypoints = await ensureWaypointImage().catch((e: Error) => {
      this.progress(`waypoints will not start: ${e.message}`);
      return { from: 'hostfs' as const, why: '' };
    });
    const waypointsFrom = waypoints.from;
    this.progress(waypointsFrom === 'image' ? `waypoints run the image ${WAYPOINT_IMAGE} (${waypoints.why})` : `waypoints run this checkout on the host's runtime (${waypoints.why})`);
    const waypointTemplate = localWaypointTemplate(this.stateDir, this.opts.logLevel, waypointsFrom, {
      ...(this.opts.waypointNodeFlags ? { nodeFlags: this.opts.waypointNodeFlags } : {}),
      ...(this.opts.waypointEnv ? { env: this.opts.waypointEnv } : {}),
    });
    if (this.opts.controllerReplicas) {
      await this.startReplicas(this.opts.controllerReplicas, waypointTemplate);
    } else {
      this.controller = await Controller.start(this.controllerKc, { host: '127.0.0.1', xdsPort: 0, caPort: 0, relayPort: 0, dashboardPort: 0, waypointTemplate, ...this.certTtl(), ...this.tracing() });
    }
    const ports = this.controllerPorts();
    this.closeSockets = await forwardControllerSockets(this.stateDir, { xds: ports.xds, ca: ports.ca });
    this.root = await waitFor('the trust bundle ConfigMap', async () => (await core.readNamespacedConfigMap({ name: 'mesh-ca-root-cert', namespace: 'mesh-system' })).data?.['root-cert.pem']);
    writeFileSync(join(this.stateDir, 'root-cert.pem'), this.root);
    for (const node of this.nodes) {
      this.progress(`starting the node agent on ${node} (eBPF datapath)`);
      await this.startProcess('agent', node);
      if (ztunnel) {
        this.progress(`starting ztunnel on ${node}`);
        await this.startProcess('ztunnel', node);
      }
    }
    // Istio's CNI plugin, on the local kubelets: an ambient pod is enrolled, and served by its
    // ztunnel, before its containers start — its very first connection is already in the mesh.
    for (const k of this.cluster.kubelets) k.sandboxHook = (pod, net) => this.enrolAtSandbox(k.node.name, pod, net);
    // The node tokens live 24 h, as kubelet's projected tokens do, and kubelet rewrites them well
    // before they expire; so does this, or certificate renewals would fail after a day.
    this.tokenTimer = setInterval(() => void this.refreshTokens(), TOKEN_REFRESH_MS);
    this.tokenTimer.unref();
  }

  /** The replicas as the chart's Deployment runs them: the chart's Lease rights, the controller's
   * own credential in a kubeconfig, the same waypoint template the in-process controller uses. */
  private async startReplicas(count: number, waypointTemplate: unknown): Promise<void> {
    await applyMeshRbac(this.cluster.kc, LEADER_ELECTION_MANIFEST);
    const dir = join(this.stateDir, 'controller');
    mkdirSync(dir, { recursive: true });
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, this.controllerKc!.exportConfig(), { mode: 0o600 });
    const template = join(dir, 'waypoint-template.json');
    writeFileSync(template, JSON.stringify(waypointTemplate));
    const ttl = this.opts.workloadCertTtlMs;
    this.replicas = await ControllerReplicas.start(count, {
      stateDir: this.stateDir,
      kubeconfig,
      waypointTemplate: template,
      settings: {
        MESH_LOG_LEVEL: this.opts.logLevel ?? 'info',
        ...(ttl ? { MESH_WORKLOAD_CERT_TTL: formatDuration(ttl), MESH_MAX_WORKLOAD_CERT_TTL: formatDuration(ttl) } : {}),
        ...(this.opts.tracing?.tracingEndpoint ? { MESH_TRACING_OTLP_ENDPOINT: this.opts.tracing.tracingEndpoint } : {}),
        ...(this.opts.tracing?.tracingSampling !== undefined ? { MESH_TRACING_SAMPLING: String(this.opts.tracing.tracingSampling) } : {}),
        ...this.opts.controllerSettings,
      },
      onProgress: (m) => this.progress(m),
      onChange: () => this.writePids(),
    });
  }

  /** Where the nodes, waypoints and meshctl reach the controller: the replicas' Service, or the
   * in-process controller's own ports. */
  controllerPorts(): ReplicaPorts {
    if (this.replicas) return this.replicas.ports;
    const c = this.controller;
    return { xds: c.xdsPort, ca: c.ca.port, relay: c.relayPort, dashboard: c.dashboard?.port ?? 0 };
  }

  /** The CNI plugin's enrolment (src/cni/enrol.ts), in-process: the same decision, request to
   * the agent and judgement of its reply as a real node's plugin; the kubelet made the sandbox. */
  private async enrolAtSandbox(node: string, pod: k8s.V1Pod, net: PodNet): Promise<void> {
    const ns = await this.core.readNamespace({ name: pod.metadata!.namespace! });
    if (!podInMesh(pod, ns.metadata?.labels ?? {})) return;
    const waitMs = 5000;
    const req = cniAddRequest(pod, { netnsPath: net.netnsPath, cgroupPath: net.cgroup, addresses: [net.ip4, ...(net.ip6 ? [net.ip6] : [])] }, waitMs);
    const reply = await controlRequest(join(this.stateDir, node, 'agent.sock'), req, waitMs + 5000);
    requireServed(reply, `${pod.metadata!.namespace}/${pod.metadata!.name} on ${node}`, waitMs);
  }

  async tokenFor(node: string): Promise<string> {
    const pod = this.nodePods.get(node)!;
    const tr = await this.core.createNamespacedServiceAccountToken({
      name: 'mesh-node',
      namespace: 'mesh-system',
      body: { spec: { audiences: [CA_TOKEN_AUDIENCE], expirationSeconds: 24 * 3600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata!.name!, uid: pod.metadata!.uid! } } },
    });
    return tr.status!.token!;
  }

  /**
   * (Re)starts a node's agent or ztunnel, and waits until it is ready. `drainTimeoutMs` is the
   * new ztunnel's MESH_DRAIN_TIMEOUT (its own default otherwise).
   */
  async startProcess(kind: 'agent' | 'ztunnel', node: string, opts: { drainTimeoutMs?: number } = {}): Promise<ChildProcess> {
    const dir = join(this.stateDir, node);
    mkdirSync(dir, { recursive: true });
    await this.writeToken(node);
    const c = this.controllerPorts();
    const settings = meshSettingsEnv(kind, {
      node,
      dir,
      stateDir: this.stateDir,
      bpffsDir: this.bpffs(node),
      podCgroup: podCgroupFor(this.prefix, node),
      xdsPort: c.xds,
      caPort: c.ca,
      logLevel: this.opts.logLevel,
      mark: this.opts.mark,
      drainTimeoutMs: opts.drainTimeoutMs,
    });
    const t = this.opts.tracing;
    if (kind === 'ztunnel' && this.opts.l4SpansEndpoint) {
      Object.assign(settings, tracingEnv({ tracingEndpoint: this.opts.l4SpansEndpoint, tracingProtocol: t?.tracingProtocol ?? 'http/protobuf', tracingSampling: t?.tracingSampling ?? 1, tracingFlushInterval: t?.tracingFlushInterval ?? 5000 }));
    }
    // ztunnel's V8 flags and process environment as the chart gives them, unless a benchmark
    // brings its own.
    const flags = kind !== 'ztunnel' ? [] : this.opts.ztunnelNodeOptions ? this.opts.ztunnelNodeOptions.split(/\s+/).filter(Boolean) : ZTUNNEL_NODE_FLAGS;
    const env: Record<string, string> = {
      // The caller's own MESH_* variables (meshctl's MESH_DEV_*, a test's) are not the child's,
      // and it would refuse them.
      ...hostEnv(),
      ...settings,
      // Node's on-disk compile cache halves a component's start (0.84 → 0.43 s to load
      // ztunnel's modules from src/, measured): a restarted agent serves again sooner. ztunnel's
      // bundle loads as fast without it (ARCHITECTURE.md, Memory).
      NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(tmpdir(), 'mesh-node-compile-cache'),
    };
    // ztunnel's process environment; a benchmark's key given as '' is left unset (only those:
    // a host variable that is set but empty passes as it is).
    if (kind === 'ztunnel') {
      for (const [k, v] of Object.entries(this.opts.ztunnelEnv ?? ZTUNNEL_PROCESS_ENV)) {
        if (v === '') delete env[k];
        else env[k] = v;
      }
    }
    // ztunnel runs bundled, as in the image; bundled now, so it runs the checkout as it is.
    if (kind === 'ztunnel' && !this.opts.ztunnelFromSource) await bundleZtunnel();
    const child = spawn(process.execPath, [...flags, kind === 'agent' ? AGENT : this.opts.ztunnelFromSource ? ZTUNNEL_SOURCE : ZTUNNEL], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const key = `${kind}-${node}`;
    this.spawnedAt.set(key, Date.now());
    const file = join(this.stateDir, 'logs', 'mesh', `${key}.log`);
    // Written behind the event loop's back: this process also serves the API and the controller.
    const sink = createWriteStream(file, { flags: 'a' });
    child.once('close', () => sink.end());
    this.logs.set(key, '');
    const take = (d: Buffer) => {
      const s = String(d);
      const prev = this.logs.get(key) ?? '';
      this.logs.set(key, prev.length > LOG_KEEP ? prev.slice(-LOG_KEEP / 2) + s : prev + s);
      sink.write(d);
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    this.processes.set(key, child);
    this.writePids();
    const ready = kind === 'agent' ? 'subscribed to the config stream' : 'admin, metrics and readiness listening';
    await waitFor(key, () => (this.logs.get(key)!.includes(ready) || child.exitCode !== null ? true : undefined), 30_000).catch(() => undefined);
    if (!this.logs.get(key)!.includes(ready)) throw new Error(`${key} did not start (log: ${file}): ${this.logs.get(key)!.slice(-2000)}`);
    this.reported.set(
      key,
      kind === 'ztunnel'
        ? { admin: this.logField(key, ready, 'admin'), metrics: this.logField(key, ready, 'metrics'), readiness: this.logField(key, ready, 'readiness') }
        : { observer: this.logField(key, 'flows API listening', 'observer'), metrics: this.logField(key, 'metrics listening', 'metrics') },
    );
    this.writeEndpoints();
    return child;
  }

  /** For `meshctl dev down` after a daemon that died without stopping its components. */
  private writePids(): void {
    const pids = [...[...this.processes.values()].filter((p) => p.exitCode === null && p.pid).map((p) => p.pid), ...(this.replicas?.pids() ?? [])];
    writeFileSync(join(this.stateDir, 'mesh.pids'), `${pids.join('\n')}\n`);
  }

  private logField(key: string, msg: string, field: string): unknown {
    const line = (this.logs.get(key) ?? '').split('\n').filter((l) => l.includes(msg)).at(-1);
    return line ? (JSON.parse(line) as Record<string, unknown>)[field] : undefined;
  }

  /** A ztunnel's admin, metrics or readiness port, from its log. */
  ztunnelPort(node: string, which: 'admin' | 'metrics' | 'readiness'): number {
    const port = this.reported.get(`ztunnel-${node}`)?.[which];
    if (typeof port !== 'number' || !port) throw new Error(`ztunnel on ${node} has not reported its ${which} port`);
    return port;
  }

  /** What meshctl reads (src/cli/endpoints.ts). */
  writeEndpoints(): void {
    const c = this.controllerPorts();
    const e: MeshEndpoints = { relay: `127.0.0.1:${c.relay}`, xds: `127.0.0.1:${c.xds}`, ...(c.dashboard ? { dashboard: `http://127.0.0.1:${c.dashboard}/` } : {}), nodes: {} };
    for (const node of this.nodes) {
      const admin = this.reported.get(`ztunnel-${node}`)?.admin;
      const metrics = this.reported.get(`ztunnel-${node}`)?.metrics;
      const observer = this.reported.get(`agent-${node}`)?.observer ?? this.logField(`agent-${node}`, 'flows API listening', 'observer');
      const draining = [...this.processes.entries()]
        .filter(([k, p]) => k.startsWith(`ztunnel-${node}${RETIRED}`) && p.exitCode === null && p.signalCode === null)
        .map(([k]) => this.reported.get(k)?.admin)
        .filter((a) => typeof a === 'number')
        .map((a) => `127.0.0.1:${String(a)}`);
      const agentMetrics = this.reported.get(`agent-${node}`)?.metrics;
      e.nodes[node] = {
        ztunnelAdmin: admin ? `127.0.0.1:${String(admin)}` : '',
        ...(metrics ? { ztunnelMetrics: `127.0.0.1:${String(metrics)}` } : {}),
        ...(typeof observer === 'string' ? { observer } : {}),
        ...(agentMetrics ? { agentMetrics: `127.0.0.1:${String(agentMetrics)}` } : {}),
        ...(draining.length ? { ztunnelDraining: draining } : {}),
      };
    }
    writeFileSync(endpointsPath(this.stateDir), `${JSON.stringify(e, null, 2)}\n`);
  }

  /**
   * Takes a node's agent or ztunnel out of the current slot so that a new one can start beside
   * it (a rollout): it keeps running under "<kind>-<node>~<pid>" — still stopped with the mesh,
   * still in mesh.json while it drains — until it exits.
   */
  retire(kind: 'agent' | 'ztunnel', node: string): ChildProcess | undefined {
    const key = `${kind}-${node}`;
    const old = this.processes.get(key);
    if (!old || old.exitCode !== null || old.signalCode !== null) return undefined;
    const retired = `${key}${RETIRED}${old.pid}`;
    this.processes.delete(key);
    this.processes.set(retired, old);
    const rep = this.reported.get(key);
    if (rep) this.reported.set(retired, rep);
    old.once('exit', () => {
      this.processes.delete(retired);
      this.reported.delete(retired);
      this.writePids();
      this.writeEndpoints();
    });
    return old;
  }

  /** Restarts the controller on the same ports (clients resume from their versions). */
  /** Restarts the controller on the same ports (clients resume from their versions); with
   * replicas, rolls them one at a time behind their Service. */
  async restartController(): Promise<void> {
    if (this.replicas) {
      await this.replicas.rollout();
      return;
    }
    const old = this.controller;
    await old.stop();
    this.controller = await Controller.start(this.controllerKc!, { host: '127.0.0.1', xdsPort: old.xdsPort, caPort: old.ca.port, relayPort: old.relayPort, dashboardPort: old.dashboard?.port ?? 0, waypointTemplate: old.config.waypointTemplate, ...this.certTtl(), ...this.tracing() });
    this.writeEndpoints();
  }

  /** Stops the components and removes the datapath (pins, programs) and the bpffs mount. */
  private async writeToken(node: string): Promise<void> {
    const dir = join(this.stateDir, node);
    mkdirSync(dir, { recursive: true });
    // Written aside and renamed: the components read it on every CA request.
    writeFileSync(join(dir, 'token.new'), await this.tokenFor(node), { mode: 0o600 });
    renameSync(join(dir, 'token.new'), join(dir, 'token'));
  }

  private controllerTokenFile(): string {
    return join(this.stateDir, 'controller', 'token');
  }

  private async refreshTokens(): Promise<void> {
    await writeControllerToken(this.cluster.kc, this.controllerTokenFile()).catch((e: Error) => this.opts.onProgress?.(`refreshing the controller's token failed: ${e.message}`));
    for (const node of this.nodes) await this.writeToken(node).catch((e: Error) => this.opts.onProgress?.(`refreshing ${node}'s token failed: ${e.message}`));
  }

  async stop(): Promise<void> {
    clearInterval(this.tokenTimer);
    for (const k of this.cluster.kubelets) k.sandboxHook = undefined;
    const live = [...this.processes.entries()].filter(([, p]) => p.exitCode === null && p.signalCode === null);
    // ztunnel takes SIGTERM as a handover and drains (up to MESH_DRAIN_TIMEOUT); the mesh going
    // away has no successor to hand over to, so it is stopped at once (SIGINT).
    for (const [key, p] of live) p.kill(key.startsWith('ztunnel-') ? 'SIGINT' : 'SIGTERM');
    await Promise.all(live.map(([, p]) => Promise.race([once(p, 'exit'), new Promise((r) => setTimeout(r, 5000))])));
    for (const [, p] of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await this.controller?.stop();
    await this.replicas?.stop();
    await this.closeSockets?.();
    if (this.bpffsMounted) {
      for (const n of this.nodes) Datapath.uninstall(this.bpffs(n));
      await run('umount', [this.bpffsRoot]);
      this.bpffsMounted = false;
    }
  }
}

/**
 * The settings of a node's agent or ztunnel in the local cluster, as the node DaemonSet's two
 * containers would be given them: each gets only variables its schema knows
 * (src/agent/config.ts, src/ztunnel/config.ts), or it would refuse to start.
 */
export function meshSettingsEnv(
  kind: 'agent' | 'ztunnel',
  p: { node: string; dir: string; stateDir: string; bpffsDir: string; podCgroup: string; xdsPort: number; caPort: number; logLevel?: string | undefined; mark?: number | undefined; drainTimeoutMs?: number | undefined },
): Record<string, string> {
  const shared = {
    MESH_LOG_LEVEL: p.logLevel ?? 'info',
    MESH_BPFFS_DIR: p.bpffsDir,
    MESH_AGENT_SOCKET: join(p.dir, 'agent.sock'),
    MESH_NODE_NAME: p.node,
    MESH_CONTROLLER: `127.0.0.1:${p.xdsPort}`,
    MESH_CA_ADDRESS: `127.0.0.1:${p.caPort}`,
    MESH_CONTROLLER_NAME: SERVER_NAME,
    MESH_CA_ROOT_FILE: join(p.stateDir, 'root-cert.pem'),
    MESH_TOKEN_FILE: join(p.dir, 'token'),
    ...(p.mark !== undefined ? { MESH_MARK: `0x${p.mark.toString(16)}` } : {}),
  };
  // Every node's components share this host's network namespace: each picks free ports.
  return kind === 'agent'
    ? { ...shared, MESH_POD_CGROUP: p.podCgroup, MESH_OBSERVER_ADDRESS: '127.0.0.1:0', MESH_AGENT_METRICS_ADDRESS: '127.0.0.1:0', MESH_L7_FLOWS_SOCKET: join(l7FlowsDir(p.stateDir), `${p.node}.sock`) }
    : // …and only loopback: in a real pod ztunnel's metrics are on its own netns; here that would be the host's.
      { ...shared, MESH_ADMIN_PORT: '0', MESH_METRICS_PORT: '0', MESH_READINESS_PORT: '0', MESH_LISTEN_HOST: '127.0.0.1', ...(p.drainTimeoutMs !== undefined ? { MESH_DRAIN_TIMEOUT: formatDuration(p.drainTimeoutMs) } : {}) };
}

/**
 * What a daemon killed hard may have left of the mesh: its agent and ztunnel processes (checked
 * by their command line before they are killed) and its pinned datapath and bpffs mount.
 */
export async function sweepLocalMesh(stateDir: string): Promise<string[]> {
  const removed: string[] = [];
  const pidsFile = join(stateDir, 'mesh.pids');
  if (existsSync(pidsFile)) {
    for (const pid of readFileSync(pidsFile, 'utf8').split('\n').map(Number).filter((n) => n > 0)) {
      let cmd: string;
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        continue; // gone already
      }
      if (cmd.includes(AGENT) || cmd.includes(ZTUNNEL) || cmd.includes(ZTUNNEL_SOURCE) || cmd.includes(CONTROLLER_REPLICA)) {
        process.kill(pid, 'SIGKILL');
        removed.push(`mesh process ${pid}`);
      }
    }
    rmSync(pidsFile, { force: true });
  }
  const bpffsRoot = join(stateDir, 'bpffs');
  const mounted = readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === bpffsRoot);
  if (mounted) {
    for (const d of readdirSync(bpffsRoot)) Datapath.uninstall(join(bpffsRoot, d));
    await run('umount', [bpffsRoot]);
    removed.push(`the mesh's eBPF programs and pins (${bpffsRoot})`);
  }
  return removed;
}

function ignoreConflict(e: unknown): void {
  if ((e as { code?: number }).code !== 409) throw e as Error;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(fn()).catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

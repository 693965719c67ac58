// The controller: watches the Kubernetes API, builds the mesh model, serves it to every node over
// the delta config stream (mutual TLS with certificates from its own CA), serves the CA, and
// writes our policies' status back. One code path for a real cluster and the local one.
import * as grpc from '@grpc/grpc-js';
import * as k8s from '@kubernetes/client-node';
import { logger } from '../common/log.ts';
import { tracingEnv } from '../common/shared-settings.ts';
import { CONTROLLER_SERVICE_ACCOUNT } from '../identity/index.ts';
import { NodeCredentials } from './node-auth.ts';
import { AUTHORIZATION, ConfigServer, L7_AUTHORIZATION, ROUTE, SERVICE, WORKLOAD } from '../xds/index.ts';
import { kubeCaBackend, podInfo, type RunningCa, startCa } from './ca/index.ts';
import { Relay, type RelayPeer } from '../flows/relay.ts';
import { type ServingObserver, serveObserver } from '../flows/server.ts';
import { packageVersion } from '../cli/commands/version.ts';
import { IncrementalModel, MODEL_KINDS, type MeshModel, type ModelKind, type PolicyStatus } from './model/index.ts';
import { loadControllerSettings } from './config.ts';
import { WaypointDeployer, type WaypointTemplate } from './waypoint-deployer.ts';
import { LABEL_GATEWAY_NAME, WAYPOINT_CLASS } from './model/types.ts';
import { WAYPOINT_KINDS, WaypointStatusWriter } from './waypoint-config.ts';
import { LeaderElector, type LeaseSettings } from './leader-election.ts';
import { type ClientRecord, ReplicaDirectory } from './replica-directory.ts';
import { DashboardListenError, type Inventory, relayFlowSource, type RunningDashboard, startDashboard } from './dashboard/index.ts';
import { resolveInstallOwner } from './owner.ts';

const log = logger('controller');

export interface ControllerConfig {
  readonly trustDomain: string;
  readonly clusterId: string;
  readonly rootNamespace: string;
  readonly host: string;
  /** The config stream (mutual TLS). Istio serves xDS on 15010/15012; we keep the CA on 15012. */
  readonly xdsPort: number;
  readonly caPort: number;
  /** The flow relay (Observer gRPC for all nodes; Hubble Relay's 4245). Plaintext, so it binds
   * loopback: reach it with kubectl port-forward, as with hubble-relay. */
  readonly relayHost: string;
  readonly relayPort: number;
  /** The service map (MESH_DASHBOARD_HOST/PORT): plaintext, loopback by default; `meshctl dashboard` port-forwards. */
  readonly dashboardHost: string;
  readonly dashboardPort: number;
  /**
   * The shortest time between two model commits: the first change after a quiet spell is applied
   * at once, changes that arrive meanwhile wait for the next commit together.
   */
  readonly buildIntervalMs: number;
  /** Lifetime of a workload (and node) certificate when the request names none (MESH_WORKLOAD_CERT_TTL). */
  readonly workloadCertTtlMs: number;
  /** The longest certificate the CA signs, whatever a client asks (MESH_MAX_WORKLOAD_CERT_TTL). */
  readonly maxWorkloadCertTtlMs: number;
  /** The image of the waypoints it deploys (MESH_WAYPOINT_IMAGE). */
  readonly waypointImage: string;
  /** Where the waypoints it deploys export spans (MESH_TRACING_*), passed on in their env. */
  readonly tracingEndpoint?: string | undefined;
  readonly tracingProtocol: 'http/protobuf' | 'http/json' | 'grpc';
  readonly tracingSampling: number;
  readonly tracingFlushInterval: number;
  /** The whole waypoint pod template, when the image alone does not say it (the local cluster). */
  readonly waypointTemplate?: WaypointTemplate;
  /** The cluster's DNS domain (Service hostnames). */
  readonly clusterDomain?: string;
  /** The ClusterRole that owns what the controller makes (MESH_OWNER_CLUSTER_ROLE, owner.ts). */
  readonly ownerClusterRole?: string | undefined;
  /**
   * Leader election (MESH_LEADER_ELECTION and MESH_LEASE_*): only the holder of this Lease writes
   * to the API. Unset, this controller writes as if it led: it must then be the only replica.
   */
  readonly lease?: LeaseSettings;
}

// What an empty environment gives, less the Lease: a controller started in-process (the local
// cluster's single controller, tests) is alone unless it is given one.
const { lease: _noLease, ...SETTINGS_DEFAULTS } = loadControllerSettings({});

export const CONTROLLER_DEFAULTS: ControllerConfig = Object.freeze({
  // The settings' defaults, with their reasons, are in the schema (src/controller/config.ts):
  // what an empty environment gives.
  ...SETTINGS_DEFAULTS,
  clusterId: 'Kubernetes',
  rootNamespace: 'mesh-system',
  // A commit costs well under a millisecond per changed pod (bench/model.ts): no need to wait for
  // more changes before starting one. The interval only bounds the commits per second under churn
  // (the config server groups its pushes the same way, every 10 ms).
  buildIntervalMs: 5,
});

// The names on the controller's serving certificate: its Service, and loopback for the local cluster.
const SERVING_NAMES = { dnsNames: ['mesh-controller.mesh-system.svc', 'mesh-controller.mesh-system.svc.cluster.local', 'localhost'], ipAddresses: ['127.0.0.1'] };

type Cache<T extends k8s.KubernetesObject> = k8s.Informer<T> & k8s.ObjectCache<T>;

const CUSTOM = [
  { key: 'gateways', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways' },
  { key: 'httpRoutes', group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes' },
  { key: 'authorizationPolicies', group: 'security.mesh.io', version: 'v1', plural: 'authorizationpolicies' },
  { key: 'peerAuthentications', group: 'security.mesh.io', version: 'v1', plural: 'peerauthentications' },
  ...WAYPOINT_KINDS,
] as const;

/** The waypoint template with the controller's tracing settings added: waypoints export spans
 * where the mesh's settings say (the template's own env wins, for a template that sets them). */
function withTracing(t: WaypointTemplate, c: ControllerConfig): WaypointTemplate {
  return { ...t, env: { ...tracingEnv(c), ...t.env } };
}

export class Controller {
  readonly config: ControllerConfig;
  readonly ca: RunningCa;
  readonly xds: ConfigServer;
  xdsPort = 0;
  relayPort = 0;
  relay: Relay | undefined;
  dashboard: RunningDashboard | undefined;
  private relayServer: ServingObserver | undefined;
  private readonly kc: k8s.KubeConfig;
  private readonly caches: Record<string, Cache<k8s.KubernetesObject>>;
  private timer: NodeJS.Timeout | undefined;
  private lastBuildAt = -Infinity;
  private stopping = false;
  /** Per policy: the digest of the status last written, and the status object it was made from. */
  private readonly written = new Map<string, string>();
  private readonly writtenFrom = new Map<string, PolicyStatus>();
  private readonly waypointStatus: WaypointStatusWriter;
  /** The model, kept up to date change by change from the informers' events. */
  private readonly engine: IncrementalModel;
  /** The API writes (status, waypoint deployments): one pass at a time, off the build path. */
  private writing: Promise<void> = Promise.resolve();
  private writeRunning = false;
  private writeQueued = false;
  model: MeshModel | undefined;
  builds = 0;

  private readonly nodes: NodeCredentials;
  private deployer: WaypointDeployer;
  /** The Lease this replica campaigns on; undefined when it is the only replica (it leads). */
  readonly elector: LeaderElector | undefined;
  /** The other replicas' config-stream clients, for the relay (with election only). */
  private readonly directory: ReplicaDirectory | undefined;
  /** Informers of CRD-defined kinds whose CRD is not installed (listed as empty meanwhile). */
  readonly notServed = new Set<string>();

  private constructor(kc: k8s.KubeConfig, config: ControllerConfig, ca: RunningCa, xds: ConfigServer, caches: Record<string, Cache<k8s.KubernetesObject>>, nodes: NodeCredentials) {
    this.nodes = nodes;
    this.kc = kc;
    this.config = config;
    this.ca = ca;
    this.xds = xds;
    this.caches = caches;
    this.engine = new IncrementalModel({ trustDomain: config.trustDomain, clusterId: config.clusterId, rootNamespace: config.rootNamespace });
    this.deployer = this.newDeployer();
    this.waypointStatus = new WaypointStatusWriter(kc, (k) => caches[k]);
    this.elector = config.lease
      ? new LeaderElector(kc, config.lease, { onStartedLeading: () => this.startedLeading(), onStoppedLeading: () => this.stoppedLeading() })
      : undefined;
    this.directory = config.lease
      ? new ReplicaDirectory(
          kc,
          { namespace: config.lease.namespace, leaseName: config.lease.name, identity: config.lease.identity, periodMs: config.lease.retryPeriodMs },
          () => this.clientRecords(),
          () => this.leading,
        )
      : undefined;
  }

  private newDeployer(): WaypointDeployer {
    const c = this.config;
    return new WaypointDeployer(
      this.kc,
      withTracing(c.waypointTemplate ?? { image: c.waypointImage, imagePullPolicy: 'IfNotPresent', command: [], env: {}, volumes: [], volumeMounts: [] }, c),
      { clusterDomain: c.clusterDomain ?? 'cluster.local', trustDomain: c.trustDomain },
    );
  }

  /**
   * Whether this replica does the API writes. Istio's split: every istiod serves xDS and signs
   * certificates, and only the leader of each controller writes (status, the root ConfigMaps,
   * Gateway deployments). Here, one Lease for all of them, since one model feeds them all.
   */
  get leading(): boolean {
    return this.elector ? this.elector.isLeader : !this.stopping;
  }

  private startedLeading(): void {
    // What the previous leader wrote is not what this replica remembers writing: forget its own
    // digests (policy status, the deployer's) and write everything that differs once more.
    this.written.clear();
    this.writtenFrom.clear();
    this.deployer = this.newDeployer();
    void this.ca.publisher.start().catch((e: Error) => log.warn({ err: e.message }, 'publishing the trust bundle failed; the resync retries'));
    void this.scheduleWrites();
  }

  private stoppedLeading(): void {
    this.ca.publisher.stop();
  }

  static async start(kc: k8s.KubeConfig, input: Partial<ControllerConfig> = {}): Promise<Controller> {
    const config = Object.freeze({ ...CONTROLLER_DEFAULTS, ...input });
    if (config.ownerClusterRole) await resolveInstallOwner(kc, config.ownerClusterRole);
    const ca = await startCa(
      kubeCaBackend(kc),
      {
        trustDomain: config.trustDomain,
        port: config.caPort,
        host: config.host,
        defaultTtlMs: config.workloadCertTtlMs,
        maxTtlMs: config.maxWorkloadCertTtlMs,
      },
      // With election the leader publishes the trust bundle (startedLeading); every replica signs
      // with the same root, read from (or raced to create in) the CA Secret.
      { publishRoot: !config.lease },
    );
    const serving = await ca.authority.issueServing(SERVING_NAMES, 365 * 86_400_000);
    const roots = Buffer.from(ca.authority.trustBundle.join('\n'));
    const creds = grpc.ServerCredentials.createSsl(roots, [{ cert_chain: Buffer.from(serving.certChain.join('\n')), private_key: Buffer.from(serving.key) }], true);

    const core = kc.makeApiClient(k8s.CoreV1Api);
    const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    const apps = kc.makeApiClient(k8s.AppsV1Api);
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const inf = <T extends k8s.KubernetesObject>(path: string, list: () => Promise<k8s.KubernetesListObject<T>>) =>
      k8s.makeInformer<T>(kc, path, list) as unknown as Cache<k8s.KubernetesObject>;
    const caches: Record<string, Cache<k8s.KubernetesObject>> = {
      namespaces: inf('/api/v1/namespaces', () => core.listNamespace()),
      pods: inf('/api/v1/pods', () => core.listPodForAllNamespaces()),
      services: inf('/api/v1/services', () => core.listServiceForAllNamespaces()),
      endpointSlices: inf('/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces()),
      nodes: inf('/api/v1/nodes', () => core.listNode()),
      // The waypoints' Deployments (waypoint-deployer.ts): their readiness programs the Gateway.
      waypointDeployments: k8s.makeInformer(kc, '/apis/apps/v1/deployments', () => apps.listDeploymentForAllNamespaces({ labelSelector: LABEL_GATEWAY_NAME }), LABEL_GATEWAY_NAME) as unknown as Cache<k8s.KubernetesObject>,
    };
    for (const c of CUSTOM) {
      caches[c.key] = inf(`/apis/${c.group}/${c.version}/${c.plural}`, () =>
        custom.listClusterCustomObject({ group: c.group, version: c.version, plural: c.plural }) as Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>,
      );
    }
    // The CA's node check reads the pod informer first (NodeAuthorizer.useCache).
    ca.authorizer.useCache((node) => (caches.pods!.list() as k8s.V1Pod[]).filter((p) => p.spec?.nodeName === node).map(podInfo));
    // The config stream admits a node's own credential only, for a node that exists.
    const nodes = new NodeCredentials(config.trustDomain, ca.config.trustedNodeAccounts, (n) => caches.nodes!.get(n) !== undefined);
    // …and a waypoint's own identity, for a waypoint Gateway that exists.
    const isWaypoint = (ns: string, name: string) => (caches.gateways!.get(name, ns) as { spec?: { gatewayClassName?: string } } | undefined)?.spec?.gatewayClassName === WAYPOINT_CLASS;
    const xds = new ConfigServer({ authorize: (peer) => (peer.node.id.startsWith('waypoint~') ? nodes.waypointStreamRefusal(peer, isWaypoint) : nodes.streamRefusal(peer)) });
    const controller = new Controller(kc, config, ca, xds, caches, nodes);
    for (const [name, i] of Object.entries(caches)) {
      for (const verb of ['add', 'update', 'delete'] as const) i.on(verb, (obj: k8s.KubernetesObject) => controller.onEvent(name, verb, obj));
      // client-node stops an informer on errors other than 410; the controller must keep watching.
      i.on('error', (e: unknown) => {
        if (controller.stopping) return;
        const restart = (ms: number) => setTimeout(() => void (controller.stopping ? undefined : i.start().catch(() => {})), ms);
        // A CRD-defined kind whose CRD is not installed (Gateway API is optional): an empty list
        // until its CRD appears, polled quietly; said once, not every poll.
        const code = (e as { code?: unknown; statusCode?: unknown }).code ?? (e as { statusCode?: unknown }).statusCode;
        if (CUSTOM.some((c) => c.key === name) && code === 404) {
          if (!controller.notServed.has(name)) log.info({ informer: name }, 'this kind is not served (its CRD is not installed); treating it as empty until it is');
          controller.notServed.add(name);
          restart(2000);
          return;
        }
        log.warn({ informer: name, err: String(e) }, 'watch failed; restarting in 1s');
        restart(1000);
      });
      i.on('add', () => controller.notServed.delete(name));
    }
    await Promise.all(Object.values(caches).map((i) => i.start()));
    // Serve only a complete model: a client that connected to an empty store would be told that
    // everything it holds was removed (a restarted controller must not unenrol the mesh).
    await controller.rebuild();
    const xdsPort = await xds.listen(`${config.host}:${config.xdsPort}`, creds);
    controller.xdsPort = xdsPort;
    await controller.startRelay(roots);
    await controller.startDashboard();
    // Campaign only once this replica serves: a leader that writes status also serves the model
    // those writes describe.
    controller.elector?.start();
    controller.directory?.start();
    log.info({ xdsPort, caPort: ca.port, relayPort: controller.relayPort, dashboardPort: controller.dashboard?.port, trustDomain: config.trustDomain }, 'controller ready');
    return controller;
  }

  /** This replica's config-stream clients (what the other replicas learn through the directory). */
  clientRecords(): ClientRecord[] {
    const out: ClientRecord[] = [];
    for (const c of this.xds.status().clients) {
      if (!c.node) continue;
      const types = Object.values(c.types);
      const observer = c.node.id.startsWith('agent~') ? c.node.metadata?.observer : undefined;
      out.push({
        node: c.node.name,
        id: c.node.id,
        ...(observer ? { observer } : {}),
        inSync: types.length > 0 && types.every((t) => t.synced && t.pending === 0 && t.inFlight === 0),
        resources: types.reduce((a, t) => a + t.resources, 0),
        nacks: types.reduce((a, t) => a + t.nacks, 0),
        connectedAt: c.connectedAt,
      });
    }
    return out;
  }

  /**
   * The node agents that announced a flows API, with their config-stream clients — this
   * replica's and, with several replicas, the others' (a node's streams may be on any of them).
   */
  relayPeers(): RelayPeer[] {
    const records = [...this.clientRecords(), ...(this.directory?.others() ?? [])];
    const byNode = new Map<string, RelayPeer>();
    for (const r of records) if (r.observer && !byNode.has(r.node)) byNode.set(r.node, { name: r.node, address: r.observer, configClients: [] });
    const ids = new Set<string>();
    for (const r of records) {
      const peer = byNode.get(r.node);
      // A client that moved between replicas may show on both for a moment: count it once.
      if (!peer || ids.has(r.id)) continue;
      ids.add(r.id);
      peer.configClients.push({ id: r.id, inSync: r.inSync, resources: r.resources, nacks: r.nacks, connectedAt: r.connectedAt });
    }
    return [...byNode.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  private async startRelay(roots: Buffer): Promise<void> {
    const c = this.config;
    const own = await this.ca.authority.issueWorkloadKey({ trustDomain: c.trustDomain, namespace: c.rootNamespace, serviceAccount: CONTROLLER_SERVICE_ACCOUNT }, 365 * 86_400_000);
    const credentials = this.nodes.relayCredentials(roots, own);
    this.relay = new Relay({ peers: () => this.relayPeers(), credentials, version: packageVersion() });
    this.relayServer = await serveObserver(this.relay.service(), `${c.relayHost}:${c.relayPort}`, grpc.ServerCredentials.createInsecure());
    this.relayPort = this.relayServer.port;
  }

  /** The service map. Its port taken is said loudly but does not stop the controller: the map is a
   * view, and the config stream, the CA and the relay matter more. */
  private async startDashboard(): Promise<void> {
    const c = this.config;
    const relayHost = c.relayHost === '0.0.0.0' || c.relayHost === '::' ? '127.0.0.1' : c.relayHost;
    try {
      this.dashboard = await startDashboard({
        host: c.dashboardHost,
        port: c.dashboardPort,
        source: relayFlowSource(`${relayHost.includes(':') ? `[${relayHost}]` : relayHost}:${this.relayPort}`),
        inventory: () => this.inventory(),
        peersKey: () => this.relayPeers().map((p) => `${p.name}=${p.address}`).join(','),
      });
    } catch (e) {
      if (!(e instanceof DashboardListenError)) throw e;
      log.error({ code: e.code, err: e.message }, 'the service map is not served; everything else runs');
    }
  }

  /** The workloads (pods grouped by their workload) and services of the model, for the map. */
  inventory(): Inventory {
    const m = this.model;
    if (!m) return { workloads: [], services: [] };
    const workloads = new Map<string, Inventory['workloads'][number]>();
    for (const w of m.workloads.values()) {
      const name = w.workloadName || w.name;
      const key = `${w.namespace}/${name}`;
      const inMesh = w.tunnelProtocol === 'HBONE' || (workloads.get(key)?.inMesh ?? false);
      workloads.set(key, { namespace: w.namespace, name, serviceAccount: w.serviceAccount, inMesh });
    }
    const byHostname = new Map([...m.waypoints.values()].map((u) => [u.hostname, u.gateway]));
    const services = [...m.services.values()].map((s) => ({
      namespace: s.namespace,
      name: s.name,
      hostname: s.hostname,
      waypoint: s.waypoint?.hostname ? (byHostname.get(s.waypoint.hostname) ?? s.waypoint.hostname) : '',
    }));
    return { workloads: [...workloads.values()], services };
  }

  /** An informer's event: the model's kinds go to the model; the waypoints' Deployments only matter to the writes. */
  private onEvent(kind: string, verb: 'add' | 'update' | 'delete', obj: k8s.KubernetesObject): void {
    if ((MODEL_KINDS as readonly string[]).includes(kind)) {
      if (verb === 'delete') this.engine.delete(kind as ModelKind, obj);
      else this.engine.set(kind as ModelKind, obj);
      this.scheduleBuild();
    } else if (kind === 'waypointDeployments') void this.scheduleWrites();
  }

  private scheduleBuild(): void {
    if (this.timer || this.stopping) return;
    const wait = Math.max(0, this.lastBuildAt + this.config.buildIntervalMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.build();
      } catch (e) {
        log.error({ err: (e as Error).message }, 'model build failed');
      }
    }, wait);
  }

  /** Waits until the model reflects everything the informers have seen, and the writes it calls for are done (tests). */
  async settle(): Promise<void> {
    while (this.timer || this.engine.pending) {
      if (!this.timer) this.build();
      else await new Promise((r) => setTimeout(r, 5));
    }
    await this.writing;
  }

  /** Applies the changes the informers reported, then writes what the leader writes; resolves when both are done. */
  async rebuild(): Promise<void> {
    this.build();
    await this.scheduleWrites();
  }

  /** Commits the model's pending changes and publishes the resources they touched. Synchronous: no build waits for I/O. */
  private build(): void {
    const started = performance.now();
    this.lastBuildAt = started;
    const changes = this.engine.commit();
    const model = this.engine.model;
    const changed = this.xds.batch((tx) => {
      for (const [type, items, names] of [
        [WORKLOAD, model.workloads, changes.workloads],
        [SERVICE, model.services, changes.services],
        [AUTHORIZATION, model.authorizations, changes.authorizations],
        // For waypoints; clients get only the types they subscribe to (ztunnels do not ask for these).
        [ROUTE, model.routes, changes.routes],
        [L7_AUTHORIZATION, model.l7Authorizations, changes.l7Authorizations],
      ] as const) {
        for (const name of names) {
          const value = items.get(name);
          if (value !== undefined) tx.set(type, name, value as never);
          else tx.remove(type, name);
        }
      }
    });
    this.model = model;
    this.builds++;
    log.debug({ ms: Math.round((performance.now() - started) * 10) / 10, full: changes.full, workloads: model.workloads.size, changed }, 'model built');
    void this.scheduleWrites();
  }

  /**
   * Runs a pass of the leader's writes against the current model, or, while one runs, one more
   * after it: writes never hold a build back, and a burst of builds costs at most two passes.
   */
  private scheduleWrites(): Promise<void> {
    this.writeQueued = true;
    if (!this.writeRunning) {
      this.writeRunning = true;
      this.writing = (async () => {
        try {
          while (this.writeQueued) {
            this.writeQueued = false;
            await this.writeOnce();
          }
        } catch (e) {
          log.error({ err: (e as Error).message }, 'writing status failed');
        } finally {
          this.writeRunning = false;
        }
      })();
    }
    return this.writing;
  }

  private async writeOnce(): Promise<void> {
    const model = this.model;
    // The writes are the leader's; a follower serves the same model and writes nothing.
    if (!model || !this.leading) return;
    // The next commit changes the model's maps while these writes wait on the API: write from copies.
    await this.writeStatuses(new Map(model.policyStatus));
    const list = <T>(k: string) => [...this.caches[k]!.list()] as T[];
    await this.deployer.reconcile(list('gateways'), list<k8s.V1Deployment>('waypointDeployments'), list<k8s.V1Service>('services'));
    await this.waypointStatus.write({ ...model, routeStatus: new Map(model.routeStatus), trafficPolicyStatus: new Map(model.trafficPolicyStatus) });
  }

  /** Writes each policy's status when it changed, through the status subresource. */
  private async writeStatuses(statuses: Map<string, PolicyStatus>): Promise<void> {
    const custom = this.kc.makeApiClient(k8s.CustomObjectsApi);
    for (const [key, status] of statuses) {
      // The model keeps the object of a status that did not change: nothing to compare.
      if (this.writtenFrom.get(key) === status) continue;
      const digest = JSON.stringify(status.conditions.map((c) => ({ ...c, lastTransitionTime: undefined })));
      if (this.written.get(key) === digest) {
        this.writtenFrom.set(key, status);
        continue;
      }
      const [kind, namespace, name] = key.split('/') as [string, string, string];
      const plural = kind === 'PeerAuthentication' ? 'peerauthentications' : 'authorizationpolicies';
      await custom
        .patchNamespacedCustomObjectStatus(
          { group: 'security.mesh.io', version: 'v1', namespace, plural, name, body: { status } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        )
        .then(
          () => {
            this.written.set(key, digest);
            this.writtenFrom.set(key, status);
          },
          (e: Error) => log.warn({ policy: key, err: e.message }, 'writing policy status failed'),
        );
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    // First give the Lease away, so that another replica takes over the writes at once.
    await this.writing;
    await this.elector?.stop();
    await this.directory?.stop();
    await Promise.allSettled(Object.values(this.caches).map((i) => i.stop()));
    await this.writing;
    await this.dashboard?.close();
    await this.relayServer?.close();
    this.relay?.close();
    await this.xds.close(1000);
    await this.ca.close();
  }
}

// The local cluster: an embedded Kubernetes API server (which also keeps EndpointSlices), nodes and
// pods made of network namespaces and cgroups on this host, and the controllers that make it behave
// like a cluster — a scheduler, a kubelet per node, service DNAT (kube-proxy) and service names.
// Everything here talks to the API server over HTTPS with @kubernetes/client-node, exactly as the
// mesh's own controller does; nothing reaches into the server's storage.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { findCgroup2Mount } from '../../common/cgroup.ts';
import { logger } from '../../common/log.ts';
import { type ApiServer, startApiServer } from '../apiserver/index.ts';
import { WorkloadControllers } from '../controllers/index.ts';
import { sweepLocalCluster } from '../sweep.ts';
import { Topology } from '../topology.ts';
import { HostsWriter } from './dns.ts';
import { Kubelet } from './kubelet.ts';
import { ServiceProxy, type ServiceRule } from './proxy.ts';
import { EventRecorder } from './events.ts';
import { Scheduler } from './scheduler.ts';
import { KubeletStreams } from './streaming.ts';
import { ApiServiceRelay, type ApiServiceEnv } from './api-service.ts';
import { NodeRoot, sweepNodeRoots } from './noderoot.ts';

const log = logger('local');

interface Informers {
  pods: k8s.Informer<k8s.V1Pod> & k8s.ObjectCache<k8s.V1Pod>;
  services: k8s.Informer<k8s.V1Service> & k8s.ObjectCache<k8s.V1Service>;
  slices: k8s.Informer<k8s.V1EndpointSlice> & k8s.ObjectCache<k8s.V1EndpointSlice>;
  nodes: k8s.Informer<k8s.V1Node> & k8s.ObjectCache<k8s.V1Node>;
}

export interface LocalClusterOptions {
  /** Where the API server keeps its objects, and where logs and the kubeconfig go. */
  stateDir: string;
  nodes?: number;
  /** Starts every namespace name; one cluster per prefix on a host. */
  prefix?: string;
  ipv6?: boolean;
  /** API server port on 127.0.0.1; 0 picks a free one. */
  apiPort?: number;
  onProgress?: (message: string) => void;
}

export function cgroupParentFor(prefix: string): string {
  return join(findCgroup2Mount(), `${prefix}-kubepods`);
}

/** A node's pod subtree (what its agent attaches to, like a kubelet's kubepods). */
export function podCgroupFor(prefix: string, node: string): string {
  return join(cgroupParentFor(prefix), node);
}

export class LocalCluster {
  readonly stateDir: string;
  readonly prefix: string;
  readonly api: ApiServer;
  readonly kubeconfigPath: string;
  readonly kc: k8s.KubeConfig;
  readonly topology: Topology;
  readonly kubelets: Kubelet[];
  private readonly informers: k8s.Informer<k8s.KubernetesObject>[] = [];
  private readonly proxy: ServiceProxy;
  private readonly hosts: HostsWriter;
  private readonly podCache: k8s.ObjectCache<k8s.V1Pod>;
  private readonly svcCache: k8s.ObjectCache<k8s.V1Service>;
  private readonly sliceCache: k8s.ObjectCache<k8s.V1EndpointSlice>;
  private readonly nodeCache: k8s.ObjectCache<k8s.V1Node>;
  private syncTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private controllers: WorkloadControllers | undefined;
  private apiRelay: ApiServiceRelay | undefined;

  private constructor(init: {
    opts: LocalClusterOptions;
    api: ApiServer;
    kc: k8s.KubeConfig;
    kubeconfigPath: string;
    topology: Topology;
    kubelets: Kubelet[];
    hosts: HostsWriter;
    informers: Informers;
  }) {
    this.stateDir = init.opts.stateDir;
    this.prefix = init.opts.prefix ?? 'mesh';
    this.api = init.api;
    this.kc = init.kc;
    this.kubeconfigPath = init.kubeconfigPath;
    this.topology = init.topology;
    this.kubelets = init.kubelets;
    this.hosts = init.hosts;
    this.proxy = new ServiceProxy(init.topology.nodes.map((n) => n.netns));
    this.podCache = init.informers.pods;
    this.svcCache = init.informers.services;
    this.sliceCache = init.informers.slices;
    this.nodeCache = init.informers.nodes;
    this.informers.push(
      init.informers.pods as k8s.Informer<k8s.KubernetesObject>,
      init.informers.services as k8s.Informer<k8s.KubernetesObject>,
      init.informers.slices as k8s.Informer<k8s.KubernetesObject>,
      init.informers.nodes as k8s.Informer<k8s.KubernetesObject>,
    );
  }

  static async start(opts: LocalClusterOptions): Promise<LocalCluster> {
    const progress = opts.onProgress ?? (() => {});
    const prefix = opts.prefix ?? 'mesh';
    const nodes = opts.nodes ?? 2;
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > 16) throw new RangeError(`--nodes must be 1-16, got ${nodes}`);
    mkdirSync(opts.stateDir, { recursive: true });
    const cgroupParent = cgroupParentFor(prefix);
    const swept = [...(await sweepNodeRoots(opts.stateDir)), ...(await sweepLocalCluster(prefix, cgroupParent))];
    if (swept.length) progress(`removed leftovers of an earlier run: ${swept.join(', ')}`);

    progress('starting the API server');
    const api = await startApiServer({ dataDir: join(opts.stateDir, 'apiserver'), port: opts.apiPort ?? 0 });
    const kubeconfigPath = join(opts.stateDir, 'kubeconfig');
    await api.writeKubeconfig(kubeconfigPath);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfigPath);

    let topology: Topology | undefined;
    let relay: ApiServiceRelay | undefined;
    const kubelets: Kubelet[] = [];
    try {
      topology = await Topology.create({ prefix, ipv6: opts.ipv6 ?? true, cgroupParent });
      const hosts = new HostsWriter();
      let apiEnv: ApiServiceEnv | undefined;
      for (let i = 1; i <= nodes; i++) {
        progress(`starting node${i}`);
        const node = await topology.addNode(`node${i}`);
        // Pods reach the API server through the `kubernetes` Service, served on the first node
        // as on a real cluster's control-plane node (api-service.ts).
        if (!relay) ({ relay, env: apiEnv } = await ApiServiceRelay.start(kc, node, api.port, api.caCertPem));
        const root = new NodeRoot(join(opts.stateDir, 'nodes', node.name, 'root'), podCgroupFor(prefix, node.name));
        const kubelet = new Kubelet({ kc, topology, node, logDir: join(opts.stateDir, 'logs'), hosts, root, apiEnv: () => apiEnv });
        kubelets.push(kubelet);
        await kubelet.start();
      }
      api.setPodStreams(new KubeletStreams(() => kubelets));
      const core = kc.makeApiClient(k8s.CoreV1Api);
      const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
      const informers: Informers = {
        pods: k8s.makeInformer(kc, '/api/v1/pods', () => core.listPodForAllNamespaces()),
        services: k8s.makeInformer(kc, '/api/v1/services', () => core.listServiceForAllNamespaces()),
        slices: k8s.makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces()),
        nodes: k8s.makeInformer(kc, '/api/v1/nodes', () => core.listNode()),
      };
      const cluster = new LocalCluster({ opts, api, kc, kubeconfigPath, topology, kubelets, hosts, informers });
      cluster.apiRelay = relay;
      cluster.wire(informers);
      progress('watching the API');
      await Promise.all(Object.values(informers).map((i) => i.start()));
      progress('starting the workload controllers');
      cluster.controllers = await WorkloadControllers.start(kc);
      return cluster;
    } catch (e) {
      await Promise.allSettled(kubelets.map((k) => k.stop()));
      await relay?.stop().catch(() => {});
      await topology?.destroy().catch(() => {});
      await api.stop().catch(() => {});
      throw e;
    }
  }

  private wire(inf: Informers): void {
    const core = this.kc.makeApiClient(k8s.CoreV1Api);
    const scheduler = new Scheduler({
      core,
      recorder: new EventRecorder(core, 'default-scheduler'),
      nodes: () => [...this.nodeCache.list()],
      pods: () => [...this.podCache.list()],
    });
    const schedule = (pod: k8s.V1Pod) => {
      scheduler
        .schedule(pod)
        .then((node) => node ?? log.warn({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}` }, 'no node fits the pod (see its FailedScheduling event)'))
        .catch((e: Error) => log.warn({ pod: pod.metadata?.name, err: e.message }, 'binding failed'));
    };
    const onPod = (deleted: boolean) => (pod: k8s.V1Pod) => {
      const nodeName = pod.spec?.nodeName;
      if (!nodeName && !deleted) return schedule(pod);
      const kubelet = this.kubelets.find((k) => k.node.name === nodeName);
      if (kubelet) kubelet.podChanged(pod, deleted);
      else if (!deleted && pod.metadata?.deletionTimestamp) {
        // No kubelet will ever finish this pod's termination (its node is not in this cluster):
        // removed at once, as kube-controller-manager's pod GC does with orphaned pods.
        const { namespace = 'default', name = '', uid } = pod.metadata;
        core.deleteNamespacedPod({ namespace, name, body: { gracePeriodSeconds: 0, preconditions: { uid } } }).catch(() => undefined);
      }
      this.scheduleSync();
    };
    inf.pods.on('add', onPod(false));
    inf.pods.on('update', onPod(false));
    inf.pods.on('delete', onPod(true));
    // A new node may fit pods that fit nowhere before (kube-scheduler requeues on node add).
    inf.nodes.on('add', () => {
      for (const p of this.podCache.list()) if (!p.spec?.nodeName && !p.metadata?.deletionTimestamp) schedule(p);
    });
    // Service rules follow services and their slices (the API server keeps slices from pods).
    for (const i of [inf.services, inf.slices] as k8s.Informer<k8s.KubernetesObject>[]) {
      i.on('add', () => this.scheduleSync());
      i.on('update', () => this.scheduleSync());
      i.on('delete', () => this.scheduleSync());
    }
    for (const [name, i] of Object.entries(inf) as [string, k8s.Informer<k8s.KubernetesObject>][]) {
      // client-node stops an informer on a non-410 error; the cluster must keep watching.
      i.on('error', (e: unknown) => {
        if (this.stopping) return;
        log.warn({ informer: name, err: String(e) }, 'watch failed; restarting in 1s');
        setTimeout(() => void i.start().catch(() => {}), 1000);
      });
    }
  }

  /** Recomputes service rules and hosts files shortly after a burst of changes. */
  private scheduleSync(): void {
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.syncServices().catch((e: Error) => log.warn({ err: e.message }, 'service sync failed'));
    }, 20);
  }

  private async syncServices(): Promise<void> {
    const services = [...this.svcCache.list()];
    log.debug({ services: services.length, slices: this.sliceCache.list().length }, 'service sync');
    this.hosts.setServices(
      services.map((s) => ({ name: s.metadata!.name!, namespace: s.metadata!.namespace!, clusterIP: s.spec?.clusterIP ?? '' })),
    );
    this.proxy.update(serviceRules(services, [...this.sliceCache.list()]));
  }

  /** Waits until service rules reflect what the caches hold (tests). */
  async settle(): Promise<void> {
    while (this.syncTimer) await new Promise((r) => setTimeout(r, 10));
    await this.proxy.flush();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.syncTimer) clearTimeout(this.syncTimer);
    await this.controllers?.stop();
    await Promise.allSettled(this.informers.map((i) => i.stop()));
    await Promise.allSettled(this.kubelets.map((k) => k.stop()));
    await this.apiRelay?.stop();
    await this.topology.destroy();
    await sweepLocalCluster(this.prefix, this.topology.cgroupParent);
    await this.api.stop();
  }
}

export function serviceRules(services: k8s.V1Service[], slices: k8s.V1EndpointSlice[]): ServiceRule[] {
  const rules: ServiceRule[] = [];
  for (const svc of services) {
    const ip = svc.spec?.clusterIP;
    if (!ip || ip === 'None') continue;
    const mine = slices.filter(
      (s) => s.metadata?.namespace === svc.metadata?.namespace && s.metadata?.labels?.['kubernetes.io/service-name'] === svc.metadata?.name,
    );
    for (const sp of svc.spec?.ports ?? []) {
      const endpoints: ServiceRule['endpoints'] = [];
      for (const s of mine) {
        const port = s.ports?.find((p) => (p.name ?? '') === (sp.name ?? ''))?.port;
        if (!port) continue;
        for (const e of s.endpoints ?? []) if (e.conditions?.ready !== false) for (const a of e.addresses) endpoints.push({ ip: a, port });
      }
      rules.push({ clusterIP: ip, port: sp.port, protocol: (sp.protocol ?? 'TCP') as 'TCP' | 'UDP', endpoints });
    }
  }
  return rules;
}

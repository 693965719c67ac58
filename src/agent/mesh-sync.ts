// From the controller's config stream to the datapath: the agent obtains its own workload
// certificate from the CA (with its node's service-account token), subscribes to Workloads over
// mutual TLS, and keeps the pods of its node that are in the mesh (tunnel protocol HBONE)
// enrolled. A pod is found on this node by its UID (cgroup → a process → its netns), so capture
// starts on running pods without restarting them.
import ipaddr from 'ipaddr.js';
import { logger } from '../common/log.ts';
import { CertificateClient, RotatingCertificates, SecretManager, spiffeId } from '../identity/index.ts';
import { ConfigClient, SERVICE, type Service, WORKLOAD, type Workload } from '../xds/index.ts';
import type { AddressInfo } from './flows.ts';
import type { Agent } from './agent.ts';
import { locatePod } from './locate.ts';

const log = logger('agent');

export interface MeshSyncOptions {
  nodeName: string;
  /** host:port of the controller's config stream and CA. */
  xdsAddress: string;
  caAddress: string;
  /** Name on the controller's serving certificate (its Service DNS name). */
  serverName: string;
  trustDomain: string;
  /** PEM roots (the mesh-ca-root-cert bundle). */
  caRoots: string;
  token: () => string | Promise<string>;
  /** The agent's own identity: namespace and service account of the node DaemonSet. */
  namespace: string;
  serviceAccount: string;
  /** Where pod cgroups live (the cgroup v2 mount or the pods' subtree). */
  cgroupRoot: string;
  /** Runs once the agent has its certificate, before it subscribes; returns what to tell the
   * controller with the subscription (e.g. observer: where this node's flows are served). The
   * credentials follow the certificate as it is renewed. */
  beforeSubscribe?: (certs: RotatingCertificates) => Promise<Record<string, string>>;
  /** Called after each change of the model, once resolve() answers from it. */
  onModelChange?: () => void;
  /** Resolves once a ztunnel serves the pod (ZdsServer.waitServed): a running pod that joins the
   * mesh is captured only then. Without it, capture starts at once. */
  waitServed?: (uid: string, timeoutMs: number) => Promise<string>;
  /** Whether a ztunnel is connected (ZDS). With none, a joining pod is captured at once: there is
   * nobody to wait for, and its connections are refused until one serves it (fail closed). */
  ztunnelConnected?: () => boolean;
}

/**
 * How long a running pod that joins the mesh waits for ztunnel to serve it before its capture
 * starts anyway (its connections are then refused until ztunnel serves it: fail closed).
 */
const JOIN_WAIT_MS = 5_000;

/** How long a pod enrolled at sandbox creation waits for the model to confirm it. */
const SANDBOX_GRACE_MS = 30_000;

/** How long an address that left the model still names flows. */
const GONE_KEEP_MS = 10 * 60_000;

type AgentTypes = { [WORKLOAD]: Workload; [SERVICE]: Service };

function ipText(b: Uint8Array): string {
  return b.length === 4 || b.length === 16 ? ipaddr.fromByteArray([...b]).toString() : '';
}

export class MeshSync {
  private readonly agent: Agent;
  private readonly opts: MeshSyncOptions;
  private client: ConfigClient<AgentTypes> | undefined;
  /** Addresses → what the model says they are (flows name both ends with it). */
  private byIp: Map<string, AddressInfo> | undefined;
  private byIpLast: Map<string, AddressInfo> | undefined;
  private readonly gone = new Map<string, { info: AddressInfo; at: number }>();
  /** This agent's node certificate, kept fresh (the config stream and the flows API use it). */
  certificates: RotatingCertificates | undefined;
  private secrets: SecretManager | undefined;
  private ca: CertificateClient | undefined;
  private caRoots: RotatingCertificates | undefined;
  private retry: NodeJS.Timeout | undefined;
  private syncing = Promise.resolve();
  private closed = false;

  constructor(agent: Agent, opts: MeshSyncOptions) {
    this.agent = agent;
    this.opts = opts;
  }

  async start(): Promise<void> {
    const o = this.opts;
    // The node certificate is renewed at half-life for as long as the agent runs; the CA client
    // trusts the mounted bundle plus whatever roots the CA hands out meanwhile.
    const secrets = new SecretManager({ provider: { fetch: (id) => this.ca!.fetch(id) } });
    this.secrets = secrets;
    this.caRoots = new RotatingCertificates(secrets, undefined, o.caRoots);
    this.ca = new CertificateClient({ address: o.caAddress, credentials: this.caRoots.channelCredentials(), serverName: o.serverName, token: o.token });
    const id = spiffeId(o.trustDomain, o.namespace, o.serviceAccount);
    const cert = await secrets.fetchCertificate(id);
    const certs = new RotatingCertificates(secrets, id, o.caRoots);
    this.certificates = certs;
    secrets.on('certificate', (_id, c) => log.info({ serial: c.leaf.serial, notAfter: c.leaf.notAfter }, 'node certificate renewed'));
    const metadata = o.beforeSubscribe ? await o.beforeSubscribe(certs) : undefined;
    this.client = new ConfigClient<AgentTypes>({
      address: o.xdsAddress,
      credentials: certs.channelCredentials(),
      node: { id: `agent~${o.nodeName}`, name: o.nodeName, cluster: '', ...(metadata ? { metadata } : {}) },
      types: [WORKLOAD, SERVICE],
      channelOptions: { 'grpc.ssl_target_name_override': o.serverName },
    });
    this.client.on('change', () => {
      // Rebuilt now, not when next read: an address that comes and goes between two reads
      // must still be remembered.
      this.byIp = undefined;
      this.resolve('');
      this.opts.onModelChange?.();
      this.schedule();
    });
    this.client.start();
    await this.client.ready(30_000);
    this.schedule();
    log.info({ node: o.nodeName, identity: `${cert.identity.namespace}/${cert.identity.serviceAccount}` }, 'subscribed to the config stream');
  }

  /** The pod or Service VIP at `ip`, from the config stream (all nodes). Addresses that left
   * the model are remembered for a while: flows of short-lived pods are read after they are gone. */
  resolve(ip: string): AddressInfo | undefined {
    if (!this.client) return undefined;
    if (!this.byIp) {
      const m = new Map<string, AddressInfo>();
      for (const [, { value: sv }] of this.client.entries(SERVICE)) {
        for (const a of sv.addresses) {
          const t = ipText(a.address);
          if (t) m.set(t, { namespace: sv.namespace, service: sv.hostname });
        }
      }
      for (const [, { value: w }] of this.client.entries(WORKLOAD)) {
        const info: AddressInfo = {
          namespace: w.namespace,
          podName: w.name,
          workload: w.workloadName || w.name,
          serviceAccount: w.serviceAccount,
          nodeName: w.node,
          labels: Object.entries(w.labels ?? {}).map(([k, v]) => `${k}=${v}`),
          backs: Object.keys(w.services).map((k) => k.slice(k.indexOf('/') + 1)),
          inMesh: w.tunnelProtocol === 'HBONE',
          notCapturedReason: w.notCapturedReason ?? '',
        };
        for (const a of w.addresses) {
          const t = ipText(a);
          if (t) m.set(t, info);
        }
      }
      const now = Date.now();
      for (const [addr, g] of this.gone) if (m.has(addr) || g.at < now - GONE_KEEP_MS) this.gone.delete(addr);
      for (const [addr, info] of this.byIpLast ?? []) if (!m.has(addr) && !this.gone.has(addr)) this.gone.set(addr, { info: { ...info, goneAtMs: now }, at: now });
      this.byIp = m;
      this.byIpLast = m;
    }
    return this.byIp.get(ip) ?? this.gone.get(ip)?.info;
  }

  private schedule(): void {
    this.syncing = this.syncing.then(() => this.sync()).catch((e: Error) => log.error({ err: e.message }, 'enrolment sync failed'));
  }

  /** Enrols exactly the mesh pods of this node that are running; retries the ones still starting. */
  private async sync(): Promise<void> {
    if (this.closed || !this.client) return;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    let again = false;
    let graceEnds = Infinity;
    const wanted = new Map<string, Workload>();
    const known = new Set<string>();
    for (const [, { value: w }] of this.client.entries(WORKLOAD)) {
      if (!w.podUid) continue;
      known.add(w.podUid);
      if (w.node === this.opts.nodeName && w.tunnelProtocol === 'HBONE') wanted.set(w.podUid, w);
    }
    const enrolment = this.agent.enrolment;
    const early = this.agent.enrolledAtSandbox;
    const now = Date.now();
    for (const p of enrolment.list()) {
      if (wanted.has(p.uid)) {
        early.delete(p.uid);
        continue;
      }
      // Enrolled at sandbox creation and not in the model yet: keep it while the controller
      // catches up (a pod gets its workload once it has an address); then the model decides.
      const at = early.get(p.uid);
      if (at !== undefined && !known.has(p.uid) && now - at < SANDBOX_GRACE_MS) {
        graceEnds = Math.min(graceEnds, at + SANDBOX_GRACE_MS);
        continue;
      }
      early.delete(p.uid);
      enrolment.unenrol(p.uid);
    }
    for (const [uid, w] of wanted) {
      // A pod not found (no process yet, or a container restarting) keeps what it has and is retried.
      const where = await locatePod(uid, this.opts.cgroupRoot);
      if (!where) {
        again = true;
        continue;
      }
      try {
        // A pod this agent has not enrolled is already running (a pod is enrolled at sandbox
        // creation otherwise): its namespace or its label just put it in the mesh. Capturing it
        // before ztunnel has opened its listeners would refuse its connections meanwhile (as
        // Istio's node agent, wait for ztunnel first); until then they go as they went before.
        const joining = !enrolment.get(uid) && this.opts.waitServed !== undefined && (this.opts.ztunnelConnected?.() ?? true);
        enrolment.enrol(
          {
            uid,
            name: `${w.namespace}/${w.name}`,
            netnsPath: where.netnsPath,
            cgroupPath: where.cgroupPath,
            addresses: w.addresses.map(ipText).filter(Boolean),
            workload: { name: w.name, namespace: w.namespace, serviceAccount: w.serviceAccount },
          },
          joining ? { capture: false } : {},
        );
        if (joining) void this.captureWhenServed(uid, `${w.namespace}/${w.name}`);
      } catch (e) {
        again = true;
        log.warn({ pod: `${w.namespace}/${w.name}`, err: (e as Error).message }, 'enrolment failed');
      }
    }
    if (again) this.retry = setTimeout(() => this.schedule(), 200);
    else if (graceEnds < Infinity) this.retry = setTimeout(() => this.schedule(), graceEnds - now + 10);
  }

  /** Turns a joining pod's capture on once ztunnel serves it, or after JOIN_WAIT_MS regardless. */
  private async captureWhenServed(uid: string, pod: string): Promise<void> {
    const t0 = Date.now();
    const outcome = await this.opts.waitServed!(uid, JOIN_WAIT_MS);
    if (this.closed || !this.agent.enrolment.capture(uid)) return;
    if (outcome === 'served') log.debug({ pod, waitedMs: Date.now() - t0 }, 'ztunnel serves the pod: capture on');
    else log.warn({ pod, ztunnel: outcome }, `ztunnel did not serve the pod within ${JOIN_WAIT_MS} ms: capture on regardless, its connections are refused until ztunnel serves it (fail closed)`);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    await this.client?.close();
    this.certificates?.close();
    this.caRoots?.close();
    this.secrets?.close();
    this.ca?.close();
  }
}

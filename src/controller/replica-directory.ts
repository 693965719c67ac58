// What each controller replica tells the others: the config-stream clients it serves. A node's
// agent and ztunnel may each stream from any replica (through the Service), but the flow relay of
// every replica must reach every node's flows API, whose address arrives only with the agent's
// own stream. So each replica keeps a Lease of its own, `<lease>-<identity>` (as each kube-apiserver
// keeps its identity Lease in kube-system), renewed every retry period, with its clients in an
// annotation; every replica lists them and joins the fresh ones to its own. A replica that stops
// deletes its Lease; one that died stops being renewed, is ignored once it has not changed for
// STALE_AFTER by the reader's clock, and the leader deletes it later.
import * as k8s from '@kubernetes/client-node';
import { logger } from '../common/log.ts';
import { installOwner } from './owner.ts';

const log = logger('controller');

/** One config-stream client of one replica, as the relay needs it. */
export interface ClientRecord {
  /** The node's name (the stream's authenticated node). */
  readonly node: string;
  /** The stream's node id (`agent~…`, `ztunnel~…`, `waypoint~…`). */
  readonly id: string;
  /** The agent's flows API, when it announced one. */
  readonly observer?: string;
  readonly inSync: boolean;
  readonly resources: number;
  readonly nacks: number;
  readonly connectedAt: string;
}

export const REPLICA_LABEL = 'mesh.io/controller-replica-of';
export const CLIENTS_ANNOTATION = 'mesh.io/config-clients';

export interface DirectorySettings {
  readonly namespace: string;
  /** The election Lease's name; each replica's Lease is `<name>-<pod>`. */
  readonly leaseName: string;
  /** This replica's holder identity (pod name and a random suffix): its Lease is named after it. */
  readonly identity: string;
  readonly periodMs: number;
}

const statusOf = (e: unknown): number | undefined => {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'number' ? c : undefined;
};

export class ReplicaDirectory {
  private readonly api: k8s.CoordinationV1Api;
  private readonly s: DirectorySettings;
  private readonly own: () => ClientRecord[];
  private readonly leading: () => boolean;
  private readonly name: string;
  /** Other replicas' Leases: name → what they said and when (monotonic) it last changed. */
  private readonly seen = new Map<string, { rv: string; at: number; clients: ClientRecord[] }>();
  private resourceVersion: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  private lastFailure = '';

  constructor(kc: k8s.KubeConfig, s: DirectorySettings, own: () => ClientRecord[], leading: () => boolean) {
    this.api = kc.makeApiClient(k8s.CoordinationV1Api);
    this.s = s;
    this.own = own;
    this.leading = leading;
    // A Lease name is a DNS subdomain (≤ 253, lower case, no '_'); pod names are far shorter.
    this.name = `${s.leaseName}-${s.identity}`
      .toLowerCase()
      .replace(/[^a-z0-9.-]/g, '-')
      .slice(0, 253);
  }

  /** A replica is stale once its Lease has not changed for this long (3 renewals missed). */
  private get staleAfterMs(): number {
    return Math.max(3 * this.s.periodMs, 5000);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const tick = () => {
      if (!this.running) return;
      this.loop = this.round().finally(() => {
        if (this.running) this.timer = setTimeout(tick, this.s.periodMs);
      });
    };
    tick();
  }

  /** The other replicas' fresh clients. */
  others(): ClientRecord[] {
    const now = performance.now();
    return [...this.seen.values()].filter((e) => now - e.at < this.staleAfterMs).flatMap((e) => e.clients);
  }

  private async round(): Promise<void> {
    try {
      await this.publish();
      await this.read();
      this.lastFailure = '';
    } catch (e) {
      const msg = `replica Lease ${this.s.namespace}/${this.name}: ${(e as Error)?.message ?? String(e)}${statusOf(e) === 403 ? ' — the chart grants list, update and delete on Leases in mesh-system through the Role mesh-controller-leader-election' : ''}`;
      if (msg !== this.lastFailure) log.warn({ code: statusOf(e) }, `sharing config clients with the other replicas failed: ${msg}`);
      this.lastFailure = msg;
    }
  }

  private body(): k8s.V1Lease {
    const now = new k8s.V1MicroTime(Date.now());
    return {
      metadata: {
        name: this.name,
        namespace: this.s.namespace,
        labels: { [REPLICA_LABEL]: this.s.leaseName, 'app.kubernetes.io/name': 'mesh', 'app.kubernetes.io/component': 'controller' },
        annotations: { [CLIENTS_ANNOTATION]: JSON.stringify(this.own()) },
        ...installOwner(),
        ...(this.resourceVersion ? { resourceVersion: this.resourceVersion } : {}),
      },
      spec: { holderIdentity: this.s.identity, leaseDurationSeconds: Math.ceil(this.staleAfterMs / 1000), renewTime: now },
    };
  }

  private async publish(): Promise<void> {
    const { namespace } = this.s;
    if (this.resourceVersion) {
      try {
        this.resourceVersion = (await this.api.replaceNamespacedLease({ name: this.name, namespace, body: this.body() })).metadata?.resourceVersion;
        return;
      } catch (e) {
        if (statusOf(e) !== 409 && statusOf(e) !== 404) throw e;
        this.resourceVersion = undefined; // someone else wrote it, or it was deleted: start over
      }
    }
    try {
      this.resourceVersion = (await this.api.createNamespacedLease({ namespace, body: this.body() })).metadata?.resourceVersion;
    } catch (e) {
      if (statusOf(e) !== 409) throw e;
      // Ours, written by a request whose answer was lost: take it over with the version listed.
      const mine = (await this.api.listNamespacedLease({ namespace, labelSelector: `${REPLICA_LABEL}=${this.s.leaseName}` })).items.find((l) => l.metadata?.name === this.name);
      this.resourceVersion = mine?.metadata?.resourceVersion;
    }
  }

  private async read(): Promise<void> {
    const { namespace } = this.s;
    const list = await this.api.listNamespacedLease({ namespace, labelSelector: `${REPLICA_LABEL}=${this.s.leaseName}` });
    const now = performance.now();
    const present = new Set<string>();
    for (const l of list.items) {
      const name = l.metadata?.name ?? '';
      if (!name || name === this.name) continue;
      present.add(name);
      const rv = l.metadata?.resourceVersion ?? '';
      const prev = this.seen.get(name);
      if (prev?.rv === rv) {
        // Unchanged for long: its replica is gone without deleting it. The leader tidies up.
        if (now - prev.at > 20 * this.staleAfterMs && this.leading()) {
          await this.api.deleteNamespacedLease({ name, namespace }).catch(() => undefined);
          log.info({ lease: `${namespace}/${name}` }, 'deleted the Lease of a controller replica that is gone');
        }
        continue;
      }
      let clients: ClientRecord[] = [];
      try {
        clients = JSON.parse(l.metadata?.annotations?.[CLIENTS_ANNOTATION] ?? '[]') as ClientRecord[];
      } catch {
        log.warn({ lease: `${namespace}/${name}` }, 'a replica Lease has a malformed client list; ignoring it');
      }
      this.seen.set(name, { rv, at: now, clients });
    }
    for (const name of this.seen.keys()) if (!present.has(name)) this.seen.delete(name);
  }

  /** Stops, and deletes this replica's Lease so the others forget its clients at once. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.timer);
    await this.loop;
    await this.api.deleteNamespacedLease({ name: this.name, namespace: this.s.namespace }).catch(() => undefined);
  }
}

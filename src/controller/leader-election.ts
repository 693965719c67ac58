// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection package does
// it (client-node 2.x has no such helper): every replica polls the Lease; the holder renews it
// every retry period; another replica takes it only when it has seen the same record, unchanged,
// for a whole lease duration (by its own monotonic clock, so the replicas' clocks need not
// agree). Every write is a replace guarded by the resourceVersion read just before, so two
// candidates cannot both win: the second gets 409 Conflict and stays a follower.
//
// The leader that cannot renew within the renew deadline stops leading on its own, before its
// Lease can expire for the others (renew deadline < lease duration), so two replicas never both
// believe they lead for longer than the clock drift between them over one lease duration.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import * as k8s from '@kubernetes/client-node';
import { logger } from '../common/log.ts';
import { installOwner } from './owner.ts';

const log = logger('leader-election');

export interface LeaseSettings {
  /** The Lease's namespace and name (the chart's Role grants get and update on that name). */
  readonly namespace: string;
  readonly name: string;
  /** This replica's holderIdentity; unique per process (a restarted pod is a new candidate). */
  readonly identity: string;
  /** How long the others wait, after the Lease last changed, before they take it. */
  readonly leaseDurationMs: number;
  /** How long the leader keeps leading without a successful renewal. */
  readonly renewDeadlineMs: number;
  /** How often the Lease is read, and renewed by its holder. */
  readonly retryPeriodMs: number;
}

/** client-go's defaults (kube-controller-manager's --leader-elect-* flags): 15 s, 10 s, 2 s. */
export const LEASE_DEFAULTS = Object.freeze({ name: 'mesh-controller', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 });

/** A holder identity as client-go makes one: the pod's name (its hostname) and a random suffix. */
export function holderIdentity(podName = hostname()): string {
  return `${podName}_${randomUUID().slice(0, 8)}`;
}

export interface LeaderCallbacks {
  /** This replica now leads: start the duties only one replica may do. */
  onStartedLeading(): void;
  /** It no longer leads (lost the Lease, or stopping): stop them. */
  onStoppedLeading(): void;
}

export interface LeaderStatus {
  readonly identity: string;
  readonly leading: boolean;
  /** The holder this replica last saw ('' when the Lease was released or not read yet). */
  readonly holder: string;
  readonly transitions: number;
}

interface Observed {
  holder: string;
  renewTime: string;
  transitions: number;
  /** The record's leaseDurationSeconds, in ms. */
  durationMs: number;
  /** performance.now() when this replica first saw this record. */
  at: number;
}

const statusOf = (e: unknown): number | undefined => {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'number' ? c : undefined;
};

/** What the API server said (its Status message), not client-node's dump of the whole response. */
function messageOf(e: unknown): string {
  const body = (e as { body?: unknown })?.body;
  try {
    const msg = (typeof body === 'string' ? (JSON.parse(body) as { message?: unknown }) : (body as { message?: unknown } | undefined))?.message;
    if (typeof msg === 'string' && msg) return msg;
  } catch {
    // not JSON: the error's own message below
  }
  return (e as Error)?.message ?? String(e);
}

const micro = (ms = Date.now()): k8s.V1MicroTime => new k8s.V1MicroTime(ms);

export class LeaderElector {
  readonly settings: LeaseSettings;
  private readonly api: k8s.CoordinationV1Api;
  private readonly callbacks: LeaderCallbacks;
  private observed: Observed | undefined;
  private leading = false;
  /** performance.now() of the last successful acquire or renew. */
  private renewedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  /** Said once per kind of failure, not on every retry. */
  private lastFailure = '';

  constructor(kc: k8s.KubeConfig, settings: LeaseSettings, callbacks: LeaderCallbacks) {
    if (!(settings.leaseDurationMs > settings.renewDeadlineMs && settings.renewDeadlineMs > settings.retryPeriodMs && settings.retryPeriodMs > 0)) {
      throw new Error(
        `leader election needs lease duration > renew deadline > retry period > 0 (got ${settings.leaseDurationMs} ms, ${settings.renewDeadlineMs} ms, ${settings.retryPeriodMs} ms): a leader must give up before the others may take over`,
      );
    }
    this.settings = settings;
    this.callbacks = callbacks;
    this.api = kc.makeApiClient(k8s.CoordinationV1Api);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  status(): LeaderStatus {
    return { identity: this.settings.identity, leading: this.leading, holder: this.observed?.holder ?? '', transitions: this.observed?.transitions ?? 0 };
  }

  /** Starts campaigning; returns at once (the first attempt runs now). */
  start(): void {
    if (this.running) return;
    this.running = true;
    log.info({ lease: `${this.settings.namespace}/${this.settings.name}`, identity: this.settings.identity }, 'campaigning for the lease');
    this.tick();
  }

  private tick(): void {
    if (!this.running) return;
    this.loop = this.attempt().finally(() => {
      if (!this.running) return;
      // Followers poll with jitter (client-go's JitterFactor 1.2) so that candidates do not retry
      // in lockstep; the leader renews on the period. A follower also tries right when the
      // holder's Lease runs out, rather than up to a period later.
      let wait = this.leading ? this.settings.retryPeriodMs : this.settings.retryPeriodMs * (1 + Math.random() * 0.2);
      const o = this.observed;
      if (!this.leading && o?.holder && o.holder !== this.settings.identity) wait = Math.max(0, Math.min(wait, o.at + o.durationMs - performance.now() + 5));
      this.timer = setTimeout(() => this.tick(), wait);
    });
  }

  private async attempt(): Promise<void> {
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
      this.lastFailure = '';
    } catch (e) {
      this.failed(e);
    }
    const now = performance.now();
    if (ok) {
      this.renewedAt = now;
      if (!this.leading && this.running) {
        this.leading = true;
        log.info({ lease: `${this.settings.namespace}/${this.settings.name}`, identity: this.settings.identity, transitions: this.observed?.transitions }, 'became the leader');
        this.callbacks.onStartedLeading();
      }
    } else if (this.leading && now - this.renewedAt > this.settings.renewDeadlineMs) {
      this.leading = false;
      log.warn({ identity: this.settings.identity, holder: this.observed?.holder, renewDeadlineMs: this.settings.renewDeadlineMs }, 'could not renew the lease within the renew deadline; no longer the leader');
      this.callbacks.onStoppedLeading();
    }
  }

  private failed(e: unknown): void {
    const code = statusOf(e);
    const lease = `Lease ${this.settings.namespace}/${this.settings.name}`;
    const hint =
      code === 403
        ? ` — the controller may not read or write ${lease}: the chart grants that through the Role mesh-controller-leader-election, rendered when controller.replicas > 1`
        : code === 404
          ? ` — does the namespace ${this.settings.namespace} exist?`
          : '';
    const msg = `${lease}: ${messageOf(e)}${hint}`;
    if (msg !== this.lastFailure) log.warn({ code, identity: this.settings.identity }, `leader election failed: ${msg}`);
    this.lastFailure = msg;
  }

  /** One round of client-go's tryAcquireOrRenew: true when this replica holds the Lease now. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.settings;
    const durationSeconds = Math.max(1, Math.ceil(this.settings.leaseDurationMs / 1000));
    let lease: k8s.V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (e) {
      if (statusOf(e) !== 404) throw e;
      const now = micro();
      const body: k8s.V1Lease = {
        metadata: { name, namespace, labels: { 'app.kubernetes.io/name': 'mesh', 'app.kubernetes.io/component': 'controller' }, ...installOwner() },
        spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
      };
      try {
        await this.api.createNamespacedLease({ namespace, body });
      } catch (e2) {
        if (statusOf(e2) === 409) return false; // another replica created it first
        throw e2;
      }
      this.observe(identity, now.toISOString(), 0, durationSeconds);
      return true;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const renewTime = spec.renewTime ? new Date(spec.renewTime as unknown as string).toISOString() : '';
    const transitions = spec.leaseTransitions ?? 0;
    this.observe(holder, renewTime, transitions, spec.leaseDurationSeconds ?? durationSeconds);
    const observedFor = performance.now() - this.observed!.at;
    // Held by another and not expired by our own clock: follow. A released Lease (no holder, as
    // a leader leaves it when it stops) is free at once.
    if (holder && holder !== identity && observedFor < (spec.leaseDurationSeconds ?? durationSeconds) * 1000) return false;
    const now = micro();
    const taking = holder !== identity;
    const next: k8s.V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        renewTime: now,
        acquireTime: taking ? now : spec.acquireTime,
        leaseTransitions: taking ? transitions + 1 : transitions,
      },
    };
    try {
      // metadata.resourceVersion is the one just read: a write by anyone since makes this a 409.
      await this.api.replaceNamespacedLease({ name, namespace, body: next });
    } catch (e) {
      if (statusOf(e) === 409) return false;
      throw e;
    }
    this.observe(identity, now.toISOString(), next.spec!.leaseTransitions ?? 0, durationSeconds);
    if (taking) log.info({ identity, previous: holder || '(released)', transitions: next.spec!.leaseTransitions }, 'took the lease');
    return true;
  }

  private observe(holder: string, renewTime: string, transitions: number, durationSeconds: number): void {
    const o = this.observed;
    if (o && o.holder === holder && o.renewTime === renewTime) return;
    this.observed = { holder, renewTime, transitions, durationMs: durationSeconds * 1000, at: performance.now() };
  }

  /**
   * Stops campaigning. A leader releases the Lease (empty holder, as client-go's ReleaseOnCancel),
   * so another replica takes over on its next poll instead of after a whole lease duration.
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.timer);
    await this.loop;
    if (!this.leading) return;
    this.leading = false;
    this.callbacks.onStoppedLeading();
    const { namespace, name, identity } = this.settings;
    try {
      const lease = await this.api.readNamespacedLease({ name, namespace });
      if (lease.spec?.holderIdentity !== identity) return;
      const now = micro();
      await this.api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: now, acquireTime: now } } });
      log.info({ identity }, 'released the lease');
    } catch (e) {
      log.warn({ identity, err: (e as Error)?.message ?? String(e) }, 'could not release the lease; the next leader takes it when it expires');
    }
  }
}

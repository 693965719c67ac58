// The ReplicaSet controller (pkg/controller/replicaset): keeps spec.replicas active pods carrying
// the template, named `<rs>-<5 random>` through generateName and owned by the ReplicaSet
// (controller, blockOwnerDeletion); scales down the least useful pods first (unscheduled, pending,
// not ready, then the newest); writes status replicas/readyReplicas/availableReplicas.
import type * as k8s from '@kubernetes/client-node';
import type { EventRecorder } from '../runtime/events.ts';
import { type Cache, controllerOf, Expectations, isActive, isAvailable, isReady, type Key, ownerReference, WorkQueue, watchOwnerAndPods } from './base.ts';

export interface ReplicaSetDeps {
  apps: k8s.AppsV1Api;
  core: k8s.CoreV1Api;
  recorder: EventRecorder;
  replicaSets: Cache<k8s.V1ReplicaSet>;
  pods: Cache<k8s.V1Pod>;
}

const BURST = 500; // kube's burstReplicas: creates/deletes per reconcile

/** Pods of `owner` (by controller ownerReference uid) in its namespace, from the cache. */
export function podsOwnedBy(pods: k8s.ObjectCache<k8s.V1Pod>, owner: k8s.KubernetesObject): k8s.V1Pod[] {
  return pods.list(owner.metadata!.namespace).filter((p) => controllerOf(p)?.uid === owner.metadata!.uid);
}

/** kube's ActivePodsWithRanks order, reduced: the first pods are the first to delete. */
export function deletionOrder(pods: k8s.V1Pod[]): k8s.V1Pod[] {
  const phase = (p: k8s.V1Pod) => ({ Pending: 0, Unknown: 1, Running: 2 })[p.status?.phase ?? 'Pending'] ?? 0;
  const created = (p: k8s.V1Pod) => new Date(p.metadata?.creationTimestamp ?? 0).getTime();
  return [...pods].sort(
    (a, b) =>
      Number(Boolean(a.spec?.nodeName)) - Number(Boolean(b.spec?.nodeName)) ||
      phase(a) - phase(b) ||
      Number(isReady(a)) - Number(isReady(b)) ||
      created(b) - created(a) ||
      (b.metadata!.name! < a.metadata!.name! ? -1 : 1),
  );
}

export class ReplicaSetController {
  private readonly d: ReplicaSetDeps;
  private readonly expectations = new Expectations();
  readonly queue: WorkQueue;

  constructor(deps: ReplicaSetDeps) {
    this.d = deps;
    this.queue = new WorkQueue('replicaset', (k) => this.reconcile(k));
    watchOwnerAndPods('ReplicaSet', deps.replicaSets, deps.pods, this.queue, this.expectations);
  }

  private async reconcile(key: Key): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    const rs = this.d.replicaSets.get(name, namespace);
    if (!rs || rs.metadata?.deletionTimestamp) return;
    const owned = podsOwnedBy(this.d.pods, rs);
    const active = owned.filter(isActive);
    if (this.expectations.satisfied(key)) await this.scale(key, rs, active);
    await this.writeStatus(rs, active);
  }

  private async scale(key: Key, rs: k8s.V1ReplicaSet, active: k8s.V1Pod[]): Promise<void> {
    const namespace = rs.metadata!.namespace!;
    const diff = (rs.spec?.replicas ?? 1) - active.length;
    const involved = { apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: rs.metadata };
    if (diff > 0) {
      const n = Math.min(diff, BURST);
      const made = await Promise.allSettled(
        Array.from({ length: n }, () =>
          this.d.core.createNamespacedPod({ namespace, body: podFromTemplate(rs.spec!.template, `${rs.metadata!.name}-`, ownerReference(rs, 'apps/v1', 'ReplicaSet')) }),
        ),
      );
      const names = made.flatMap((r) => (r.status === 'fulfilled' ? [r.value.metadata!.name!] : []));
      this.expectations.expect(key, names, []);
      for (const pod of names) void this.d.recorder.record(involved, 'Normal', 'SuccessfulCreate', `Created pod: ${pod}`);
      const failed = made.find((r) => r.status === 'rejected');
      if (failed) {
        const msg = String((failed.reason as Error).message ?? failed.reason);
        void this.d.recorder.record(involved, 'Warning', 'FailedCreate', `Error creating: ${msg}`);
        throw new Error(`creating pods for ${key}: ${msg}`);
      }
    } else if (diff < 0) {
      const victims = deletionOrder(active).slice(0, Math.min(-diff, BURST));
      this.expectations.expect(key, [], victims.map((p) => p.metadata!.uid!));
      await Promise.all(
        victims.map(async (p) => {
          await this.d.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace }).catch((e: { code?: number }) => {
            if (e.code !== 404) throw e;
          });
          void this.d.recorder.record(involved, 'Normal', 'SuccessfulDelete', `Deleted pod: ${p.metadata!.name}`);
        }),
      );
    }
  }

  private async writeStatus(rs: k8s.V1ReplicaSet, active: k8s.V1Pod[]): Promise<void> {
    const minReady = rs.spec?.minReadySeconds ?? 0;
    const sel = rs.spec?.template?.metadata?.labels ?? {};
    const status: k8s.V1ReplicaSetStatus = {
      replicas: active.length,
      fullyLabeledReplicas: active.filter((p) => Object.entries(sel).every(([k, v]) => p.metadata?.labels?.[k] === v)).length,
      readyReplicas: active.filter(isReady).length,
      availableReplicas: active.filter((p) => isAvailable(p, minReady)).length,
      observedGeneration: rs.metadata?.generation ?? 1,
    };
    const cur = rs.status ?? { replicas: 0 };
    if (
      cur.replicas === status.replicas &&
      (cur.fullyLabeledReplicas ?? 0) === status.fullyLabeledReplicas &&
      (cur.readyReplicas ?? 0) === status.readyReplicas &&
      (cur.availableReplicas ?? 0) === status.availableReplicas &&
      cur.observedGeneration === status.observedGeneration
    )
      return;
    await this.d.apps.replaceNamespacedReplicaSetStatus({ name: rs.metadata!.name!, namespace: rs.metadata!.namespace!, body: { ...rs, status } }).catch((e: { code?: number }) => {
      if (e.code === 409) return this.queue.add(`${rs.metadata!.namespace}/${rs.metadata!.name}`, 50); // a newer rs is on its way
      if (e.code !== 404) throw e;
    });
    // A pod that becomes available after minReadySeconds makes no event: look again then.
    if (minReady && status.availableReplicas! < status.readyReplicas!) this.queue.add(`${rs.metadata!.namespace}/${rs.metadata!.name}`, minReady * 1000);
  }
}

/** A pod from a template (kube's GetPodFromTemplate): labels, annotations, spec, owner. */
export function podFromTemplate(template: k8s.V1PodTemplateSpec | undefined, generateName: string, owner: k8s.V1OwnerReference, extra?: Partial<k8s.V1ObjectMeta>): k8s.V1Pod {
  const meta = template?.metadata ?? {};
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName,
      labels: { ...(meta.labels ?? {}) },
      ...(meta.annotations ? { annotations: { ...meta.annotations } } : {}),
      ownerReferences: [owner],
      ...extra,
    },
    spec: structuredClone(template?.spec ?? { containers: [] }),
  };
}

// The StatefulSet controller (pkg/controller/statefulset), without volume claims: pods with stable
// names `<sts>-0 … <sts>-(n-1)`, hostname and subdomain set from the name and spec.serviceName.
// OrderedReady creates ordinal i only once 0…i-1 are Running and Ready and removes the highest
// ordinal first, one at a time; Parallel does both at once. A RollingUpdate replaces pods from the
// highest ordinal down to spec.updateStrategy.rollingUpdate.partition, one at a time, each after
// the ones above it are Ready again. The revision is a hash label (controller-revision-hash).
import type * as k8s from '@kubernetes/client-node';
import type { EventRecorder } from '../runtime/events.ts';
import { type Cache, Expectations, isAvailable, isReady, isTerminated, type Key, ownerReference, templateHash, WorkQueue, watchOwnerAndPods } from './base.ts';
import { podFromTemplate, podsOwnedBy } from './replicaset.ts';

const REVISION_LABEL = 'controller-revision-hash';

export interface StatefulSetDeps {
  apps: k8s.AppsV1Api;
  core: k8s.CoreV1Api;
  recorder: EventRecorder;
  statefulSets: Cache<k8s.V1StatefulSet>;
  pods: Cache<k8s.V1Pod>;
}

const ordinalOf = (sts: k8s.V1StatefulSet, p: k8s.V1Pod): number => {
  const m = new RegExp(`^${sts.metadata!.name!.replace(/[.]/g, '\\.')}-(\\d+)$`).exec(p.metadata?.name ?? '');
  return m ? Number(m[1]) : -1;
};
const healthy = (p: k8s.V1Pod | undefined): boolean => Boolean(p && !p.metadata?.deletionTimestamp && p.status?.phase === 'Running' && isReady(p));

export class StatefulSetController {
  private readonly d: StatefulSetDeps;
  private readonly expectations = new Expectations();
  readonly queue: WorkQueue;

  constructor(deps: StatefulSetDeps) {
    this.d = deps;
    this.queue = new WorkQueue('statefulset', (k) => this.reconcile(k));
    watchOwnerAndPods('StatefulSet', deps.statefulSets, deps.pods, this.queue, this.expectations);
  }

  private async reconcile(key: Key): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    const sts = this.d.statefulSets.get(name, namespace);
    if (!sts || sts.metadata?.deletionTimestamp) return;
    const hash = templateHash(sts.spec!.template);
    const pods = podsOwnedBy(this.d.pods, sts).filter((p) => ordinalOf(sts, p) >= 0);
    const byOrdinal = new Map(pods.map((p) => [ordinalOf(sts, p), p]));
    if (this.expectations.satisfied(key)) await this.step(key, sts, hash, byOrdinal);
    await this.writeStatus(sts, hash, pods);
  }

  /** One step of kube's updateStatefulSet: the first thing to do, or all of them when Parallel. */
  private async step(key: Key, sts: k8s.V1StatefulSet, hash: string, byOrdinal: Map<number, k8s.V1Pod>): Promise<void> {
    const replicas = sts.spec?.replicas ?? 1;
    const ordered = sts.spec?.podManagementPolicy !== 'Parallel';
    const create: number[] = [];
    const remove: k8s.V1Pod[] = [];
    // A pod that ended (Failed/Succeeded) is replaced under the same name.
    for (const p of byOrdinal.values()) if (isTerminated(p) && !p.metadata?.deletionTimestamp) remove.push(p);
    if (remove.length === 0) {
      for (let i = 0; i < replicas; i++) {
        const p = byOrdinal.get(i);
        if (!p) {
          create.push(i);
          if (ordered) break;
        } else if (ordered && !healthy(p)) break; // wait for this ordinal before going on
      }
    }
    if (remove.length === 0 && create.length === 0) {
      const extra = [...byOrdinal.keys()].filter((i) => i >= replicas).sort((a, b) => b - a);
      const allHealthy = [...byOrdinal.values()].every(healthy);
      if (extra.length && (!ordered || allHealthy)) remove.push(...(ordered ? extra.slice(0, 1) : extra).map((i) => byOrdinal.get(i)!));
    }
    if (remove.length === 0 && create.length === 0 && sts.spec?.updateStrategy?.type !== 'OnDelete') {
      const partition = sts.spec?.updateStrategy?.rollingUpdate?.partition ?? 0;
      const all = [...Array(replicas).keys()].map((i) => byOrdinal.get(i));
      if (all.every(healthy)) {
        for (let i = replicas - 1; i >= partition; i--) {
          const p = byOrdinal.get(i)!;
          if (p.metadata?.labels?.[REVISION_LABEL] !== hash) {
            remove.push(p);
            break;
          }
        }
      }
    }
    const involved = { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: sts.metadata };
    const namespace = sts.metadata!.namespace!;
    const made = await Promise.all(
      create.map(async (i) => {
        const podName = `${sts.metadata!.name}-${i}`;
        const pod = podFromTemplate(sts.spec!.template, '', ownerReference(sts, 'apps/v1', 'StatefulSet'), { name: podName });
        delete pod.metadata!.generateName;
        Object.assign(pod.metadata!.labels!, { [REVISION_LABEL]: hash, 'statefulset.kubernetes.io/pod-name': podName, 'apps.kubernetes.io/pod-index': String(i) });
        pod.spec = { ...pod.spec!, hostname: podName, ...(sts.spec?.serviceName ? { subdomain: sts.spec.serviceName } : {}) };
        await this.d.core.createNamespacedPod({ namespace, body: pod });
        void this.d.recorder.record(involved, 'Normal', 'SuccessfulCreate', `create Pod ${podName} in StatefulSet ${sts.metadata!.name} successful`);
        return podName;
      }),
    );
    this.expectations.expect(key, made, remove.map((p) => p.metadata!.uid!));
    for (const p of remove) {
      await this.d.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace }).catch((e: { code?: number }) => {
        if (e.code !== 404) throw e;
      });
      void this.d.recorder.record(involved, 'Normal', 'SuccessfulDelete', `delete Pod ${p.metadata!.name} in StatefulSet ${sts.metadata!.name} successful`);
    }
  }

  private async writeStatus(sts: k8s.V1StatefulSet, hash: string, pods: k8s.V1Pod[]): Promise<void> {
    const replicas = sts.spec?.replicas ?? 1;
    const live = pods.filter((p) => !p.metadata?.deletionTimestamp && !isTerminated(p));
    const updated = live.filter((p) => p.metadata?.labels?.[REVISION_LABEL] === hash);
    const ready = live.filter(isReady).length;
    const updateRevision = `${sts.metadata!.name}-${hash}`;
    // The current revision catches up once every pod runs the update and is Ready (kube's
    // completeRollingUpdate), which is what `kubectl rollout status` waits for.
    const done = updated.length === replicas && live.length === replicas && ready === replicas;
    const currentRevision = !sts.status?.currentRevision || done ? updateRevision : sts.status.currentRevision;
    const status: k8s.V1StatefulSetStatus = {
      observedGeneration: sts.metadata?.generation ?? 1,
      replicas: live.length,
      readyReplicas: ready,
      currentReplicas: live.filter((p) => `${sts.metadata!.name}-${p.metadata?.labels?.[REVISION_LABEL]}` === currentRevision).length,
      updatedReplicas: updated.length,
      availableReplicas: live.filter((p) => isAvailable(p, sts.spec?.minReadySeconds ?? 0)).length,
      currentRevision,
      updateRevision,
      collisionCount: 0,
    };
    const cur = sts.status ?? { replicas: 0 };
    if ((Object.keys(status) as (keyof k8s.V1StatefulSetStatus)[]).every((k) => cur[k] === status[k])) return;
    await this.d.apps.replaceNamespacedStatefulSetStatus({ name: sts.metadata!.name!, namespace: sts.metadata!.namespace!, body: { ...sts, status } }).catch((e: { code?: number }) => {
      if (e.code === 409) return this.queue.add(`${sts.metadata!.namespace}/${sts.metadata!.name}`, 50);
      if (e.code !== 404) throw e;
    });
  }
}

// The Deployment controller (pkg/controller/deployment): one ReplicaSet per pod template, found by
// its pod-template-hash; rolling updates that keep at most replicas+maxSurge pods and at least
// replicas-maxUnavailable available ones, Recreate that empties the old sets first; revisions in
// `deployment.kubernetes.io/revision` (what `kubectl rollout history|undo` read), old sets beyond
// revisionHistoryLimit deleted, and the status and conditions `kubectl rollout status` waits on.
import type * as k8s from '@kubernetes/client-node';
import type { EventRecorder } from '../runtime/events.ts';
import { type Cache, canonical, controllerOf, isActive, isAvailable, type Key, ownerReference, scaledValue, templateHash, WorkQueue } from './base.ts';
import { podsOwnedBy } from './replicaset.ts';

export const REVISION = 'deployment.kubernetes.io/revision';
const HASH = 'pod-template-hash';
// Annotations of a Deployment that are not copied to its ReplicaSets (kube's skipCopyAnnotation).
const NOT_COPIED = new Set([REVISION, 'kubectl.kubernetes.io/last-applied-configuration', 'deployment.kubernetes.io/revision-history', 'deployment.kubernetes.io/desired-replicas', 'deployment.kubernetes.io/max-replicas']);

export interface DeploymentDeps {
  apps: k8s.AppsV1Api;
  recorder: EventRecorder;
  deployments: Cache<k8s.V1Deployment>;
  replicaSets: Cache<k8s.V1ReplicaSet>;
  pods: Cache<k8s.V1Pod>;
}

const revisionOf = (rs: k8s.V1ReplicaSet): number => Number(rs.metadata?.annotations?.[REVISION] ?? 0) || 0;
const replicasOf = (rs: k8s.V1ReplicaSet): number => rs.spec?.replicas ?? 0;

/** The template without the pod-template-hash label, as compared and as `rollout undo` copies it. */
function unhashed(t: k8s.V1PodTemplateSpec | undefined): k8s.V1PodTemplateSpec {
  const c = structuredClone(t ?? {});
  if (c.metadata?.labels) delete c.metadata.labels[HASH];
  return c;
}

export class DeploymentController {
  private readonly d: DeploymentDeps;
  readonly queue: WorkQueue;

  constructor(deps: DeploymentDeps) {
    this.d = deps;
    this.queue = new WorkQueue('deployment', (k) => this.reconcile(k));
    const enqueue = (o: k8s.V1Deployment) => this.queue.add(`${o.metadata!.namespace}/${o.metadata!.name}`);
    deps.deployments.on('add', enqueue);
    deps.deployments.on('update', enqueue);
    const byOwner = (o: k8s.KubernetesObject) => {
      const ref = controllerOf(o);
      if (ref?.kind === 'Deployment') this.queue.add(`${o.metadata!.namespace}/${ref.name}`);
    };
    for (const ev of ['add', 'update', 'delete'] as const) deps.replicaSets.on(ev, byOwner);
    // Pods change availability, which decides how far a rollout may go: follow them to their set's owner.
    const onPod = (p: k8s.V1Pod) => {
      const ref = controllerOf(p);
      if (ref?.kind !== 'ReplicaSet') return;
      const rs = deps.replicaSets.get(ref.name, p.metadata!.namespace);
      if (rs) byOwner(rs);
    };
    for (const ev of ['add', 'update', 'delete'] as const) deps.pods.on(ev, onPod);
  }

  private async reconcile(key: Key): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    const dep = this.d.deployments.get(name, namespace);
    if (!dep || dep.metadata?.deletionTimestamp) return;
    const owned = this.d.replicaSets.list(namespace).filter((rs) => controllerOf(rs)?.uid === dep.metadata!.uid);
    const hash = templateHash(unhashed(dep.spec!.template));
    const want = canonical(unhashed(dep.spec!.template));
    let newRS = owned.find((rs) => rs.metadata?.labels?.[HASH] === hash) ?? owned.find((rs) => canonical(unhashed(rs.spec?.template)) === want);
    if (dep.spec?.paused) return this.writeStatus(dep, owned, newRS);
    const old = owned.filter((rs) => rs !== newRS);
    const maxOld = Math.max(0, ...old.map(revisionOf));
    const replicas = dep.spec?.replicas ?? 1;

    if (!newRS) {
      newRS = await this.createReplicaSet(dep, hash, maxOld + 1, old.every((rs) => replicasOf(rs) === 0) && dep.spec?.strategy?.type !== 'Recreate' ? Math.min(replicas, this.maxTotal(dep) - total(old)) : 0);
      return; // the new set's informer event brings us back
    }
    if (revisionOf(newRS) <= maxOld) {
      // An older template came back (`rollout undo`): it becomes the newest revision.
      newRS = await this.patchReplicaSet(newRS, { metadata: { annotations: { [REVISION]: String(maxOld + 1) } } });
    }
    if (await this.syncAnnotation(dep, newRS)) return;

    const minReady = dep.spec?.minReadySeconds ?? 0;
    const available = (rs: k8s.V1ReplicaSet) => podsOwnedBy(this.d.pods, rs).filter((p) => isActive(p) && isAvailable(p, minReady)).length;
    const podCount = (rs: k8s.V1ReplicaSet) => podsOwnedBy(this.d.pods, rs).filter(isActive).length;

    if (dep.spec?.strategy?.type === 'Recreate') {
      for (const rs of old) if (replicasOf(rs) > 0) await this.scaleTo(dep, rs, 0);
      if (old.some((rs) => podCount(rs) > 0)) return this.writeStatus(dep, owned, newRS);
      if (replicasOf(newRS) !== replicas) await this.scaleTo(dep, newRS, replicas);
      return this.writeStatus(dep, owned, newRS);
    }

    // Rolling update (kube's rolloutRolling): first grow the new set within the surge …
    const all = [newRS, ...old];
    const maxTotal = this.maxTotal(dep);
    let newCount = replicasOf(newRS);
    if (newCount > replicas) newCount = replicas;
    else if (newCount < replicas) newCount = Math.min(replicas, newCount + Math.max(0, maxTotal - total(all)));
    if (newCount !== replicasOf(newRS)) newRS = await this.scaleTo(dep, newRS, newCount);

    // … then shrink old sets as far as availability allows (kube's reconcileOldReplicaSets):
    // unavailable old pods first, then available ones down to replicas-maxUnavailable, oldest
    // sets first. Counts are capped by each set's spec, so pods on their way out never count.
    const maxUnavailable = scaledValue(dep.spec?.strategy?.rollingUpdate?.maxUnavailable, replicas, false, '25%');
    const minAvailable = replicas - (maxUnavailable === 0 && this.maxSurge(dep) === 0 ? 1 : maxUnavailable);
    const avail = (rs: k8s.V1ReplicaSet) => Math.min(available(rs), replicasOf(rs));
    const oldest = [...old].sort((a, b) => revisionOf(a) - revisionOf(b));
    let cleanup = Math.max(0, total([newRS, ...oldest]) - minAvailable - (replicasOf(newRS) - avail(newRS)));
    for (const [i, rs] of oldest.entries()) {
      const cut = Math.min(cleanup, replicasOf(rs) - avail(rs));
      if (cut <= 0) continue;
      oldest[i] = await this.scaleTo(dep, rs, replicasOf(rs) - cut);
      cleanup -= cut;
    }
    let canRemove = Math.max(0, [newRS, ...oldest].reduce((n, rs) => n + avail(rs), 0) - minAvailable);
    for (const rs of oldest) {
      const cut = Math.min(canRemove, replicasOf(rs));
      if (cut <= 0) continue;
      await this.scaleTo(dep, rs, replicasOf(rs) - cut);
      canRemove -= cut;
    }
    await this.cleanup(dep, old);
    return this.writeStatus(dep, owned, newRS);
  }

  private maxSurge(dep: k8s.V1Deployment): number {
    return scaledValue(dep.spec?.strategy?.rollingUpdate?.maxSurge, dep.spec?.replicas ?? 1, true, '25%');
  }

  private maxTotal(dep: k8s.V1Deployment): number {
    const replicas = dep.spec?.replicas ?? 1;
    return dep.spec?.strategy?.type === 'Recreate' ? replicas : replicas + this.maxSurge(dep);
  }

  private async createReplicaSet(dep: k8s.V1Deployment, hash: string, revision: number, replicas: number): Promise<k8s.V1ReplicaSet> {
    const template = unhashed(dep.spec!.template);
    template.metadata = { ...template.metadata, labels: { ...(template.metadata?.labels ?? {}), [HASH]: hash } };
    const annotations = Object.fromEntries(Object.entries(dep.metadata?.annotations ?? {}).filter(([k]) => !NOT_COPIED.has(k)));
    const name = `${dep.metadata!.name}-${hash}`;
    const body: k8s.V1ReplicaSet = {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: {
        name,
        namespace: dep.metadata!.namespace,
        labels: { ...(template.metadata.labels ?? {}) },
        annotations: { ...annotations, [REVISION]: String(revision), 'deployment.kubernetes.io/desired-replicas': String(dep.spec?.replicas ?? 1), 'deployment.kubernetes.io/max-replicas': String(this.maxTotal(dep)) },
        ownerReferences: [ownerReference(dep, 'apps/v1', 'Deployment')],
      },
      spec: {
        replicas,
        minReadySeconds: dep.spec?.minReadySeconds ?? 0,
        selector: { ...dep.spec!.selector, matchLabels: { ...(dep.spec!.selector.matchLabels ?? {}), [HASH]: hash } },
        template,
      },
    };
    const rs = await this.d.apps.createNamespacedReplicaSet({ namespace: dep.metadata!.namespace!, body });
    if (replicas > 0) this.scaled(dep, rs, 'up', 0, replicas);
    return rs;
  }

  private scaled(dep: k8s.V1Deployment, rs: k8s.V1ReplicaSet, dir: 'up' | 'down', from: number, to: number): void {
    void this.d.recorder.record({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: dep.metadata }, 'Normal', 'ScalingReplicaSet', `Scaled ${dir} replica set ${rs.metadata!.name} to ${to} from ${from}`);
  }

  private async scaleTo(dep: k8s.V1Deployment, rs: k8s.V1ReplicaSet, to: number): Promise<k8s.V1ReplicaSet> {
    const from = replicasOf(rs);
    if (from === to) return rs;
    const next = await this.patchReplicaSet(rs, {
      metadata: { annotations: { 'deployment.kubernetes.io/desired-replicas': String(dep.spec?.replicas ?? 1), 'deployment.kubernetes.io/max-replicas': String(this.maxTotal(dep)) } },
      spec: { replicas: to },
    });
    this.scaled(dep, rs, to > from ? 'up' : 'down', from, to);
    return next;
  }

  private patchReplicaSet(rs: k8s.V1ReplicaSet, patch: object): Promise<k8s.V1ReplicaSet> {
    // Replace, not patch: the resourceVersion makes a write from a stale cache fail (409) and retry.
    const merged = structuredClone(rs) as k8s.V1ReplicaSet & Record<string, unknown>;
    const p = patch as { metadata?: { annotations?: Record<string, string> }; spec?: { replicas?: number } };
    if (p.metadata?.annotations) merged.metadata = { ...merged.metadata, annotations: { ...(merged.metadata?.annotations ?? {}), ...p.metadata.annotations } };
    if (p.spec?.replicas !== undefined) merged.spec = { ...merged.spec!, replicas: p.spec.replicas };
    return this.d.apps.replaceNamespacedReplicaSet({ name: rs.metadata!.name!, namespace: rs.metadata!.namespace!, body: merged });
  }

  /** Keeps the Deployment's revision annotation on its newest set's; true when it wrote. */
  private async syncAnnotation(dep: k8s.V1Deployment, newRS: k8s.V1ReplicaSet): Promise<boolean> {
    const rev = String(revisionOf(newRS));
    if (dep.metadata?.annotations?.[REVISION] === rev) return false;
    const body = { ...dep, metadata: { ...dep.metadata, annotations: { ...(dep.metadata?.annotations ?? {}), [REVISION]: rev } } };
    await this.d.apps.replaceNamespacedDeployment({ name: dep.metadata!.name!, namespace: dep.metadata!.namespace!, body });
    return true;
  }

  /** Deletes empty old sets beyond revisionHistoryLimit, oldest first. */
  private async cleanup(dep: k8s.V1Deployment, old: k8s.V1ReplicaSet[]): Promise<void> {
    const limit = dep.spec?.revisionHistoryLimit ?? 10;
    const empty = old.filter((rs) => replicasOf(rs) === 0 && (rs.status?.replicas ?? 0) === 0 && !rs.metadata?.deletionTimestamp).sort((a, b) => revisionOf(a) - revisionOf(b));
    for (const rs of empty.slice(0, Math.max(0, empty.length - limit))) {
      await this.d.apps.deleteNamespacedReplicaSet({ name: rs.metadata!.name!, namespace: rs.metadata!.namespace! }).catch((e: { code?: number }) => {
        if (e.code !== 404) throw e;
      });
    }
  }

  private async writeStatus(dep: k8s.V1Deployment, owned: k8s.V1ReplicaSet[], newRS: k8s.V1ReplicaSet | undefined): Promise<void> {
    const minReady = dep.spec?.minReadySeconds ?? 0;
    const replicas = dep.spec?.replicas ?? 1;
    const sets = owned.map((rs) => this.d.replicaSets.get(rs.metadata!.name!, rs.metadata!.namespace) ?? rs);
    const pods = (rs: k8s.V1ReplicaSet) => podsOwnedBy(this.d.pods, rs).filter(isActive);
    const count = (f: (p: k8s.V1Pod) => boolean) => sets.reduce((n, rs) => n + pods(rs).filter(f).length, 0);
    const total = count(() => true);
    const available = count((p) => isAvailable(p, minReady));
    const updated = newRS ? pods(newRS).length : 0;
    const maxUnavailable = scaledValue(dep.spec?.strategy?.rollingUpdate?.maxUnavailable, replicas, false, '25%');
    const isAvail = dep.spec?.strategy?.type === 'Recreate' ? available >= replicas : available >= replicas - maxUnavailable;
    const done = newRS !== undefined && updated === replicas && total === replicas && available >= replicas;
    const now = new Date();
    const prev = dep.status?.conditions ?? [];
    const cond = (type: string, status: boolean, reason: string, message: string): k8s.V1DeploymentCondition => {
      const p = prev.find((c) => c.type === type);
      const same = p?.status === (status ? 'True' : 'False');
      return {
        type,
        status: status ? 'True' : 'False',
        reason,
        message,
        lastUpdateTime: p && same && p.reason === reason ? p.lastUpdateTime : now,
        lastTransitionTime: p && same ? p.lastTransitionTime : now,
      };
    };
    const rsName = newRS?.metadata?.name ?? '';
    const status: k8s.V1DeploymentStatus = {
      observedGeneration: dep.metadata?.generation ?? 1,
      replicas: total,
      updatedReplicas: updated,
      readyReplicas: count((p) => isAvailable(p, 0)),
      availableReplicas: available,
      unavailableReplicas: Math.max(0, replicas - available),
      conditions: [
        cond('Available', isAvail, isAvail ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable', isAvail ? 'Deployment has minimum availability.' : 'Deployment does not have minimum availability.'),
        dep.spec?.paused
          ? cond('Progressing', false, 'DeploymentPaused', 'Deployment is paused')
          : done
            ? cond('Progressing', true, 'NewReplicaSetAvailable', `ReplicaSet "${rsName}" has successfully progressed.`)
            : cond('Progressing', true, 'ReplicaSetUpdated', `ReplicaSet "${rsName}" is progressing.`),
      ],
    };
    for (const k of ['readyReplicas', 'availableReplicas', 'unavailableReplicas', 'updatedReplicas'] as const) if (status[k] === 0) delete status[k];
    const strip = (s: k8s.V1DeploymentStatus | undefined) => canonical({ ...s, conditions: (s?.conditions ?? []).map((c) => ({ ...c, lastUpdateTime: undefined, lastTransitionTime: undefined })) });
    if (strip(status) === strip(dep.status)) return;
    await this.d.apps.replaceNamespacedDeploymentStatus({ name: dep.metadata!.name!, namespace: dep.metadata!.namespace!, body: { ...dep, status } }).catch((e: { code?: number }) => {
      if (e.code === 409) return this.queue.add(`${dep.metadata!.namespace}/${dep.metadata!.name}`, 50);
      if (e.code !== 404) throw e;
    });
  }
}

const total = (sets: k8s.V1ReplicaSet[]): number => sets.reduce((n, rs) => n + replicasOf(rs), 0);

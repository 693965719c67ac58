// The DaemonSet controller (pkg/controller/daemon): one pod of the current template on every node,
// bound directly with spec.nodeName and tolerating every taint (the local nodes carry none that a
// daemon should avoid); a rolling update replaces at most maxUnavailable pods at a time, or with
// maxSurge starts the new pod next to the old one and removes the old one once the new is ready.
// The template's revision is a hash label (controller-revision-hash) — no ControllerRevisions.
import type * as k8s from '@kubernetes/client-node';
import type { EventRecorder } from '../runtime/events.ts';
import { type Cache, Expectations, isActive, isAvailable, isReady, type Key, keyOf, ownerReference, scaledValue, templateHash, WorkQueue, watchOwnerAndPods } from './base.ts';
import { podFromTemplate, podsOwnedBy } from './replicaset.ts';

const REVISION_LABEL = 'controller-revision-hash';

export interface DaemonSetDeps {
  apps: k8s.AppsV1Api;
  core: k8s.CoreV1Api;
  recorder: EventRecorder;
  daemonSets: Cache<k8s.V1DaemonSet>;
  nodes: Cache<k8s.V1Node>;
  pods: Cache<k8s.V1Pod>;
}

const selects = (ds: k8s.V1DaemonSet, n: k8s.V1Node) => Object.entries(ds.spec?.template?.spec?.nodeSelector ?? {}).every(([k, v]) => n.metadata?.labels?.[k] === v);

export class DaemonSetController {
  private readonly d: DaemonSetDeps;
  private readonly expectations = new Expectations();
  readonly queue: WorkQueue;

  constructor(deps: DaemonSetDeps) {
    this.d = deps;
    this.queue = new WorkQueue('daemonset', (k) => this.reconcile(k));
    watchOwnerAndPods('DaemonSet', deps.daemonSets, deps.pods, this.queue, this.expectations);
    const allSets = () => deps.daemonSets.list().forEach((ds) => this.queue.add(keyOf(ds)));
    deps.nodes.on('add', allSets);
    deps.nodes.on('delete', allSets);
  }

  private async reconcile(key: Key): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    const ds = this.d.daemonSets.get(name, namespace);
    if (!ds || ds.metadata?.deletionTimestamp) return;
    const hash = templateHash(ds.spec!.template);
    const nodes = this.d.nodes.list().filter((n) => selects(ds, n));
    const wanted = new Set(nodes.map((n) => n.metadata!.name!));
    const pods = podsOwnedBy(this.d.pods, ds).filter(isActive);
    const minReady = ds.spec?.minReadySeconds ?? 0;
    if (this.expectations.satisfied(key)) {
      const create: string[] = [];
      const remove: k8s.V1Pod[] = pods.filter((p) => !wanted.has(p.spec?.nodeName ?? ''));
      const rolling = ds.spec?.updateStrategy?.type !== 'OnDelete';
      const maxSurge = rolling ? scaledValue(ds.spec?.updateStrategy?.rollingUpdate?.maxSurge, nodes.length, true, 0) : 0;
      let maxUnavailable = rolling ? scaledValue(ds.spec?.updateStrategy?.rollingUpdate?.maxUnavailable, nodes.length, true, 1) : 0;
      if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
      // Nodes whose daemon pod is missing or not yet available count against maxUnavailable.
      let unavailable = nodes.filter((n) => !pods.some((p) => p.spec?.nodeName === n.metadata!.name && isAvailable(p, minReady))).length;
      let surged = 0;
      for (const node of [...wanted].sort()) {
        const here = pods.filter((p) => p.spec?.nodeName === node);
        const current = here.filter((p) => p.metadata?.labels?.[REVISION_LABEL] === hash);
        const outdated = here.filter((p) => p.metadata?.labels?.[REVISION_LABEL] !== hash);
        if (here.length === 0) {
          create.push(node);
          continue;
        }
        if (current.length > 1) remove.push(...current.slice(1));
        if (!rolling || outdated.length === 0) continue;
        if (current.length > 0) {
          // Surge: the new pod is there; the old one goes once the new one is available.
          if (isAvailable(current[0]!, minReady)) remove.push(...outdated);
          else surged++; // a surge in progress
        } else if (maxSurge > 0) {
          if (surged < maxSurge) {
            surged++;
            create.push(node);
          }
        } else if (outdated.every((p) => !isAvailable(p, minReady))) {
          remove.push(...outdated); // already unavailable: replacing it costs nothing
        } else if (unavailable < maxUnavailable) {
          unavailable++;
          remove.push(...outdated);
        }
      }
      await this.apply(key, ds, hash, create, remove);
    }
    await this.writeStatus(ds, hash, nodes.length, pods);
  }

  private async apply(key: Key, ds: k8s.V1DaemonSet, hash: string, nodes: string[], remove: k8s.V1Pod[]): Promise<void> {
    const namespace = ds.metadata!.namespace!;
    const involved = { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: ds.metadata };
    const made = await Promise.all(
      nodes.map(async (node) => {
        const pod = podFromTemplate(ds.spec!.template, `${ds.metadata!.name}-`, ownerReference(ds, 'apps/v1', 'DaemonSet'));
        pod.metadata!.labels![REVISION_LABEL] = hash;
        pod.spec = { ...pod.spec!, nodeName: node, tolerations: [...(pod.spec!.tolerations ?? []), { operator: 'Exists' }] };
        const created = await this.d.core.createNamespacedPod({ namespace, body: pod });
        void this.d.recorder.record(involved, 'Normal', 'SuccessfulCreate', `Created pod: ${created.metadata!.name}`);
        return created.metadata!.name!;
      }),
    );
    this.expectations.expect(key, made, remove.map((p) => p.metadata!.uid!));
    await Promise.all(
      remove.map(async (p) => {
        await this.d.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace }).catch((e: { code?: number }) => {
          if (e.code !== 404) throw e;
        });
        void this.d.recorder.record(involved, 'Normal', 'SuccessfulDelete', `Deleted pod: ${p.metadata!.name}`);
      }),
    );
  }

  private async writeStatus(ds: k8s.V1DaemonSet, hash: string, desired: number, pods: k8s.V1Pod[]): Promise<void> {
    const minReady = ds.spec?.minReadySeconds ?? 0;
    const nodesWith = (f: (p: k8s.V1Pod) => boolean) => new Set(pods.filter(f).map((p) => p.spec?.nodeName)).size;
    const available = nodesWith((p) => isAvailable(p, minReady));
    const status: k8s.V1DaemonSetStatus = {
      desiredNumberScheduled: desired,
      currentNumberScheduled: nodesWith(() => true),
      numberMisscheduled: 0,
      numberReady: nodesWith(isReady),
      numberAvailable: available,
      numberUnavailable: Math.max(0, desired - available),
      updatedNumberScheduled: nodesWith((p) => p.metadata?.labels?.[REVISION_LABEL] === hash),
      observedGeneration: ds.metadata?.generation ?? 1,
    };
    for (const k of ['numberAvailable', 'numberUnavailable', 'updatedNumberScheduled'] as const) if (status[k] === 0) delete status[k];
    const cur = ds.status;
    if (cur && (Object.keys(status) as (keyof k8s.V1DaemonSetStatus)[]).every((k) => cur[k] === status[k]) && Object.keys(cur).filter((k) => k !== 'conditions').length === Object.keys(status).length) return;
    await this.d.apps.replaceNamespacedDaemonSetStatus({ name: ds.metadata!.name!, namespace: ds.metadata!.namespace!, body: { ...ds, status } }).catch((e: { code?: number }) => {
      if (e.code === 409) return this.queue.add(`${ds.metadata!.namespace}/${ds.metadata!.name}`, 50);
      if (e.code !== 404) throw e;
    });
  }
}

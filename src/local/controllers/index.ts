// The local cluster's workload controllers (kube-controller-manager's share of it): Deployment →
// ReplicaSet → Pod, DaemonSet, StatefulSet, Job. They watch the API server through @kubernetes/client-node
// informers and write through its typed clients, as they would against a real cluster.
import * as k8s from '@kubernetes/client-node';
import { EventRecorder } from '../runtime/events.ts';
import { type Cache, log, type WorkQueue } from './base.ts';
import { DaemonSetController } from './daemonset.ts';
import { DeploymentController } from './deployment.ts';
import { JobController } from './job.ts';
import { ReplicaSetController } from './replicaset.ts';
import { StatefulSetController } from './statefulset.ts';

export class WorkloadControllers {
  private readonly informers: Cache<k8s.KubernetesObject>[];
  private readonly queues: WorkQueue[];
  private stopping = false;

  private constructor(informers: Cache<k8s.KubernetesObject>[], queues: WorkQueue[]) {
    this.informers = informers;
    this.queues = queues;
  }

  /** Starts the informers and controllers; resolves once every cache has listed. */
  static async start(kc: k8s.KubeConfig): Promise<WorkloadControllers> {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const apps = kc.makeApiClient(k8s.AppsV1Api);
    const batch = kc.makeApiClient(k8s.BatchV1Api);
    const pods = k8s.makeInformer(kc, '/api/v1/pods', () => core.listPodForAllNamespaces());
    const nodes = k8s.makeInformer(kc, '/api/v1/nodes', () => core.listNode());
    const replicaSets = k8s.makeInformer(kc, '/apis/apps/v1/replicasets', () => apps.listReplicaSetForAllNamespaces());
    const deployments = k8s.makeInformer(kc, '/apis/apps/v1/deployments', () => apps.listDeploymentForAllNamespaces());
    const daemonSets = k8s.makeInformer(kc, '/apis/apps/v1/daemonsets', () => apps.listDaemonSetForAllNamespaces());
    const statefulSets = k8s.makeInformer(kc, '/apis/apps/v1/statefulsets', () => apps.listStatefulSetForAllNamespaces());
    const jobs = k8s.makeInformer(kc, '/apis/batch/v1/jobs', () => batch.listJobForAllNamespaces());
    const queues = [
      new ReplicaSetController({ apps, core, recorder: new EventRecorder(core, 'replicaset-controller'), replicaSets, pods }).queue,
      new DeploymentController({ apps, recorder: new EventRecorder(core, 'deployment-controller'), deployments, replicaSets, pods }).queue,
      new DaemonSetController({ apps, core, recorder: new EventRecorder(core, 'daemonset-controller'), daemonSets, nodes, pods }).queue,
      new StatefulSetController({ apps, core, recorder: new EventRecorder(core, 'statefulset-controller'), statefulSets, pods }).queue,
      new JobController({ batch, core, recorder: new EventRecorder(core, 'job-controller'), jobs, pods }).queue,
    ];
    const informers = [pods, nodes, replicaSets, deployments, daemonSets, statefulSets, jobs] as Cache<k8s.KubernetesObject>[];
    const c = new WorkloadControllers(informers, queues);
    for (const i of informers) {
      // client-node stops an informer on a non-410 error; the controllers must keep watching.
      i.on('error', (e: unknown) => {
        if (c.stopping) return;
        log.warn({ err: String(e) }, 'controller watch failed; restarting in 1s');
        setTimeout(() => void i.start().catch(() => {}), 1000);
      });
    }
    await Promise.all(informers.map((i) => i.start()));
    return c;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled(this.informers.map((i) => i.stop()));
    await Promise.allSettled(this.queues.map((q) => q.stop()));
  }
}

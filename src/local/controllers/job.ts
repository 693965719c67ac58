// The Job controller (pkg/controller/job), NonIndexed completion only: runs up to parallelism pods
// until `completions` of them have succeeded, counts failed pods against backoffLimit, and ends
// with the Complete (and SuccessCriteriaMet) or Failed (and FailureTarget) condition and the
// status fields `kubectl get jobs` and `kubectl wait --for=condition=complete` read.
import type * as k8s from '@kubernetes/client-node';
import type { EventRecorder } from '../runtime/events.ts';
import { type Cache, Expectations, isActive, isReady, type Key, ownerReference, WorkQueue, watchOwnerAndPods } from './base.ts';
import { podFromTemplate, podsOwnedBy } from './replicaset.ts';

export interface JobDeps {
  batch: k8s.BatchV1Api;
  core: k8s.CoreV1Api;
  recorder: EventRecorder;
  jobs: Cache<k8s.V1Job>;
  pods: Cache<k8s.V1Pod>;
}

const finished = (job: k8s.V1Job) => job.status?.conditions?.some((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');

export class JobController {
  private readonly d: JobDeps;
  private readonly expectations = new Expectations();
  readonly queue: WorkQueue;

  constructor(deps: JobDeps) {
    this.d = deps;
    this.queue = new WorkQueue('job', (k) => this.reconcile(k));
    watchOwnerAndPods('Job', deps.jobs, deps.pods, this.queue, this.expectations);
  }

  private async reconcile(key: Key): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    const job = this.d.jobs.get(name, namespace);
    if (!job || job.metadata?.deletionTimestamp || finished(job)) return;
    const pods = podsOwnedBy(this.d.pods, job);
    const succeeded = pods.filter((p) => p.status?.phase === 'Succeeded').length;
    const failed = pods.filter((p) => p.status?.phase === 'Failed').length;
    const active = pods.filter(isActive);
    const completions = job.spec?.completions ?? 1;
    const parallelism = job.spec?.parallelism ?? 1;
    const backoffLimit = job.spec?.backoffLimit ?? 6;
    const involved = { apiVersion: 'batch/v1', kind: 'Job', metadata: job.metadata };
    const now = new Date();
    const cond = (type: string, reason: string, message: string): k8s.V1JobCondition => ({ type, status: 'True', reason, message, lastProbeTime: now, lastTransitionTime: now });
    const status: k8s.V1JobStatus = {
      startTime: job.status?.startTime ?? now,
      active: active.length,
      ready: active.filter(isReady).length,
      succeeded,
      failed,
      terminating: 0,
      uncountedTerminatedPods: {},
    };
    if (job.spec?.suspend) {
      status.active = 0;
    } else if (succeeded >= completions) {
      status.completionTime = now;
      status.conditions = [cond('SuccessCriteriaMet', 'CompletionsReached', 'Reached expected number of succeeded pods'), cond('Complete', 'CompletionsReached', 'Reached expected number of succeeded pods')];
      void this.d.recorder.record(involved, 'Normal', 'Completed', 'Job completed');
    } else if (failed > backoffLimit) {
      await this.deletePods(key, active, involved);
      status.active = 0;
      const msg = 'Job has reached the specified backoff limit';
      status.conditions = [cond('FailureTarget', 'BackoffLimitExceeded', msg), cond('Failed', 'BackoffLimitExceeded', msg)];
      void this.d.recorder.record(involved, 'Warning', 'BackoffLimitExceeded', msg);
    } else if (this.expectations.satisfied(key)) {
      const want = Math.min(parallelism, completions - succeeded) - active.length;
      if (want > 0) {
        const made = await Promise.all(
          Array.from({ length: want }, async () => {
            const pod = podFromTemplate(job.spec!.template, `${job.metadata!.name}-`, ownerReference(job, 'batch/v1', 'Job'));
            const created = await this.d.core.createNamespacedPod({ namespace, body: pod });
            void this.d.recorder.record(involved, 'Normal', 'SuccessfulCreate', `Created pod: ${created.metadata!.name}`);
            return created.metadata!.name!;
          }),
        );
        this.expectations.expect(key, made, []);
        status.active = active.length + made.length;
      } else if (want < 0) {
        await this.deletePods(key, active.slice(0, -want), involved);
      }
    }
    const cur = job.status ?? {};
    const same = (['active', 'ready', 'succeeded', 'failed'] as const).every((k) => (cur[k] ?? 0) === status[k]) && !status.conditions && cur.startTime;
    if (same) return;
    await this.d.batch.replaceNamespacedJobStatus({ name, namespace, body: { ...job, status: { ...cur, ...status } } }).catch((e: { code?: number }) => {
      if (e.code === 409) return this.queue.add(key, 50);
      if (e.code !== 404) throw e;
    });
  }

  private async deletePods(key: Key, pods: k8s.V1Pod[], involved: { apiVersion: string; kind: string; metadata: k8s.V1ObjectMeta | undefined }): Promise<void> {
    this.expectations.expect(key, [], pods.map((p) => p.metadata!.uid!));
    await Promise.all(
      pods.map(async (p) => {
        await this.d.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: p.metadata!.namespace! }).catch((e: { code?: number }) => {
          if (e.code !== 404) throw e;
        });
        void this.d.recorder.record(involved, 'Normal', 'SuccessfulDelete', `Deleted pod: ${p.metadata!.name}`);
      }),
    );
  }
}

// The local cluster's scheduler: binds each unscheduled pod to the ready node running the fewest
// pods among those its spec.nodeSelector matches, through the pods/binding subresource as
// kube-scheduler does, and records why (Scheduled, or FailedScheduling with kube-scheduler's
// "0/N nodes are available: …" summary).
import type * as k8s from '@kubernetes/client-node';
import type { EventRecorder } from './events.ts';

const isReady = (n: k8s.V1Node) => Boolean(n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
const selects = (pod: k8s.V1Pod | undefined, n: k8s.V1Node) => Object.entries(pod?.spec?.nodeSelector ?? {}).every(([k, v]) => n.metadata?.labels?.[k] === v);

/** Why each node is out, in kube-scheduler's words; undefined for a node that fits. */
function filter(n: k8s.V1Node, pod: k8s.V1Pod | undefined): string | undefined {
  if (n.spec?.unschedulable) return 'node(s) were unschedulable';
  if (!isReady(n)) return 'node(s) had untolerated taint {node.kubernetes.io/not-ready: }';
  if (!selects(pod, n)) return "node(s) didn't match Pod's node affinity/selector";
  return undefined;
}

export function pickNode(nodes: k8s.V1Node[], pods: k8s.V1Pod[], pod?: k8s.V1Pod): string | undefined {
  const fit = nodes.filter((n) => filter(n, pod) === undefined);
  const load = new Map(fit.map((n) => [n.metadata!.name!, 0]));
  for (const p of pods) {
    const node = p.spec?.nodeName;
    if (node && load.has(node) && !['Succeeded', 'Failed'].includes(p.status?.phase ?? '')) load.set(node, load.get(node)! + 1);
  }
  let best: string | undefined;
  for (const [name, n] of [...load].sort(([a], [b]) => a.localeCompare(b))) if (best === undefined || n < load.get(best)!) best = name;
  return best;
}

/** kube-scheduler's FailedScheduling message: reasons counted, sorted, then the preemption note. */
export function unschedulableMessage(nodes: k8s.V1Node[], pod: k8s.V1Pod): string {
  if (nodes.length === 0) return 'no nodes available to schedule pods';
  const counts = new Map<string, number>();
  for (const n of nodes) {
    const why = filter(n, pod);
    if (why) counts.set(why, (counts.get(why) ?? 0) + 1);
  }
  const reasons = [...counts].map(([why, k]) => `${k} ${why}`).sort();
  return `0/${nodes.length} nodes are available: ${reasons.join(', ')}. preemption: 0/${nodes.length} nodes are available: ${nodes.length} Preemption is not helpful for scheduling.`;
}

export interface SchedulerOptions {
  core: Pick<k8s.CoreV1Api, 'createNamespacedPodBinding'>;
  recorder: EventRecorder;
  nodes: () => k8s.V1Node[];
  pods: () => k8s.V1Pod[];
}

export class Scheduler {
  private readonly opts: SchedulerOptions;

  constructor(opts: SchedulerOptions) {
    this.opts = opts;
  }

  /** Binds `pod` or records FailedScheduling; resolves when the binding and event are written. */
  async schedule(pod: k8s.V1Pod): Promise<string | undefined> {
    const nodes = this.opts.nodes();
    const node = pickNode(nodes, this.opts.pods(), pod);
    const m = pod.metadata!;
    const involved = { apiVersion: 'v1', kind: 'Pod', metadata: m };
    if (!node) {
      await this.opts.recorder.record(involved, 'Warning', 'FailedScheduling', unschedulableMessage(nodes, pod));
      return undefined;
    }
    await this.opts.core.createNamespacedPodBinding({ name: m.name!, namespace: m.namespace!, body: { metadata: { name: m.name! }, target: { kind: 'Node', name: node } } });
    await this.opts.recorder.record(involved, 'Normal', 'Scheduled', `Successfully assigned ${m.namespace}/${m.name} to ${node}`);
    return node;
  }
}

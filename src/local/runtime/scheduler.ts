// The local cluster's scheduler: binds each unscheduled pod to the ready node running the fewest
// pods, through the pods/binding subresource as kube-scheduler does.
import type * as k8s from '@kubernetes/client-node';

export function pickNode(nodes: k8s.V1Node[], pods: k8s.V1Pod[]): string | undefined {
  const ready = nodes.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') && !n.spec?.unschedulable);
  const load = new Map(ready.map((n) => [n.metadata!.name!, 0]));
  for (const p of pods) {
    const node = p.spec?.nodeName;
    if (node && load.has(node) && !['Succeeded', 'Failed'].includes(p.status?.phase ?? '')) load.set(node, load.get(node)! + 1);
  }
  let best: string | undefined;
  for (const [name, n] of [...load].sort(([a], [b]) => a.localeCompare(b))) if (best === undefined || n < load.get(best)!) best = name;
  return best;
}

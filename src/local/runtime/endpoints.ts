// The EndpointSlice controller of the local cluster: one slice per service (IPv4), listing the
// pods its selector matches with their readiness, kept up to date as pods and services change.
// Slices carry kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by, as the
// real controller's do, so clients select them the same way.
import type * as k8s from '@kubernetes/client-node';

export const MANAGED_BY = 'endpointslice.mesh.io';

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels?.[k] === v);
}

function resolvePort(target: number | string | undefined, port: number, pod: k8s.V1Pod): number | undefined {
  if (target === undefined) return port;
  if (typeof target === 'number') return target;
  if (/^\d+$/.test(target)) return Number(target);
  for (const c of pod.spec?.containers ?? []) {
    const p = c.ports?.find((x) => x.name === target);
    if (p) return p.containerPort;
  }
  return undefined;
}

/** The slice a service should have, given all pods; undefined for services without a selector. */
export function desiredSlice(svc: k8s.V1Service, pods: k8s.V1Pod[]): k8s.V1EndpointSlice | undefined {
  const selector = svc.spec?.selector;
  if (!selector || Object.keys(selector).length === 0) return undefined;
  const ns = svc.metadata!.namespace!;
  const name = svc.metadata!.name!;
  const selected = pods
    .filter((p) => p.metadata?.namespace === ns && matches(selector, p.metadata?.labels) && p.status?.podIP && !p.metadata?.deletionTimestamp)
    .filter((p) => p.status?.phase === 'Running')
    .sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!));
  // One target port per service port; a named port must resolve the same way on every pod.
  const ports = (svc.spec?.ports ?? []).map((sp) => ({
    name: sp.name ?? '',
    protocol: sp.protocol ?? 'TCP',
    port: (selected[0] && resolvePort(sp.targetPort as number | string | undefined, sp.port, selected[0])) ?? (typeof sp.targetPort === 'number' ? sp.targetPort : sp.port),
    ...(sp.appProtocol ? { appProtocol: sp.appProtocol } : {}),
  }));
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${name}-local`,
      namespace: ns,
      labels: { 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': MANAGED_BY },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name, uid: svc.metadata!.uid!, controller: true, blockOwnerDeletion: true }],
    },
    addressType: 'IPv4',
    endpoints: selected.map((p) => {
      const ready = p.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
      return {
        addresses: [p.status!.podIP!],
        conditions: { ready, serving: ready, terminating: false },
        nodeName: p.spec?.nodeName,
        targetRef: { kind: 'Pod', namespace: ns, name: p.metadata!.name!, uid: p.metadata!.uid! },
      };
    }),
    ports,
  };
}

/** Same content, ignoring server-set metadata. */
export function sliceEqual(a: k8s.V1EndpointSlice, b: k8s.V1EndpointSlice): boolean {
  const strip = (s: k8s.V1EndpointSlice) => JSON.stringify({ e: s.endpoints ?? [], p: s.ports ?? [], l: s.metadata?.labels });
  return strip(a) === strip(b);
}

// Flow records for the unit tests: a mesh flow from one pod to another, every field a test does
// not set filled in as ztunnel would report it.
import type { Flow } from '../../src/flows/types.ts';

/** `src` and `dst` are namespace/pod; the rest overrides the record's fields. */
export type FlowOverrides = Partial<Flow> & { src?: string; dst?: string };

export function meshFlow(n: number, over: FlowOverrides, defaults: { src: string; dst: string }): Flow {
  const { src = defaults.src, dst = defaults.dst, ...fields } = over;
  const [sns, spod] = src.split('/');
  const [dns, dpod] = dst.split('/');
  return {
    timeUnixNano: 1_800_000_000_000_000_000 + n * 1_000_000,
    uuid: `u${n}`,
    nodeName: 'node1',
    verdict: 'FORWARDED',
    dropReasonDesc: '',
    ip: { source: '10.100.0.3', destination: '10.101.0.2', ipVersion: 4, encrypted: true },
    tcp: { sourcePort: 40000 + n, destinationPort: 8080 },
    source: { namespace: sns!, podName: spod!, identity: `spiffe://cluster.local/ns/${sns}/sa/${spod}`, serviceAccount: spod!, workload: spod!, nodeName: 'node1' },
    destination: { namespace: dns!, podName: dpod!, identity: `spiffe://cluster.local/ns/${dns}/sa/${dpod}`, serviceAccount: dpod!, workload: dpod!, nodeName: 'node2' },
    type: 'L3_L4',
    trafficDirection: 'EGRESS',
    destinationService: '',
    reporter: 'ztunnel-source',
    protocol: 'HBONE',
    bytesSent: 10,
    bytesReceived: 20,
    durationMs: 1,
    responseFlags: '-',
    summary: 'HBONE mTLS',
    kernel: null,
    l7: null,
    ...fields,
  };
}

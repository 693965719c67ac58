// The agent's Prometheus metrics without a kernel: datapath events by kind and reason, flows by
// verdict, type, reporter and ends, losses always present (zeros included), ring and pods.
import test from 'ava';
import { agentMetrics } from '../../src/agent/metrics.ts';
import { FlowRing } from '../../src/flows/ring.ts';
import type { Flow } from '../../src/flows/types.ts';

function flow(over: Partial<Flow>): Flow {
  return {
    timeUnixNano: 1, uuid: 'u', nodeName: 'node1', verdict: 'FORWARDED', dropReasonDesc: '',
    ip: { source: '10.0.0.1', destination: '10.0.0.2', ipVersion: 4, encrypted: true }, tcp: { sourcePort: 1, destinationPort: 8080 },
    source: { namespace: 'shop', podName: 'frontend-1', identity: '', serviceAccount: '', workload: 'frontend', nodeName: '' },
    destination: { namespace: 'shop', podName: 'catalog-1', identity: '', serviceAccount: '', workload: 'catalog', nodeName: '' },
    type: 'L3_L4', trafficDirection: 'EGRESS', destinationService: '', reporter: 'ztunnel-source', protocol: 'HBONE', bytesSent: 0, bytesReceived: 0,
    durationMs: 0, responseFlags: '-', summary: '', kernel: null, l7: null, ...over,
  };
}

test('agent metrics: events, flows, losses, ring and pods in Prometheus text', async (t) => {
  const ring = new FlowRing(4);
  const events = new Map([['CAPTURED\0', 7], ['REFUSED\0no-ztunnel-socket', 2]]);
  let lostKernel = 0;
  const registry = agentMetrics({
    events,
    kernelEventsLost: () => lostKernel,
    ztunnelRecordsLost: () => 0,
    enrolledPods: () => 3,
    ring,
    onFlow: (fn) => ring.subscribe(() => {
      const it = ring.at(ring.nextSeq - 1);
      if (it && 'flow' in it) fn(it.flow);
    }),
  });
  const before = await registry.metrics();
  t.regex(before, /^mesh_flows_lost_total\{source="KERNEL_RING_BUFFER"\} 0$/m, 'losses are there at zero, so a panel shows 0, not "no data"');
  ring.push(flow({}));
  ring.push(flow({}));
  ring.push(flow({ verdict: 'DROPPED', reporter: 'ztunnel-destination' }));
  ring.push(flow({ type: 'L7', reporter: 'waypoint shop/waypoint' }));
  ring.push(flow({ ip: { source: '10.0.0.1', destination: '10.0.0.9', ipVersion: 4, encrypted: false }, reporter: 'kernel', destination: { namespace: '', podName: '', identity: '', serviceAccount: '', workload: '', nodeName: '' } }));
  ring.pushLost({ source: 'KERNEL_RING_BUFFER', numEventsLost: 1, detail: '' }, 1);
  lostKernel = 5;
  events.set('CAPTURED\0', 8);
  const text = await registry.metrics();
  t.regex(text, /^mesh_datapath_events_total\{event="CAPTURED",reason="none"\} 8$/m);
  t.regex(text, /^mesh_datapath_events_total\{event="REFUSED",reason="no-ztunnel-socket"\} 2$/m);
  t.regex(text, /^mesh_datapath_events_lost_total 5$/m);
  t.regex(text, /^mesh_flows_processed_total\{type="L3_L4",reporter="ztunnel-source",verdict="FORWARDED",source_namespace="shop",source_workload="frontend",destination_namespace="shop",destination_workload="catalog",encrypted="true"\} 2$/m);
  t.regex(text, /^mesh_flows_processed_total\{[^}]*reporter="ztunnel-destination",verdict="DROPPED"[^}]*\} 1$/m);
  t.regex(text, /^mesh_flows_processed_total\{type="L7",reporter="waypoint",[^}]*\} 1$/m, 'the waypoint instance is not a label');
  t.regex(text, /^mesh_flows_processed_total\{[^}]*reporter="kernel"[^}]*destination_namespace="unknown",destination_workload="unknown",encrypted="false"\} 1$/m);
  t.regex(text, /^mesh_flows_lost_total\{source="KERNEL_RING_BUFFER"\} 5$/m);
  t.regex(text, /^mesh_flows_lost_total\{source="FLOW_RING_BUFFER"\} 2$/m, '6 items through a ring of 4: 2 overwritten');
  t.regex(text, /^mesh_flow_ring_flows 4$/m);
  t.regex(text, /^mesh_flow_ring_capacity 4$/m);
  t.regex(text, /^mesh_enrolled_pods 3$/m);
  t.regex(text, /^istio_build\{component="agent",tag="\d+\.\d+\.\d+[^"]*"\} 1$/m);
  t.regex(text, /^process_resident_memory_bytes \d+/m);
});

// The node agent's metrics: what the datapath decided and what became of the node's flows —
// Hubble's flow metrics (hubble_flows_processed_total, hubble_drop_total) and Cilium's datapath
// counters, in our names. Counted as plain numbers where they happen (one Map update per event
// or flow) and handed to prom-client at scrape time, as ztunnel's istio_tcp_* are.
//
// Labels are bounded by the cluster: event kinds and reasons are the datapath's fixed sets;
// namespaces and workloads (not pods) name the flows' ends, as Istio's metrics do.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Flow } from '../flows/types.ts';
import { registerBuildInfo } from '../telemetry/index.ts';

export interface AgentMetricsSource {
  /** Datapath events by "KIND\0reason", counted since start. */
  events: ReadonlyMap<string, number>;
  /** The kernel ring's drop counter (events the programs could not report). */
  kernelEventsLost(): number;
  /** ztunnel's connection records it could not hand over. */
  ztunnelRecordsLost(): number;
  enrolledPods(): number;
  ring: { size: number; capacity: number; overwritten: number };
  /** Called with each flow as it enters the node's ring. */
  onFlow(fn: (f: Flow) => void): void;
}

const FLOW_LABELS = ['type', 'reporter', 'verdict', 'source_namespace', 'source_workload', 'destination_namespace', 'destination_workload', 'encrypted'] as const;
type FlowLabels = Record<(typeof FLOW_LABELS)[number], string>;

/** "waypoint shop/waypoint" → "waypoint": the reporter kind, not the instance. */
function reporterKind(r: string): string {
  return r.startsWith('waypoint') ? 'waypoint' : r || 'unknown';
}

function flowLabels(f: Flow): FlowLabels {
  return {
    type: f.type === 'L7' ? 'L7' : 'L3_L4',
    reporter: reporterKind(f.reporter),
    verdict: f.verdict,
    source_namespace: f.source.namespace || 'unknown',
    source_workload: f.source.workload || f.source.podName || 'unknown',
    destination_namespace: f.destination.namespace || 'unknown',
    destination_workload: f.destination.workload || f.destination.podName || 'unknown',
    encrypted: String(f.ip.encrypted),
  };
}

/** The agent's registry: its own counters plus the process's (process_*, nodejs_*). */
export function agentMetrics(src: AgentMetricsSource): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerBuildInfo(registry, 'agent');
  const flows = new Map<string, { labels: FlowLabels; n: number }>();
  src.onFlow((f) => {
    const labels = flowLabels(f);
    const key = FLOW_LABELS.map((k) => labels[k]).join('\0');
    const s = flows.get(key);
    if (s) s.n++;
    else flows.set(key, { labels, n: 1 });
  });
  new Counter({
    name: 'mesh_datapath_events_total',
    help: 'Decisions the eBPF programs reported, by event (CAPTURED, STEERED, PASSED, REFUSED, OBSERVED: one per connection of a pod outside the mesh, at its close) and reason',
    labelNames: ['event', 'reason'],
    registers: [registry],
    collect(this: Counter) {
      this.reset();
      for (const [key, n] of src.events) {
        const [event = '', reason = ''] = key.split('\0');
        this.inc({ event, reason: reason || 'none' }, n);
      }
    },
  });
  new Counter({
    name: 'mesh_datapath_events_lost_total',
    help: "Events the eBPF programs could not report because the ring buffer was full (the kernel's count)",
    registers: [registry],
    collect(this: Counter) {
      this.reset();
      this.inc(src.kernelEventsLost());
    },
  });
  new Counter({
    name: 'mesh_flows_processed_total',
    help: "Flows the node recorded (Hubble's hubble_flows_processed_total), by type, reporter, verdict, both ends and mTLS",
    labelNames: FLOW_LABELS,
    registers: [registry],
    collect(this: Counter) {
      this.reset();
      for (const s of flows.values()) this.inc(s.labels, s.n);
    },
  });
  new Counter({
    name: 'mesh_flows_lost_total',
    help: 'Flows lost before they reached the ring (kernel ring buffer, ztunnel records) or pushed out of it unread (flow ring)',
    labelNames: ['source'],
    registers: [registry],
    collect(this: Counter) {
      this.reset();
      // Always present, zeros included: a panel of losses must show 0, not "no data".
      this.inc({ source: 'KERNEL_RING_BUFFER' }, src.kernelEventsLost());
      this.inc({ source: 'ZTUNNEL_RECORDS' }, src.ztunnelRecordsLost());
      this.inc({ source: 'FLOW_RING_BUFFER' }, src.ring.overwritten);
    },
  });
  new Gauge({
    name: 'mesh_flow_ring_flows',
    help: "Flows (and loss markers) kept in the node's ring now",
    registers: [registry],
    collect(this: Gauge) {
      this.set(src.ring.size);
    },
  });
  new Gauge({
    name: 'mesh_flow_ring_capacity',
    help: "The node's flow ring size (MESH_FLOW_RING)",
    registers: [registry],
    collect(this: Gauge) {
      this.set(src.ring.capacity);
    },
  });
  new Gauge({
    name: 'mesh_enrolled_pods',
    help: 'Pods whose traffic the datapath captures on this node',
    registers: [registry],
    collect(this: Gauge) {
      this.set(src.enrolledPods());
    },
  });
  return registry;
}

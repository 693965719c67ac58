// The local cluster: node and pod networking on this host, built from network namespaces.
export { CommandError, TopologyError } from './errors.ts';
export { ipBatch, run } from './run.ts';
export type { ExecResult, NodeNet, PodNet, TopologyOptions } from './topology.ts';
export { Topology } from './topology.ts';

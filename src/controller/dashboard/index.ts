// The service map in the browser (issue 17 §1): served by the controller, fed by its flow relay.
export { GRAPH_DEFAULTS, type GraphEdge, type GraphNode, type GraphSnapshot, type Inventory, ServiceGraph, serviceOf } from './graph.ts';
export { DashboardQueryError, DEFAULT_LAST, flowsRequest, QUERY_FLAGS } from './query.ts';
export { DashboardListenError, type DashboardOptions, type RunningDashboard, startDashboard } from './server.ts';
export { type FlowSource, relayFlowSource } from './source.ts';

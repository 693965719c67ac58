// The mesh as a proxy sees it, fed by the config stream: workloads by address and pod, services
// by VIP, the policies compiled, waypoints. Shared by ztunnel and (later) the waypoint proxy.
export { canonicalIp, type Destination, ipText, MeshState, type MeshTypes, type ServiceEndpoint, type WaypointStatus } from './mesh-state.ts';

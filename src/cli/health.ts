// `meshctl check --post-install`: is the installed mesh healthy? One verdict per part — the
// controller, and on every node the agent, its ztunnel and their config — each with what to do,
// from what the controller's relay reports (ServerStatus and GetNodes).
import type { NodeInfo, ServerStatus } from '../flows/types.ts';
import type { CheckResult } from './checks.ts';

export function meshHealth(relay: string, st: ServerStatus | Error, nodes: NodeInfo[]): CheckResult[] {
  if (st instanceof Error) {
    return [
      {
        name: 'controller',
        status: 'fail',
        detail: `no answer from its relay at ${relay}: ${st.message}`,
        fix: 'is the mesh running? `meshctl dev status` (local cluster), or `kubectl -n mesh-system get pods` and `kubectl -n mesh-system port-forward deploy/mesh-controller 4245`',
      },
    ];
  }
  const out: CheckResult[] = [{ name: 'controller', status: 'ok', detail: `reachable at ${relay} (mesh ${st.version})` }];
  if (nodes.length === 0) {
    out.push({ name: 'nodes', status: 'fail', detail: 'no node agent has connected to the controller', fix: 'is the node DaemonSet running? `kubectl -n mesh-system get pods -o wide`; its logs say why it cannot reach the controller' });
    return out;
  }
  for (const n of nodes) {
    if (n.state === 'CONNECTED') {
      out.push({ name: `${n.name} agent`, status: 'ok', detail: `connected, ${n.enrolledPods} pod${n.enrolledPods === 1 ? '' : 's'} enrolled, ${n.numFlows}/${n.maxFlows} flows` });
    } else {
      out.push({ name: `${n.name} agent`, status: 'fail', detail: `its flows API at ${n.address} does not answer: ${n.error}`, fix: `check the agent's log on ${n.name}; the controller must reach it on the address it announced` });
    }
    const zt = n.configClients.find((c) => c.id.startsWith('ztunnel~'));
    if (!zt) {
      out.push({ name: `${n.name} ztunnel`, status: 'fail', detail: 'not connected to the controller', fix: `check ztunnel's log on ${n.name} (certificate, controller address)` });
    } else if (n.state === 'CONNECTED' && !n.ztunnelConnected) {
      out.push({ name: `${n.name} ztunnel`, status: 'fail', detail: 'connected to the controller but not to its node agent (ZDS): enrolled pods there get connection refused', fix: `check that ztunnel and the agent on ${n.name} share the ZDS socket (MESH_ZDS_SOCKET)` });
    } else {
      out.push({ name: `${n.name} ztunnel`, status: 'ok', detail: 'connected to the controller and to its node agent' });
    }
    const stale = n.configClients.filter((c) => !c.inSync);
    if (stale.length) {
      const nacked = stale.some((c) => c.nacks > 0);
      out.push({
        name: `${n.name} config`,
        status: nacked ? 'fail' : 'warn',
        detail: `${stale.map((c) => c.id).join(', ')} ${nacked ? 'rejected part of the config' : 'has not acknowledged the latest config yet'}`,
        fix: nacked ? "the controller's log names the rejected resource and why" : 'run the check again in a few seconds; if it stays, check the client\'s log',
      });
    } else {
      out.push({ name: `${n.name} config`, status: 'ok', detail: `in sync (${n.configClients.map((c) => `${c.id.split('~')[0]} ${c.resources}`).join(', ')} resources)` });
    }
  }
  const lost = st.kernelEventsLost + st.ztunnelRecordsLost;
  out.push(
    lost > 0
      ? { name: 'flows', status: 'warn', detail: `${st.kernelEventsLost} kernel events and ${st.ztunnelRecordsLost} ztunnel records were lost`, fix: 'flows are incomplete under this load; a larger ring (MESH_FLOW_RING) does not help kernel losses — they mean the agent reads too slowly' }
      : { name: 'flows', status: 'ok', detail: `${st.numFlows}/${st.maxFlows} kept, nothing lost` },
  );
  return out;
}

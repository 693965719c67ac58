// `meshctl status`: is the mesh whole? The controller (through its relay), every node's agent
// and ztunnel, whether their config is in sync with the controller, and the flows each keeps —
// `hubble status` and `istioctl proxy-status` in one view. Exit code 1 when something is off.
import { Command, Option } from 'commander';
import type { NodeInfo, ServerStatus } from '../../flows/types.ts';
import { DEFAULT_STATE_DIR } from '../endpoints.ts';
import { relayAccess } from '../relay.ts';
import { ztunnelAccess } from '../ztunnels.ts';

interface StatusOptions {
  stateDir: string;
  server?: string;
  output: 'table' | 'json';
}

function syncText(n: NodeInfo, kind: 'agent' | 'ztunnel'): string {
  const c = n.configClients.find((x) => x.id.startsWith(`${kind}~`));
  if (!c) return 'NOT CONNECTED';
  if (c.nacks > 0 && !c.inSync) return `REJECTED (${c.nacks} NACKs)`;
  return c.inSync ? `SYNCED (${c.resources})` : 'STALE';
}

export function problems(status: ServerStatus, nodes: NodeInfo[]): string[] {
  const out: string[] = [];
  if (nodes.length === 0) out.push('no node agent has connected to the controller: is the node DaemonSet running?');
  for (const n of nodes) {
    if (n.state !== 'CONNECTED') out.push(`${n.name}: the agent's flows API at ${n.address} does not answer (${n.error})`);
    if (!n.configClients.some((c) => c.id.startsWith('ztunnel~'))) out.push(`${n.name}: no ztunnel is connected to the controller — check its logs`);
    else if (!n.ztunnelConnected && n.state === 'CONNECTED') out.push(`${n.name}: ztunnel is not connected to its node agent (ZDS) — pods there are not served`);
    for (const c of n.configClients) if (!c.inSync) out.push(`${n.name}: ${c.id} has not acknowledged the current config${c.nacks ? ` (${c.nacks} rejections: see the controller's log)` : ''}`);
  }
  if (status.kernelEventsLost > 0) out.push(`${status.kernelEventsLost} datapath events were lost (kernel ring buffer full)`);
  return out;
}

/** A ztunnel a rollout replaced, as its admin server describes its drain (/config_dump). */
interface Draining {
  node: string;
  admin: string;
  pod?: string;
  connections?: number;
  deadline?: string;
  error?: string;
}

/** The draining ztunnels: those the local cluster's mesh.json lists, or the node pods being deleted. */
async function drainingZtunnels(o: StatusOptions): Promise<Draining[]> {
  let access: Awaited<ReturnType<typeof ztunnelAccess>>;
  try {
    access = await ztunnelAccess({ stateDir: o.stateDir, drainingOnly: true });
  } catch {
    // No ztunnel to be found at all: the node checks above say so.
    return [];
  }
  try {
    const out: Draining[] = [];
    for (const t of access.draining) {
      const node = t.node ?? '?';
      const where = t.pod ? { pod: t.pod } : {};
      try {
        const r = await fetch(`http://${t.admin}/config_dump`, { signal: AbortSignal.timeout(3000) });
        const d = ((await r.json()) as { drain?: { phase: string; connections: number; deadline?: string } }).drain;
        if (d?.phase === 'draining') out.push({ node, admin: t.admin, ...where, connections: d.connections, ...(d.deadline ? { deadline: d.deadline } : {}) });
      } catch (err) {
        // Gone between the listing and now: it finished draining.
        if ((err as Error).name !== 'TypeError') out.push({ node, admin: t.admin, ...where, error: (err as Error).message });
      }
    }
    return out;
  } finally {
    access.close();
  }
}

/** "node1: ztunnel draining (37 connections, 12 min left)". */
export function drainingText(d: Draining, now = Date.now()): string {
  if (d.error) return `${d.node}: a draining ztunnel (${d.pod ?? `admin ${d.admin}`}) does not answer: ${d.error}`;
  const n = d.connections ?? 0;
  let left = 'no deadline';
  if (d.deadline) {
    const ms = Math.max(0, Date.parse(d.deadline) - now);
    left = ms >= 60_000 ? `${Math.round(ms / 60_000)} min left` : `${Math.ceil(ms / 1000)} s left`;
  }
  return `${d.node}: ztunnel draining (${n} connection${n === 1 ? '' : 's'}, ${left})`;
}

async function status(o: StatusOptions): Promise<void> {
  const access = await relayAccess(o);
  const address = access.address;
  const { credentials } = await import('@grpc/grpc-js');
  const { observerClient, unary } = await import('../../flows/server.ts');
  const client = observerClient(address, credentials.createInsecure());
  try {
    let st: ServerStatus;
    let nodes: NodeInfo[];
    try {
      st = await unary<ServerStatus>((opts, cb) => client.ServerStatus({}, opts, cb), 8000);
      nodes = (await unary<{ nodes: NodeInfo[] }>((opts, cb) => client.GetNodes({}, opts, cb), 8000)).nodes;
    } catch (e) {
      throw new Error(`the controller does not answer at ${address} (${access.via}): ${(e as Error).message} — is the mesh running (\`meshctl dev status\`, \`kubectl -n mesh-system get pods\`)?`, { cause: e });
    }
    const issues = problems(st, nodes);
    const draining = await drainingZtunnels(o);
    if (o.output === 'json') {
      process.stdout.write(`${JSON.stringify({ controller: { address, version: st.version }, flows: st, nodes, draining, problems: issues }, null, 2)}\n`);
    } else {
      const rows = [
        ['NODE', 'AGENT', 'ENROLLED PODS', 'ZTUNNEL', 'AGENT CONFIG', 'ZTUNNEL CONFIG', 'FLOWS'],
        ...nodes.map((n) => [
          n.name,
          n.state,
          String(n.enrolledPods),
          n.ztunnelConnected ? 'CONNECTED' : 'NOT CONNECTED',
          syncText(n, 'agent'),
          syncText(n, 'ztunnel'),
          `${n.numFlows}/${n.maxFlows}`,
        ]),
      ];
      const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      const lines = [
        `Controller:      ${access.via === '--server' ? address : access.via} (mesh ${st.version})`,
        `Connected nodes: ${st.numConnectedNodes}/${st.numConnectedNodes + st.numUnavailableNodes}`,
        `Flows:           ${st.numFlows}/${st.maxFlows} kept, ${st.seenFlows} seen, ${st.flowsRate.toFixed(2)} flows/s`,
        `Lost:            ${st.kernelEventsLost} kernel events, ${st.ztunnelRecordsLost} ztunnel records, ${st.flowsOverwritten} flows overwritten`,
        '',
        ...rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()),
        '',
        ...(draining.length ? [...draining.map((d) => drainingText(d)), ''] : []),
        ...(issues.length ? issues.map((p) => `✖ ${p}`) : ['✔ every node has its agent and ztunnel connected and its config in sync']),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    if (issues.length) process.exitCode = 1;
  } finally {
    client.close();
    access.close();
  }
}

export function statusCommand(): Command {
  return new Command('status')
    .description('show the controller, each node\'s agent and ztunnel, whether their config is in sync, and flow counts')
    .addOption(new Option('--state-dir <dir>', "the local cluster's state directory (env MESH_DEV_STATE_DIR)").default(DEFAULT_STATE_DIR))
    .option('--server <host:port>', "the controller's relay (default: from mesh.json, else a port-forward to the controller pod in mesh-system through the kubeconfig)")
    .addOption(new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'))
    .addHelpText('after', '\nExamples:\n  meshctl status\n  meshctl status -o json\n  meshctl status --server 127.0.0.1:4245   # after kubectl port-forward')
    .action(async (o: StatusOptions) => status(o));
}

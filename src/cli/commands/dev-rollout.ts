// `meshctl dev rollout <component> [--node N]`: on the local cluster, the handover a rolling
// update of the node DaemonSet (or of the controller Deployment) performs on a real one (src/local/rollout/): the daemon starts the
// new process, waits until it serves everything, then lets the old one drain. Its components are
// listed by the daemon (src/local/rollout/index.ts), which refuses any other name.
import net from 'node:net';
import { createInterface } from 'node:readline';
import { Command, Option } from 'commander';
import type { ControlReply, RolloutRequest } from '../../local/daemon-control.ts';
import { controlPath } from '../../local/daemon-state.ts';
import { DEFAULT_STATE_DIR } from '../endpoints.ts';

interface RolloutOptions {
  stateDir: string;
  node?: string;
  drainTimeout?: string;
  wait: boolean;
}

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

async function rollout(component: string, o: RolloutOptions): Promise<void> {
  const req: RolloutRequest = { op: 'rollout', component, ...(o.node ? { node: o.node } : {}), waitDrained: o.wait };
  if (o.drainTimeout !== undefined) {
    // Loaded here: every other meshctl command starts faster without it.
    const { parseDuration } = await import('../../common/settings.ts');
    const ms = parseDuration(o.drainTimeout);
    if (ms === undefined) throw new Error(`--drain-timeout must be a duration such as 30s, 10m or 1h (0s: no limit); got '${o.drainTimeout}'`);
    req.drainTimeoutMs = ms;
  }
  const path = controlPath(o.stateDir);
  const sock = net.connect(path);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? `no local cluster with the mesh is running (${path}): start one with \`meshctl dev up\`` : `cannot reach the local cluster's daemon at ${path}: ${e.message}`)),
    );
  });
  sock.write(`${JSON.stringify(req)}\n`);
  let failed: string | undefined;
  let done = false;
  for await (const line of createInterface({ input: sock })) {
    const r = JSON.parse(line) as ControlReply;
    if ('progress' in r) say(`  • ${r.progress}`);
    else if ('rolledOut' in r) {
      for (const x of r.rolledOut) say(`${x.node ?? component}: ${component} pid ${x.newPid} serving${x.oldPid ? `; pid ${x.oldPid} draining` : ''} (handover ${x.handoverMs} ms)`);
      if (!o.wait) say('the old processes drain in the background: `meshctl status` shows them until they exit');
    } else if ('drained' in r) say(`${r.drained.node ?? component}: old pid ${r.drained.pid ?? '?'} exited after draining for ${(r.drained.ms / 1000).toFixed(1)} s`);
    else if ('error' in r) failed = r.error;
    else if ('done' in r) done = true;
  }
  if (failed) throw new Error(`rollout of ${component} failed: ${failed}`);
  if (!done) throw new Error('the daemon closed the connection before the rollout finished: see its log (daemon.log in the state dir)');
}

export function devRolloutCommand(): Command {
  return new Command('rollout')
    .description('replace a component on the local cluster as a rolling update would: start the new process, hand over, drain the old one')
    .argument('<component>', 'ztunnel, agent or controller')
    .option('--node <name>', 'only this node (default: every node, one after the other)')
    .option('--drain-timeout <duration>', "the new ztunnels' MESH_DRAIN_TIMEOUT: how long they will drain when they are replaced in turn (0s: no limit)")
    .option('--wait', 'wait until every old process has finished draining and exited', false)
    .addOption(new Option('--state-dir <dir>', 'the local cluster\'s state directory (env MESH_DEV_STATE_DIR)').default(DEFAULT_STATE_DIR))
    .addHelpText(
      'after',
      `
Examples:
  sudo meshctl dev rollout ztunnel                 # node after node: new ztunnel serves, old one drains
  sudo meshctl dev rollout ztunnel --node node1 --wait
  sudo meshctl dev rollout agent                   # capture stays pinned; traffic is untouched
  sudo meshctl dev rollout controller              # replicas one at a time (needs dev up --controller-replicas 2)
`,
    )
    .action((component: string, o: RolloutOptions) => rollout(component, o));
}

// `meshctl dev rollout controller`: on the local cluster, what a rollout of the controller
// Deployment does on a real one (maxSurge 1, maxUnavailable 0): each replica is replaced by a new
// one that serves before the old one leaves the Service and stops. The daemon owns the replica
// processes, so meshctl asks it over its control socket (src/local/daemon-control.ts) and prints
// its progress; the rollout itself is src/local/rollout-controller.ts.
import { Argument, Command, Option } from 'commander';
import { daemonRequest } from '../../local/daemon-control.ts';

const DEFAULT_STATE_DIR = process.env.MESH_DEV_STATE_DIR || '/var/lib/mesh/dev';

export async function rolloutController(stateDir: string): Promise<void> {
  const started = Date.now();
  const result = (await daemonRequest(stateDir, { op: 'rollout', component: 'controller' }, (m) => process.stdout.write(`  • ${m}\n`))) as { from: string; to: string }[];
  process.stdout.write(`controller rolled out in ${((Date.now() - started) / 1000).toFixed(1)} s: ${result.map((r) => `${r.from} → ${r.to}`).join(', ')}\n`);
}

export function devRolloutCommand(): Command {
  return new Command('rollout')
    .description('replace a component of the local cluster the way a rollout does, without a gap')
    .addArgument(new Argument('<component>', 'what to roll out').choices(['controller']))
    .addOption(new Option('--state-dir <dir>', 'the local cluster\'s state directory (env MESH_DEV_STATE_DIR)').default(DEFAULT_STATE_DIR))
    .addHelpText(
      'after',
      '\nExamples:\n  sudo meshctl dev up --controller-replicas 2\n  sudo meshctl dev rollout controller   # new replica serves, then the old one leaves; repeated per replica\n  kubectl get lease -n mesh-system mesh-controller   # the leader moved\n',
    )
    .action(async (component: string, opts: { stateDir: string }) => {
      if (component === 'controller') await rolloutController(opts.stateDir);
    });
}

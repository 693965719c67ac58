// `meshctl dev rollout` as a user runs it against `meshctl dev up`: the daemon replaces each
// node's ztunnel (new one serving, old one drained and gone) and agent, and refuses a component
// it does not know.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { devCluster } from '../helpers/dev.ts';
import { assertNothingLeaked, requireRoot } from '../helpers/topology.ts';

test('dev rollout ztunnel then agent replaces each process and the old ztunnel drains and exits', async (t) => {
  if (!(await requireRoot(t))) return;
  const { prefix, stateDir, meshctl } = devCluster(t);
  await meshctl('dev', 'up', '--nodes', '2');
  const pids = () => readFileSync(`${stateDir}/mesh.pids`, 'utf8').trim().split('\n').map(Number).sort();
  const before = pids();

  const z = await meshctl('dev', 'rollout', 'ztunnel', '--wait');
  t.log(z.stdout);
  for (const node of ['node1', 'node2']) {
    t.regex(z.stdout, new RegExp(`${node}: ztunnel pid \\d+ serving; pid \\d+ draining \\(handover \\d+ ms\\)`));
    t.regex(z.stdout, new RegExp(`${node}: old pid \\d+ exited after draining for [\\d.]+ s`));
  }
  const one = await meshctl('dev', 'rollout', 'agent', '--node', 'node2');
  t.log(one.stdout);
  t.regex(one.stdout, /node2: agent pid \d+ serving/);
  t.notRegex(one.stdout, /node1/);
  const after = pids();
  t.is(after.length, before.length, 'one process per component and node, as before');
  t.is(after.filter((p) => before.includes(p)).length, before.length - 3, 'both ztunnels and node2\'s agent are new processes');
  // The mesh works on: `meshctl status` sees every node's agent and ztunnel.
  const st = await meshctl('status');
  t.regex(st.stdout, /every node has its agent and ztunnel connected/);

  const bad = await meshctl('dev', 'rollout', 'waypoint').catch((e: { stderr: string; code: number }) => e);
  t.regex((bad as { stderr: string }).stderr, /cannot roll out 'waypoint': choose one of ztunnel, agent/);
  const badNode = await meshctl('dev', 'rollout', 'ztunnel', '--node', 'node9').catch((e: { stderr: string; code: number }) => e);
  t.regex((badNode as { stderr: string }).stderr, /no node 'node9' in the local cluster \(nodes: node1, node2\)/);

  await meshctl('dev', 'down', '--purge');
  t.deepEqual(await assertNothingLeaked(prefix), []);
});

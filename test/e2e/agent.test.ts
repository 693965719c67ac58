// The agent as a process: killing it leaves capture in place; a new agent picks the pinned state
// up again without dropping or doubling anything.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { controlRequest, type EnrolledPod } from '../../src/agent/index.ts';
import { hostEnv } from '../../src/common/settings.ts';
import { connectFrom, hp, startApp } from '../helpers/pods.ts';
import { startStandin } from '../helpers/standin.ts';
import { makeTopology, requireRoot } from '../helpers/topology.ts';

const AGENT = fileURLToPath(new URL('../../src/agent/main.ts', import.meta.url));

async function startAgent(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, [AGENT], {
    // The test's own MESH_* variables (MESH_ALLOW_SKIP) are not the agent's: it would refuse them.
    env: { ...hostEnv(), ...env, MESH_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`agent exited with ${child.exitCode}: ${log}`);
    if (log.includes('"agent ready"')) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`agent did not become ready: ${log}`);
}

/** Programs attached to a cgroup, by attach type, as the kernel reports them. */
function attached(cgroup: string): string[] {
  const out = JSON.parse(
    execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8' }) || '[]',
  ) as { attach_type: string }[];
  return out.map((p) => p.attach_type).sort();
}

test('killing the agent leaves capture working; a restarted agent restores enrolment without doubling it', async (t) => {
  if (!(await requireRoot(t))) return;
  const { topo, bpffs, cgroupParent, prefix } = await makeTopology(t);
  const [a, b] = [await topo.addNode('a'), await topo.addNode('b')];
  const [client, server] = await Promise.all([topo.addPod(a, 'client'), topo.addPod(b, 'server')]);
  await startApp(topo, server, [8080]);
  const run = mkdtempSync(`/tmp/mesh-${prefix}-run-`);
  const env = {
    MESH_BPFFS_DIR: bpffs,
    MESH_POD_CGROUP: cgroupParent,
    MESH_AGENT_SOCKET: `${run}/agent.sock`,
    // As the chart sets it from the downward API (status.hostIP): the agent must start with it.
    MESH_NODE_IP: '127.0.0.1',
    // Its metrics on a port of its own choosing, on loopback: not a fixed port on the host.
    MESH_AGENT_METRICS_ADDRESS: '127.0.0.1:0',
  };
  const agents: ChildProcess[] = [];
  t.teardown(async () => {
    for (const ag of agents) if (ag.exitCode === null && ag.signalCode === null) ag.kill('SIGTERM');
    await Promise.all(
      agents.filter((ag) => ag.exitCode === null && ag.signalCode === null).map((ag) => once(ag, 'exit')),
    );
    // What an operator's uninstall does: this test's pins go with its bpffs.
    const { Datapath } = await import('../../src/datapath/index.ts');
    Datapath.uninstall(bpffs);
    rmSync(run, { recursive: true, force: true });
  });

  agents.push(await startAgent(env));
  const spec = {
    uid: client.uid,
    netnsPath: client.netnsPath,
    cgroupPath: client.cgroup,
    addresses: [client.ip4],
  };
  const enrolled = (await controlRequest(env.MESH_AGENT_SOCKET, { op: 'enrol', pod: spec })) as EnrolledPod;
  const z = await startStandin(bpffs, client, BigInt(enrolled.netnsCookie), { inbound: false });
  t.teardown(() => z.close());
  const [before] = await connectFrom(topo, client, [hp(server.ip4, 8080)]);
  t.is(before?.reply?.listener, 'outbound');

  agents[0]!.kill('SIGKILL');
  await once(agents[0]!, 'exit');
  const [during] = await connectFrom(topo, client, [hp(server.ip4, 8080)]);
  t.is(during?.reply?.listener, 'outbound', 'capture continues with no agent running');

  agents.push(await startAgent(env));
  const listed = (await controlRequest(env.MESH_AGENT_SOCKET, { op: 'list' })) as EnrolledPod[];
  t.is(listed.length, 1);
  t.like(listed[0], { uid: client.uid, podId: enrolled.podId, netnsCookie: enrolled.netnsCookie });
  await controlRequest(env.MESH_AGENT_SOCKET, { op: 'enrol', pod: spec }); // enrolling again is a no-op
  const after = (await controlRequest(env.MESH_AGENT_SOCKET, { op: 'list' })) as EnrolledPod[];
  t.is(after.length, 1);
  t.deepEqual(
    attached(cgroupParent),
    ['cgroup_inet4_connect', 'cgroup_inet6_connect', 'cgroup_sock_ops'],
    'each program attached exactly once',
  );
  t.deepEqual(
    readdirSync(`${bpffs}/links`).filter((f) => f.startsWith('pod-')),
    [`pod-${enrolled.netnsCookie}`],
  );
  const [restarted] = await connectFrom(topo, client, [hp(server.ip4, 8080)]);
  t.is(restarted?.reply?.listener, 'outbound');

  const bad = await controlRequest(env.MESH_AGENT_SOCKET, {
    op: 'enrol',
    pod: { ...spec, uid: 'x', addresses: ['not-an-ip'] },
  }).catch((e: Error & { code?: string }) => e);
  t.is((bad as { code?: string }).code, 'MESH_ERR_ENROL');
  t.regex((bad as Error).message, /'not-an-ip' is not an IP address/);
  const still = (await controlRequest(env.MESH_AGENT_SOCKET, { op: 'list' })) as EnrolledPod[];
  t.is(still.length, 1, 'a bad request changes nothing');
});

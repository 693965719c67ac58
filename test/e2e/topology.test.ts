import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { relative } from 'node:path';
import test from 'ava';
import { cgroupOfPid, findPodCgroup } from '../../src/common/cgroup.ts';
import { type PodNet, run, type Topology } from '../../src/local/index.ts';
import { assertNothingLeaked, makeTopology, requireRoot } from '../helpers/topology.ts';

const NODE = process.execPath;

// Answers every connection with "<pod name> <peer address>" so the client sees who it reached
// and the server's view of the source (no NAT between pods).
const SERVER = `
const name = process.argv[1];
const srv = require('node:net').createServer((s) => s.end(name + ' ' + s.remoteAddress.replace(/^::ffff:/, '') + '\\n'));
srv.listen({ host: '::', port: 0 }, () => console.log('listening ' + srv.address().port));
`;

// Connects to each "host port" argument pair in turn and prints one reply (or error) per line.
const CLIENT = `
const net = require('node:net');
const args = process.argv.slice(1);
(async () => {
  for (let i = 0; i < args.length; i += 2) {
    const line = await new Promise((resolve) => {
      let data = '';
      const s = net.connect({ host: args[i], port: Number(args[i + 1]), timeout: 3000 });
      s.on('data', (d) => (data += d)).on('end', () => resolve(data.trim()));
      s.on('timeout', () => { s.destroy(); resolve('timeout ' + args[i]); });
      s.on('error', (e) => resolve(e.code + ' ' + args[i]));
    });
    console.log(line);
  }
})();
`;

/** Running, as opposed to gone or a zombie waiting for its reaper. */
function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function startServer(topo: Topology, pod: PodNet): Promise<{ child: ChildProcess; port: number }> {
  const child = topo.spawn(pod, NODE, ['-e', SERVER, pod.name], { stdio: ['ignore', 'pipe', 'inherit'] });
  child.stdout!.setEncoding('utf8');
  const exit = once(child, 'exit').then(([code]) => `exited with ${code} before listening`);
  const [line] = (await Promise.race([once(child.stdout!, 'data'), exit.then((why) => [why])])) as [string];
  const port = Number(/listening (\d+)/.exec(line)?.[1]);
  if (!port) throw new Error(`server in ${pod.netns} did not start: ${line}`);
  return { child, port };
}

test('pods on two nodes reach each other by TCP over IPv4 and IPv6, without NAT', async (t) => {
  if (!(await requireRoot(t))) return;
  const { topo } = await makeTopology(t, { ipv6: true });
  const [a, b] = [await topo.addNode('a'), await topo.addNode('b')];
  const [a1, a2, b1, b2] = await Promise.all([
    topo.addPod(a, 'a1'),
    topo.addPod(a, 'a2'),
    topo.addPod(b, 'b1'),
    topo.addPod(b, 'b2'),
  ]);
  t.deepEqual([a1.ip4, a2.ip4, b1.ip4, b2.ip4], ['10.100.0.2', '10.100.0.3', '10.101.0.2', '10.101.0.3']);
  t.deepEqual([a1.ip6, b2.ip6], ['fd00:100::2', 'fd00:101::3']);

  const servers = await Promise.all([b1, b2, a2].map((pod) => startServer(topo, pod)));
  const targets = [b1, b2, a2].flatMap((pod, i) => [
    [pod.ip4, String(servers[i]!.port)],
    [pod.ip6!, String(servers[i]!.port)],
  ]);
  const result = await topo.exec(a1, NODE, ['-e', CLIENT, ...targets.flat()], { timeoutMs: 20_000 });
  t.is(result.code, 0, result.stderr);
  t.deepEqual(result.stdout.trim().split('\n'), [
    `b1 ${a1.ip4}`,
    `b1 ${a1.ip6}`,
    `b2 ${a1.ip4}`,
    `b2 ${a1.ip6}`,
    `a2 ${a1.ip4}`,
    `a2 ${a1.ip6}`,
  ]);
});

test('a pod process is in its pod cgroup and network namespace from its first instruction', async (t) => {
  if (!(await requireRoot(t))) return;
  const { topo, cgroupMount } = await makeTopology(t);
  const node = await topo.addNode('a');
  const uid = '0b6c2a4e-9d1f-4e7a-8c3b-5f2e1d0a9b8c';
  const pod = await topo.addPod(node, 'web', { uid });
  t.is(pod.cgroup, `${topo.cgroupParent}/a/pod${uid}`, 'in the subtree of its node, as under the kubepods of a kubelet');

  // What the command itself reads on start-up, before it could have been moved.
  const self = await topo.exec(pod, 'cat', ['/proc/self/cgroup']);
  t.true(self.stdout.includes(`0::/${relative(cgroupMount, pod.cgroup)}\n`), self.stdout);

  const { child } = await startServer(topo, pod);
  t.is(cgroupOfPid(child.pid!), `/${relative(cgroupMount, pod.cgroup)}`);
  t.is(readlinkSync(`/proc/${child.pid}/ns/net`), `net:[${statSync(pod.netnsPath).ino}]`);
  t.is(await findPodCgroup(uid, cgroupMount), pod.cgroup);
});

test('destroy kills pod processes and their children and leaves nothing behind', async (t) => {
  if (!(await requireRoot(t))) return;
  const { topo, prefix } = await makeTopology(t, { ipv6: true });
  const node = await topo.addNode('a');
  const [p1, p2] = await Promise.all([topo.addPod(node, 'p1'), topo.addPod(node, 'p2')]);
  // A shell that ignores SIGTERM, with a grandchild that only the cgroup knows about.
  const script = 'trap "" TERM; sleep 600 & echo $!; wait';
  const child = topo.spawn(p1, 'sh', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [sleepPid] = (await once(child.stdout!.setEncoding('utf8'), 'data')) as [string];
  t.true(isAlive(Number(sleepPid)));
  // Partial state: someone already removed one namespace.
  await run('ip', ['netns', 'del', p2.netns]);

  await topo.destroy();
  t.is(child.signalCode, 'SIGKILL', 'the shell ignoring SIGTERM was killed after the grace period');
  t.false(isAlive(Number(sleepPid)), 'the grandchild was killed through the cgroup');
  // The bpffs and its directory belong to the test helper and go in its teardown.
  const leftovers = await assertNothingLeaked(prefix);
  t.deepEqual(
    leftovers.filter((l) => !l.startsWith('bpffs') && !l.startsWith('directory')),
    [],
  );
  await t.notThrowsAsync(topo.destroy(), 'destroy is idempotent');
  t.throws(() => topo.spawn(p1, 'true', []), { message: /destroyed/ });
});

test('removePod frees the namespace, cgroup and address for the next pod', async (t) => {
  if (!(await requireRoot(t))) return;
  const { topo } = await makeTopology(t);
  const node = await topo.addNode('a');
  const first = await topo.addPod(node, 'first');
  topo.spawn(first, 'sleep', ['600'], { stdio: 'ignore' });
  await topo.removePod(first);
  t.false(existsSync(first.netnsPath));
  t.false(existsSync(first.cgroup));
  const second = await topo.addPod(node, 'second');
  t.is(second.ip4, first.ip4);
  t.not(second.hostVeth, first.hostVeth);
  t.deepEqual(topo.pods, [second]);
});

test('2 nodes × 10 pods are created in well under a few seconds', async (t) => {
  if (!(await requireRoot(t))) return;
  const { topo } = await makeTopology(t, { ipv6: true });
  const started = performance.now();
  const nodes = [await topo.addNode('a'), await topo.addNode('b')];
  for (const node of nodes) {
    for (let i = 0; i < 10; i++) await topo.addPod(node, `p${i}`);
  }
  const sequential = performance.now() - started;
  const parallelStart = performance.now();
  await Promise.all(
    nodes.flatMap((node) => Array.from({ length: 10 }, (_, i) => topo.addPod(node, `q${i}`))),
  );
  const parallel = performance.now() - parallelStart;
  t.log(
    `2 nodes + 20 pods one at a time: ${sequential.toFixed(0)} ms; 20 more pods concurrently: ${parallel.toFixed(0)} ms`,
  );
  t.true(sequential < 5000);
  t.is(topo.pods.length, 40);
  const last = topo.pods.at(-1)!;
  const ping = await topo.exec(last, NODE, ['-e', CLIENT, nodes[0]!.gateway4, '9'], { timeoutMs: 10_000 });
  t.regex(ping.stdout, /ECONNREFUSED/, 'the gateway answers (with a refusal) from the newest pod');
});

// NetnsSockets: fresh sockets of a pod's netns made in batches (one native thread and setns per
// batch, not per socket) and finished on the main thread. They must behave exactly like sockets
// made one by one inside the netns.
import net from 'node:net';
import test from 'ava';
import { boundPort, DatapathError, NetnsSockets } from '../../src/datapath/index.ts';
import { startApp } from '../helpers/pods.ts';
import { makeTopology, requireRoot } from '../helpers/topology.ts';

test('batched sockets live in the pod netns, bind and connect there, and are released on close', async (t) => {
  if (!(await requireRoot(t))) return;
  const { topo } = await makeTopology(t, { ipv6: true });
  const node = await topo.addNode('a');
  const [pod, other] = await Promise.all([topo.addPod(node, 'pod'), topo.addPod(node, 'other')]);
  await startApp(topo, pod, [8080]);
  const sockets = new NetnsSockets(pod.netnsPath);
  t.teardown(() => sockets.close());

  // Binding to the pod's own address works only inside the pod's netns.
  const replies: string[] = [];
  for (let i = 0; i < 5; i++) {
    const fd = sockets.socket({ family: 4, host: pod.ip4 });
    t.true(boundPort(fd) > 0);
    const s = new net.Socket({ fd, readable: true, writable: true });
    replies.push(
      await new Promise<string>((resolve, reject) => {
        let got = '';
        s.on('data', (d) => (got += d));
        s.on('end', () => resolve(got));
        s.on('error', reject);
        s.connect({ host: pod.ip4, port: 8080 });
      }),
    );
    s.destroy();
  }
  for (const r of replies) t.like(JSON.parse(r), { listener: 'app', name: 'pod', local: `${pod.ip4}:8080` });
  t.true(sockets.spares[4] > 0, 'a batch left spares behind');
  t.is(sockets.spares[6], 0, 'no IPv6 socket was asked for');
  const v6 = sockets.socket({ family: 6, host: pod.ip6! });
  t.true(boundPort(v6) > 0);
  new net.Socket({ fd: v6 }).destroy();

  // Another pod's address is not in this netns: a clear error naming the netns.
  const err = t.throws(() => sockets.socket({ family: 4, host: other.ip4, port: 1 }), { instanceOf: DatapathError });
  t.regex(err?.message ?? '', new RegExp(`${other.ip4}:1 in ${pod.netnsPath}.*(not available|Cannot assign)`, 'i'));

  sockets.close();
  t.deepEqual(sockets.spares, { 4: 0, 6: 0 });
  t.throws(() => sockets.socket({ family: 4 }), { message: /closed/ });
});

// The kernel mechanism under ztunnel's handover (ARCHITECTURE.md "ztunnel handover"): an old and
// a new listener share a pod's port with SO_REUSEPORT; connections the kernel queued on the old
// one when it closes are reset — unless the pod's netns has net.ipv4.tcp_migrate_req=1, which
// moves them to the new listener. Measured both ways, in a real pod netns.
import net from 'node:net';
import test from 'ava';
import { closeFd, setNetnsSysctl, socketInNetns } from '../../src/datapath/index.ts';
import { makeTopology, requireRoot } from '../helpers/topology.ts';

const CLIENTS = 40;
const PORT = 15101;

async function handover(netnsPath: string, migrate: boolean): Promise<{ ok: number; reset: number; other: string[] }> {
  setNetnsSysctl(netnsPath, 'net/ipv4/tcp_migrate_req', migrate ? '1' : '0');
  // The old listener accepts nothing (a busy event loop, or the moment before its close): the
  // kernel completes handshakes into its queue all the same.
  const old = socketInNetns(netnsPath, { host: '127.0.0.1', port: PORT, listen: true, reuseport: true });
  const fresh = net.createServer((c) => {
    c.on('error', () => {});
    c.end('ok');
  });
  await new Promise<void>((r) => fresh.listen({ fd: socketInNetns(netnsPath, { host: '127.0.0.1', port: PORT, listen: true, reuseport: true }) }, r));
  const outcomes = Array.from({ length: CLIENTS }, () => {
    const s = new net.Socket({ fd: socketInNetns(netnsPath, { family: 4 }), readable: true, writable: true });
    return {
      s,
      result: new Promise<string>((resolve) => {
        let got = '';
        s.setTimeout(5000, () => s.destroy(new Error('timeout')));
        s.on('data', (d) => (got += String(d)));
        s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        s.on('close', () => resolve(got === 'ok' ? 'ok' : `closed with '${got}'`));
        s.connect(PORT, '127.0.0.1');
      }),
    };
  });
  // Every handshake done (loopback), about half of them queued on the old listener by hash.
  await new Promise((r) => setTimeout(r, 300));
  closeFd(old);
  const results = await Promise.all(outcomes.map((o) => o.result));
  await new Promise((r) => fresh.close(r));
  return { ok: results.filter((r) => r === 'ok').length, reset: results.filter((r) => r === 'ECONNRESET').length, other: results.filter((r) => r !== 'ok' && r !== 'ECONNRESET') };
}

test('a closing reuseport listener resets its queue without tcp_migrate_req and hands it over with it', async (t) => {
  if (!(await requireRoot(t))) return;
  const { topo } = await makeTopology(t);
  const node = await topo.addNode('a');
  const pod = await topo.addPod(node, 'p');
  const without = await handover(pod.netnsPath, false);
  const withIt = await handover(pod.netnsPath, true);
  t.log(`${CLIENTS} connections queued across an old and a new listener, old one closed: tcp_migrate_req=0 → ${without.ok} ok, ${without.reset} reset; tcp_migrate_req=1 → ${withIt.ok} ok, ${withIt.reset} reset`);
  t.true(without.reset > 0, 'without migration the old listener\'s queue is reset');
  t.deepEqual(without.other, []);
  t.is(withIt.ok, CLIENTS, `with migration every connection is served by the new listener: ${JSON.stringify(withIt)}`);
});

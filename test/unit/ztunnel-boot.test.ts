// ZtunnelBoot (src/ztunnel/boot.ts): what a (re)started ztunnel sets going before its proxy
// loads. The node certificate and the certificates of the pods the agent names are fetched at
// once; the agent's messages wait, in order, until ztunnel adopts them, and are acknowledged only
// once ztunnel has handled them; a pod removed meanwhile leaves no certificate being renewed.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { startCa } from '../../src/controller/ca/index.ts';
import { formatSpiffeId, parseSpiffeId } from '../../src/identity/index.ts';
import { ZtunnelBoot } from '../../src/ztunnel/boot.ts';
import type { ZdsPod } from '../../src/zds/protocol.ts';
import { FakeKube, nodeToken } from '../helpers/ca.ts';

const pod = (uid: string, sa: string): ZdsPod => ({ uid, netnsPath: `/proc/1/ns/net`, netnsCookie: '1', addresses: [], workload: { name: uid, namespace: 'shop', serviceAccount: sa } });

test('ztunnel-boot-fetches-ahead-queues-the-agents-messages-in-order-and-acks-after-ztunnel', async (t) => {
  const kube = new FakeKube();
  kube.addNamespace('mesh-system', 'shop');
  kube.addPod({ namespace: 'shop', name: 'cart-1', serviceAccountName: 'cart', nodeName: 'node-a' });
  kube.addPod({ namespace: 'shop', name: 'pay-1', serviceAccountName: 'pay', nodeName: 'node-a' });
  const ca = await startCa(kube, { trustDomain: 'cluster.local', host: '127.0.0.1', port: 0 });
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-boot-'));
  const acks: string[] = [];
  const agent = net.createServer((s) => {
    s.on('data', (d) => acks.push(...String(d).trim().split('\n').map((l) => (JSON.parse(l) as { uid: string }).uid)));
    s.write(`${JSON.stringify({ type: 'snapshot', pods: [pod('cart-1', 'cart')] })}\n`);
    s.write(`${JSON.stringify({ type: 'add', pod: pod('pay-1', 'pay') })}\n`);
    s.write(`${JSON.stringify({ type: 'del', uid: 'pay-1', netnsCookie: '1' })}\n`);
  });
  await new Promise<void>((r) => agent.listen(join(dir, 'zds.sock'), r));
  const boot = ZtunnelBoot.start({
    nodeName: 'node-a', xdsAddress: '127.0.0.1:1', caAddress: `127.0.0.1:${ca.port}`, serverName: '', trustDomain: 'cluster.local',
    caRoots: ca.authority.trustBundle.join('\n'), token: () => nodeToken(kube, 'tok', 'node-a'), bpffsDir: dir, zdsSocket: join(dir, 'zds.sock'),
    mark: 0, namespace: 'mesh-system', serviceAccount: 'mesh-node',
  });
  t.teardown(async () => {
    boot.zds.close();
    boot.secrets.close();
    boot.ca.close();
    agent.close();
    await ca.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const own = await boot.own;
  t.is(formatSpiffeId(own.identity), 'spiffe://cluster.local/ns/mesh-system/sa/mesh-node');
  const cart = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/cart');
  const pay = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/pay');
  for (let i = 0; i < 200 && !(boot.secrets.cached(cart) && boot.secrets.cached(pay)); i++) await new Promise((r) => setTimeout(r, 25));
  t.truthy(boot.secrets.cached(cart), "the pod's certificate was fetched before ztunnel took over");
  t.deepEqual(acks, [], 'nothing acknowledged before ztunnel has handled it');

  const seen: string[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  boot.adopt({
    snapshot: (pods) => void seen.push(`snapshot ${pods.map((p) => p.uid).join(',')}`),
    add: (p) => (seen.push(`add ${p.uid}`), p.uid === 'cart-1' ? held : Promise.resolve()),
    del: (uid) => (seen.push(`del ${uid}`), Promise.resolve()),
  });
  t.deepEqual(seen, ['snapshot cart-1', 'add cart-1', 'add pay-1', 'del pay-1'], 'in the order the agent sent them');
  t.truthy(boot.secrets.cached(cart));
  t.falsy(boot.secrets.cached(pay), 'the removed pod\'s identity is not kept and renewed');
  await new Promise((r) => setTimeout(r, 100));
  t.false(acks.includes('cart-1'), 'cart-1 is acknowledged only once ztunnel has served it');
  release();
  for (let i = 0; i < 100 && !acks.includes('cart-1'); i++) await new Promise((r) => setTimeout(r, 20));
  t.true(acks.includes('cart-1'));
});

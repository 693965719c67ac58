// MESH_MARK reaches every socket ztunnel makes in a pod: the in-pod listeners, the sockets it dials
// out from the pod (HBONE outer connections, passthrough) and its deliveries from 127.0.0.6 — the
// datapath leaves alone only sockets with the mark it was loaded with, so a ztunnel marking with
// anything else would have its own connections captured again. Deliveries from the client's own
// address carry the delivery mark instead. The sockets are made in this test's own netns (the
// addon enters it as it enters a pod's), on port 0.
import test from 'ava';
import { DELIVERY_MARK } from '../../src/common/constants.ts';
import { native, type ZtunnelMaps } from '../../src/datapath/index.ts';
import { loadZtunnelSettings } from '../../src/ztunnel/config.ts';
import type { HboneServer } from '../../src/hbone/index.ts';
import { PodProxy } from '../../src/ztunnel/pod.ts';

function markOf(fd: number): number {
  const n = native();
  return n.getsockoptInt(fd, n.constants.SOL_SOCKET, n.constants.SO_MARK);
}

test('MESH_MARK=0x1234 makes the sockets ztunnel opens in a pod carry 0x1234', async (t) => {
  if (process.getuid?.() !== 0) {
    t.log('SO_MARK needs CAP_NET_ADMIN: run as root to exercise the sockets');
    t.is(loadZtunnelSettings({ MESH_NODE_NAME: 'node1', MESH_MARK: '0x1234' }).mark, 0x1234);
    return;
  }
  const cfg = loadZtunnelSettings({ MESH_NODE_NAME: 'node1', MESH_MARK: '0x1234' });
  const registered: Record<string, number> = {};
  const maps = {
    canDeliverFromClient: true,
    registerSocket: (_cookie: bigint, kind: string, fd: number) => void (registered[kind] = fd),
    unregisterSocket: () => {},
    expectDelivery: () => () => {},
  } as unknown as ZtunnelMaps;
  const pod = new PodProxy({ uid: 'uid-web', netnsPath: '/proc/self/ns/net', netnsCookie: 1n, addresses: ['127.0.0.1'], maps, mark: cfg.mark, transparent: true, ports: { outbound: 0, inbound: 0, hbone: 0 } });
  const hboneFds: number[] = [];
  const hbone = { listen: async (o: { fd: number }) => void hboneFds.push(o.fd), close: async () => {} } as unknown as HboneServer;
  await pod.open({ outbound: (_p, c) => c.destroy(), plaintextInbound: (_p, c) => c.destroy() }, hbone);
  const made: number[] = [];
  const dial = (fd: number) => (made.push(fd), fd);
  t.teardown(async () => {
    for (const fd of made) native().closeFd(fd);
    await pod.close();
  });

  t.is(markOf(registered.inbound!), 0x1234, 'the plaintext inbound listener (15006)');
  t.is(markOf(registered.hbone!), 0x1234, 'the HBONE listener (15008)');
  t.is(hboneFds[0], registered.hbone, 'the HBONE server listens on that socket');
  t.is(markOf(dial(pod.dialSocket(4))), 0x1234, 'a socket dialled from the pod: HBONE outer connection, passthrough');
  t.is(markOf(dial(pod.dialSocket(6))), 0x1234, 'and over IPv6');
  t.is(markOf(dial(pod.dialSocket(4, '127.0.0.6'))), 0x1234, 'a delivery from 127.0.0.6');
  const delivery = pod.deliverySocket('127.0.0.1', { ip: '127.0.0.1', port: 8080 });
  dial(delivery.fd);
  t.is(markOf(delivery.fd), DELIVERY_MARK, "a delivery from the client's address carries the delivery mark, which the pod routes to lo");
  delivery.forget();
});

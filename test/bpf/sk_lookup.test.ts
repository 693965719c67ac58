// The sk_lookup program, run by the kernel through BPF_PROG_TEST_RUN: a table of lookups and the
// verdict and socket each must get (Katran-style fixture table).
import test from 'ava';
import { Enrolment } from '../../src/agent/index.ts';
import { Datapath, type DatapathEvent, layout, meshAddress, native, rawAddress, socketInNetns } from '../../src/datapath/index.ts';
import { makeTopology, requireRoot } from '../helpers/topology.ts';

const SK_DROP = 0;
const SK_PASS = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const TCP = 6;
const UDP = 17;

/** struct bpf_sk_lookup as the kernel's BTF lays it out (72 bytes). */
function ctx(l: {
  family: number;
  protocol?: number;
  src: string;
  sport: number;
  dst: string;
  dport: number;
}): Buffer {
  const b = Buffer.alloc(72);
  b.writeUInt32LE(l.family, 8);
  b.writeUInt32LE(l.protocol ?? TCP, 12);
  if (l.family === AF_INET) {
    rawAddress(l.src).copy(b, 16);
    rawAddress(l.dst).copy(b, 40);
  } else {
    rawAddress(l.src).copy(b, 20);
    rawAddress(l.dst).copy(b, 44);
  }
  b.writeUInt16BE(l.sport, 36); // remote_port is network byte order
  b.writeUInt32LE(l.dport, 60); // local_port is host byte order
  return b;
}

test('sk_lookup verdicts: steer, pass and refuse', async (t) => {
  if (!(await requireRoot(t))) return;
  const { topo, bpffs, cgroupParent } = await makeTopology(t, { ipv6: true });
  const node = await topo.addNode('a');
  const [pod, bare] = await Promise.all([topo.addPod(node, 'pod'), topo.addPod(node, 'bare')]);
  const dp = await Datapath.open({ bpffsDir: bpffs, cgroupPath: cgroupParent });
  t.teardown(() => {
    dp.close();
    Datapath.uninstall(bpffs);
  });
  const en = new Enrolment(dp);
  const p = en.enrol({
    uid: pod.uid,
    netnsPath: pod.netnsPath,
    addresses: [pod.ip4, pod.ip6!],
    excludeInboundPorts: [9901],
  });
  const b = en.enrol({ uid: bare.uid, netnsPath: bare.netnsPath, addresses: [bare.ip4] }); // no ztunnel sockets
  const n = native();
  const inbound = socketInNetns(pod.netnsPath, { host: '::', port: 15006, listen: true });
  const hbone = socketInNetns(pod.netnsPath, { host: '::', port: 15008, listen: true });
  t.teardown(() => {
    n.closeFd(inbound);
    n.closeFd(hbone);
  });
  dp.maps.mesh_socks.set(
    layout.encodeSockKey(p.netnsCookie, layout.SOCK_INBOUND),
    layout.u64Key(BigInt(inbound)),
  );
  dp.maps.mesh_socks.set(
    layout.encodeSockKey(p.netnsCookie, layout.SOCK_HBONE),
    layout.u64Key(BigInt(hbone)),
  );
  const inboundCookie = n.socketCookie(inbound);
  const hboneCookie = n.socketCookie(hbone);

  const peer = '10.250.0.9';
  // ztunnel delivering from the client's address names the exact tuple beforehand.
  dp.maps.mesh_deliveries.set(layout.encodeDeliveryKey(meshAddress(peer), 40010, meshAddress(pod.ip4), 8080), Buffer.of(1));
  dp.maps.mesh_deliveries.set(layout.encodeDeliveryKey(meshAddress('fd00:250::9'), 40012, meshAddress(pod.ip6!), 8080), Buffer.of(1));
  const linkLocal = 'fe80::8c2e:55ff:fe01:203';
  // An address left in mesh_pod_addrs by an unenrolment that has removed the pod entry only.
  dp.maps.mesh_pod_addrs.set(meshAddress('10.98.0.1'), layout.u64Key(4242n));
  const events: DatapathEvent[] = [];
  const reader = dp.readEvents((e) => events.push(...e), 10);
  t.teardown(() => reader.close());
  // `event`: what the ring must report for the row (matched by source port); null: nothing.
  const table: {
    name: string;
    in: Parameters<typeof ctx>[0];
    verdict: number;
    socket: bigint;
    event?: Partial<DatapathEvent> | null;
  }[] = [
    {
      name: 'app port from another pod → inbound socket',
      in: { family: AF_INET, src: peer, sport: 40000, dst: pod.ip4, dport: 8080 },
      verdict: SK_PASS,
      socket: inboundCookie,
    },
    {
      name: '15008 → HBONE socket',
      in: { family: AF_INET, src: peer, sport: 40001, dst: pod.ip4, dport: 15008 },
      verdict: SK_PASS,
      socket: hboneCookie,
    },
    {
      name: '15006 itself → inbound socket',
      in: { family: AF_INET, src: peer, sport: 40002, dst: pod.ip4, dport: 15006 },
      verdict: SK_PASS,
      socket: inboundCookie,
    },
    {
      name: 'IPv6 → inbound socket (dual-stack)',
      in: { family: AF_INET6, src: 'fd00:250::9', sport: 40003, dst: pod.ip6!, dport: 80 },
      verdict: SK_PASS,
      socket: inboundCookie,
    },
    {
      name: 'from the pod itself → regular lookup',
      in: { family: AF_INET, src: pod.ip4, sport: 40004, dst: pod.ip4, dport: 8080 },
      verdict: SK_PASS,
      socket: 0n,
    },
    {
      name: 'from 127.0.0.6 (ztunnel delivering) → regular lookup',
      in: { family: AF_INET, src: '127.0.0.6', sport: 40005, dst: pod.ip4, dport: 8080 },
      verdict: SK_PASS,
      socket: 0n,
    },
    {
      name: 'a delivery ztunnel named, from the client\'s address → regular lookup',
      in: { family: AF_INET, src: peer, sport: 40010, dst: pod.ip4, dport: 8080 },
      verdict: SK_PASS,
      socket: 0n,
    },
    {
      name: 'the same client from another port (not named) → inbound socket',
      in: { family: AF_INET, src: peer, sport: 40011, dst: pod.ip4, dport: 8080 },
      verdict: SK_PASS,
      socket: inboundCookie,
    },
    {
      name: 'a named delivery, IPv6 → regular lookup',
      in: { family: AF_INET6, src: 'fd00:250::9', sport: 40012, dst: pod.ip6!, dport: 8080 },
      verdict: SK_PASS,
      socket: 0n,
    },
    {
      name: 'excluded inbound port → regular lookup',
      in: { family: AF_INET, src: peer, sport: 40006, dst: pod.ip4, dport: 9901 },
      verdict: SK_PASS,
      socket: 0n,
    },
    {
      name: 'UDP → regular lookup',
      in: { family: AF_INET, protocol: UDP, src: peer, sport: 40007, dst: pod.ip4, dport: 53 },
      verdict: SK_PASS,
      socket: 0n,
    },
    {
      name: 'enrolled pod without ztunnel sockets → refused',
      in: { family: AF_INET, src: peer, sport: 40009, dst: bare.ip4, dport: 8080 },
      verdict: SK_DROP,
      socket: 0n,
      event: { kind: 'REFUSED', reason: 'no-ztunnel-socket', netnsCookie: b.netnsCookie, podId: b.podId },
    },
    // The program runs only in enrolled pods' netns: an address the mesh cannot place in a pod
    // is still one of an enrolled pod, and must not reach its app around ztunnel.
    {
      name: 'IPv6 link-local address from outside → refused',
      in: { family: AF_INET6, src: 'fe80::1', sport: 40020, dst: linkLocal, dport: 8080 },
      verdict: SK_DROP,
      socket: 0n,
      event: { kind: 'REFUSED', reason: 'unknown-address', netnsCookie: 0n, podId: 0, src: 'fe80::1', dst: linkLocal, dport: 8080, newPort: 0 },
    },
    {
      name: 'IPv4 address not in the map (added after enrolment) from outside → refused',
      in: { family: AF_INET, src: peer, sport: 40008, dst: '10.99.0.1', dport: 8080 },
      verdict: SK_DROP,
      socket: 0n,
      event: { kind: 'REFUSED', reason: 'unknown-address', netnsCookie: 0n, src: peer, dst: '10.99.0.1' },
    },
    {
      name: 'unknown address on the HBONE port from outside → refused',
      in: { family: AF_INET6, src: 'fd00:250::9', sport: 40021, dst: linkLocal, dport: 15008 },
      verdict: SK_DROP,
      socket: 0n,
      event: { kind: 'REFUSED', reason: 'unknown-address' },
    },
    {
      name: 'a known address whose pod entry is gone (mid-unenrolment) → refused',
      in: { family: AF_INET, src: peer, sport: 40022, dst: '10.98.0.1', dport: 8080 },
      verdict: SK_DROP,
      socket: 0n,
      event: { kind: 'REFUSED', reason: 'unknown-address', netnsCookie: 4242n },
    },
    {
      name: 'link-local address from itself (the pod calling itself) → regular lookup',
      in: { family: AF_INET6, src: linkLocal, sport: 40023, dst: linkLocal, dport: 8080 },
      verdict: SK_PASS,
      socket: 0n,
      event: null,
    },
    {
      name: 'unknown IPv4 address from itself → regular lookup',
      in: { family: AF_INET, src: '10.99.0.1', sport: 40024, dst: '10.99.0.1', dport: 8080 },
      verdict: SK_PASS,
      socket: 0n,
      event: null,
    },
    {
      name: "loopback (the app calling ztunnel's outbound listener) → regular lookup",
      in: { family: AF_INET, src: '127.0.0.1', sport: 40025, dst: '127.0.0.1', dport: 15001 },
      verdict: SK_PASS,
      socket: 0n,
      event: null,
    },
    {
      name: 'IPv6 loopback → regular lookup',
      in: { family: AF_INET6, src: '::1', sport: 40026, dst: '::1', dport: 15001 },
      verdict: SK_PASS,
      socket: 0n,
      event: null,
    },
    {
      name: 'unknown address from a loopback source → regular lookup',
      in: { family: AF_INET6, src: '::1', sport: 40027, dst: linkLocal, dport: 8080 },
      verdict: SK_PASS,
      socket: 0n,
      event: null,
    },
    {
      name: 'UDP to an unknown address → regular lookup',
      in: { family: AF_INET6, protocol: UDP, src: 'fe80::1', sport: 40028, dst: linkLocal, dport: 53 },
      verdict: SK_PASS,
      socket: 0n,
      event: null,
    },
  ];
  const prog = dp.programFd('mesh_sk_lookup');
  for (const row of table) {
    const { retval, ctxOut } = n.progTestRun(prog, ctx(row.in), 72);
    t.is(retval, row.verdict, row.name);
    t.is(ctxOut.readBigUInt64LE(0), row.socket, `${row.name}: selected socket`);
  }
  const want = table.filter((r) => r.event);
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && !want.every((r) => events.some((e) => e.sport === r.in.sport)))
    await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50)); // and a moment for any event that should not come
  for (const row of table) {
    if (row.event === undefined) continue;
    const got = events.filter((e) => e.sport === row.in.sport);
    if (row.event === null) t.deepEqual(got, [], `${row.name}: no event`);
    else t.like(got[0], row.event, `${row.name}: event`);
  }
});

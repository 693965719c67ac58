// The capture datapath end to end, on the real kernel, in network namespaces this test makes:
// outbound connect() rewriting, inbound sk_lookup steering, exclusions, fail-closed behaviour and
// decision events.
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { Enrolment } from '../../src/agent/index.ts';
import {
  boundPort,
  Datapath,
  type DatapathEvent,
  DELIVERY_MARK,
  DELIVERY_TABLE,
  layout,
  netnsCookie,
  setDeliveryRouting,
  socketInNetns,
  ZtunnelMaps,
} from '../../src/datapath/index.ts';
import { ipBatch, type PodNet, run } from '../../src/local/index.ts';
import { connectFrom, connectFromNode, hp, startApp } from '../helpers/pods.ts';
import { waitFor } from '../../src/local/mesh.ts';
import { type StandinReply, startStandin } from '../helpers/standin.ts';
import { makeTopology, requireRoot, type TestTopology } from '../helpers/topology.ts';

interface Scenario extends TestTopology {
  dp: Datapath;
  en: Enrolment;
  client: PodNet;
  server: PodNet;
  other: PodNet;
}

/** Two nodes; `client` and `other` on node a, `server` (app on 8080 and 9090) on node b. */
async function scenario(t: ExecutionContext): Promise<Scenario> {
  const env = await makeTopology(t, { ipv6: true });
  const { topo, bpffs, cgroupParent } = env;
  const [a, b] = [await topo.addNode('a'), await topo.addNode('b')];
  const [client, other, server] = await Promise.all([
    topo.addPod(a, 'client'),
    topo.addPod(a, 'other'),
    topo.addPod(b, 'server'),
  ]);
  const dp = await Datapath.open({ bpffsDir: bpffs, cgroupPath: cgroupParent });
  t.teardown(() => {
    dp.close();
    Datapath.uninstall(bpffs);
  });
  await startApp(topo, server, [8080, 9090]);
  await startApp(topo, client, [7070]);
  return { ...env, dp, en: new Enrolment(dp), client, server, other };
}

function addrs(p: PodNet): string[] {
  return p.ip6 ? [p.ip4, p.ip6] : [p.ip4];
}

test('enrolled pod: connect() lands on its own outbound listener, which recovers the original destination (IPv4 and IPv6)', async (t) => {
  if (!(await requireRoot(t))) return;
  const s = await scenario(t);
  const pod = s.en.enrol({
    uid: s.client.uid,
    netnsPath: s.client.netnsPath,
    cgroupPath: s.client.cgroup,
    addresses: addrs(s.client),
  });
  const z = await startStandin(s.bpffs, s.client, pod.netnsCookie);
  t.teardown(() => z.close());

  const [v4, v6] = await connectFrom(s.topo, s.client, [hp(s.server.ip4, 8080), hp(s.server.ip6!, 9090)]);
  t.is(v4?.reply?.listener, 'outbound');
  t.deepEqual(v4?.reply && 'orig' in v4.reply ? v4.reply.orig : undefined, {
    address: s.server.ip4,
    port: 8080,
    family: 4,
    podId: pod.podId,
    sockCookie: v4?.cookie,
  });
  t.is(v6?.reply?.listener, 'outbound');
  t.deepEqual(v6?.reply && 'orig' in v6.reply ? v6.reply.orig : undefined, {
    address: s.server.ip6,
    port: 9090,
    family: 6,
    podId: pod.podId,
    sockCookie: v6?.cookie,
  });
  t.is(s.dp.maps.mesh_orig_dst.keys().length, 0, 'ztunnel consumed the original-destination entries');

  // The pod next to it is not enrolled: it reaches the server directly.
  const [direct] = await connectFrom(s.topo, s.other, [hp(s.server.ip4, 8080)]);
  t.like(direct?.reply, {
    listener: 'app',
    name: 'server',
    remote: `${s.other.ip4}:${direct?.reply?.remote.split(':').at(-1)}`,
  });
});

test('loopback, own address, mesh ports, excluded ports and CIDRs, and marked sockets are not captured', async (t) => {
  if (!(await requireRoot(t))) return;
  const s = await scenario(t);
  const pod = s.en.enrol({
    uid: s.client.uid,
    netnsPath: s.client.netnsPath,
    addresses: addrs(s.client),
    excludeOutboundPorts: [9090],
    excludeOutboundCidrs: [`${s.server.ip6}/128`],
  });
  const z = await startStandin(s.bpffs, s.client, pod.netnsCookie);
  t.teardown(() => z.close());

  const results = await connectFrom(s.topo, s.client, [
    hp('127.0.0.1', 7070), // loopback
    hp(s.client.ip4, 7070), // the pod's own address
    hp(s.server.ip4, 9090), // excluded port
    hp(s.server.ip6!, 8080), // excluded CIDR
    hp(s.server.ip4, 8080, 0x539), // ztunnel's mark
    hp(s.server.ip4, 8080), // control: captured
  ]);
  const who = results.map((r) => r.reply?.listener ?? r.error);
  t.deepEqual(who, ['app', 'app', 'app', 'app', 'app', 'outbound']);
  t.deepEqual(
    results.slice(2, 5).map((r) => (r.reply as { name?: string } | undefined)?.name),
    ['server', 'server', 'server'],
  );
});

test("inbound: every port of an enrolled pod lands on ztunnel's 15006 socket, 15008 on its HBONE socket; connections from inside the pod are not steered", async (t) => {
  if (!(await requireRoot(t))) return;
  const s = await scenario(t);
  const pod = s.en.enrol({
    uid: s.server.uid,
    netnsPath: s.server.netnsPath,
    addresses: addrs(s.server),
    excludeInboundPorts: [9090],
  });
  const z = await startStandin(s.bpffs, s.server, pod.netnsCookie, { outbound: false });
  t.teardown(() => z.close());
  z.register();

  const [p8080, p15008, v6, excluded] = await connectFrom(s.topo, s.other, [
    hp(s.server.ip4, 8080),
    hp(s.server.ip4, 15008),
    hp(s.server.ip6!, 8080),
    hp(s.server.ip4, 9090),
  ]);
  t.like(
    p8080?.reply,
    { listener: 'inbound', local: `${s.server.ip4}:8080` },
    'accept() reports the original destination',
  );
  t.like(p15008?.reply, { listener: 'hbone', local: `${s.server.ip4}:15008` });
  t.like(v6?.reply, { listener: 'inbound', local: `${s.server.ip6}:8080` });
  t.like(excluded?.reply, { listener: 'app', name: 'server' }, 'an excluded inbound port reaches the app');

  // Inside the pod: the app calling its own pod IP, and a delivery from 127.0.0.6 as ztunnel makes.
  const [self, fromZtunnel] = await connectFrom(s.topo, s.server, [
    hp(s.server.ip4, 8080),
    `${hp(s.server.ip4, 8080)}~127.0.0.6`,
  ]);
  t.like(self?.reply, { listener: 'app', name: 'server' });
  t.like(fromZtunnel?.reply, {
    listener: 'app',
    name: 'server',
    remote: `127.0.0.6:${fromZtunnel?.reply?.remote.split(':')[1]}`,
  });
});

/** Connects from inside `pod` as ztunnel delivers: from `client`'s address, marked, tuple named or not. */
async function deliverFrom(maps: ZtunnelMaps, pod: PodNet, client: string, dst: { ip: string; port: number }, name: boolean): Promise<{ port: number; reply?: string; error?: string }> {
  const fd = socketInNetns(pod.netnsPath, { family: net.isIPv6(client) ? 6 : 4, host: client, transparent: true, mark: DELIVERY_MARK });
  const port = boundPort(fd);
  const forget = name ? maps.expectDelivery({ ip: client, port }, dst) : () => {};
  const sock = new net.Socket({ fd, readable: true, writable: true });
  try {
    return await new Promise((resolve) => {
      let got = '';
      sock.setTimeout(1500, () => resolve({ port, error: 'no reply' }));
      sock.on('data', (d) => (got += d));
      sock.on('end', () => resolve({ port, reply: got.trim() }));
      sock.on('error', (e) => resolve({ port, error: e.message }));
      sock.connect({ host: dst.ip, port: dst.port }, forget);
    });
  } finally {
    forget();
    sock.destroy();
  }
}

test("delivery from the client's address: the app sees its caller, replies come back to ztunnel, and only named tuples pass sk_lookup", async (t) => {
  if (!(await requireRoot(t))) return;
  const s = await scenario(t);
  const pod = s.en.enrol({ uid: s.server.uid, netnsPath: s.server.netnsPath, addresses: addrs(s.server) });
  t.true(pod.transparent, 'the agent set up delivery routing');
  const ip = (...args: string[]) => execFileSync('nsenter', [`--net=${s.server.netnsPath}`, 'ip', ...args], { encoding: 'utf8' });
  t.regex(ip('rule'), new RegExp(`fwmark 0x${DELIVERY_MARK.toString(16)} lookup ${DELIVERY_TABLE}`));
  t.regex(ip('route', 'show', 'table', String(DELIVERY_TABLE)), /^local default dev lo/m);
  const sysctl = (k: string) => execFileSync('nsenter', [`--net=${s.server.netnsPath}`, 'cat', `/proc/sys/net/${k}`], { encoding: 'utf8' }).trim();
  t.deepEqual(['ipv4/tcp_fwmark_accept', 'ipv4/fwmark_reflect', 'ipv6/fwmark_reflect'].map(sysctl), ['1', '1', '1']);
  const z = await startStandin(s.bpffs, s.server, pod.netnsCookie, { outbound: false });
  z.register();
  const maps = new ZtunnelMaps(s.bpffs);
  const events: DatapathEvent[] = [];
  const reader = s.dp.readEvents((e) => events.push(...e), 20);
  t.teardown(async () => {
    reader.close();
    maps.close();
    await z.close();
  });
  for (const [client, dst] of [
    [s.client.ip4, s.server.ip4],
    [s.client.ip6!, s.server.ip6!],
  ] as const) {
    const named = await deliverFrom(maps, s.server, client, { ip: dst, port: 8080 }, true);
    t.truthy(named.reply, `${client}: ${named.error}`);
    t.like(JSON.parse(named.reply ?? '{}'), { listener: 'app', name: 'server', local: `${dst}:8080`, remote: `${client}:${named.port}` }, `${client}: the app sees the client, not ztunnel`);
    // Without its name the same connection is one more inbound connection: steered back to ztunnel.
    const unnamed = await deliverFrom(maps, s.server, client, { ip: dst, port: 8080 }, false);
    await waitFor('sk_lookup events', () => (events.some((e) => e.sport === unnamed.port) ? true : undefined), 3000);
    t.like(events.find((e) => e.sport === named.port), { kind: 'PASSED', reason: 'ztunnel-delivery' });
    t.like(events.find((e) => e.sport === unnamed.port), { kind: 'STEERED', newPort: 15006 }, `${client}: an unnamed tuple is steered to ztunnel`);
  }
  // Nothing listens on 9999: the kernel's RST carries the SYN's mark back to ztunnel at once
  // (fwmark_reflect) instead of leaving for the real client while ztunnel retries its SYN.
  const t0 = Date.now();
  const closed = await deliverFrom(maps, s.server, s.client.ip4, { ip: s.server.ip4, port: 9999 }, true);
  t.regex(closed.error ?? '', /ECONNREFUSED/, `a closed port is refused (${closed.error})`);
  t.true(Date.now() - t0 < 1000, `and refused at once (${Date.now() - t0} ms)`);
  t.is(s.dp.maps.mesh_deliveries.keys().length, 0, 'named tuples are forgotten once their sockets close');

  // Unenrolment leaves the routing: connections delivered before keep their replies.
  s.en.unenrol(s.server.uid);
  t.regex(ip('rule'), /lookup 1338/, 'unenrolment leaves the rule');
  setDeliveryRouting(s.server.netnsPath, { enable: false, families: [4, 6] });
  setDeliveryRouting(s.server.netnsPath, { enable: false, families: [4, 6] });
  t.notRegex(ip('rule'), /lookup 1338/, 'removal takes the rule (twice is fine)');
  t.is(ip('route', 'show', 'table', String(DELIVERY_TABLE)).trim(), '', 'and the route');
});

test('unenrolment restores direct traffic in both directions', async (t) => {
  if (!(await requireRoot(t))) return;
  const s = await scenario(t);
  const c = s.en.enrol({ uid: s.client.uid, netnsPath: s.client.netnsPath, addresses: addrs(s.client) });
  s.en.enrol({ uid: s.server.uid, netnsPath: s.server.netnsPath, addresses: addrs(s.server) });
  const z = await startStandin(s.bpffs, s.client, c.netnsCookie, { inbound: false });
  t.teardown(() => z.close());
  const [captured] = await connectFrom(s.topo, s.client, [hp(s.server.ip4, 8080)]);
  t.is(captured?.reply?.listener, 'outbound');

  t.true(s.en.unenrol(s.client.uid));
  t.true(s.en.unenrol(s.server.uid));
  t.false(s.en.unenrol(s.server.uid), 'a second unenrol is a no-op');
  const [direct] = await connectFrom(s.topo, s.client, [hp(s.server.ip4, 8080)]);
  t.like(direct?.reply, { listener: 'app', name: 'server' });
});

test('fail closed: with no ztunnel listener an enrolled pod gets ECONNREFUSED, never plaintext to the peer', async (t) => {
  if (!(await requireRoot(t))) return;
  const s = await scenario(t);
  s.en.enrol({ uid: s.client.uid, netnsPath: s.client.netnsPath, addresses: addrs(s.client) });
  s.en.enrol({ uid: s.server.uid, netnsPath: s.server.netnsPath, addresses: addrs(s.server) });
  // Outbound: nothing listens on 15001 in the client pod.
  const [out] = await connectFrom(s.topo, s.client, [hp(s.server.ip4, 8080)]);
  t.is(out?.error, 'ECONNREFUSED');
  // Inbound: the server's app listens on 8080, but ztunnel has no socket registered for the pod.
  const [inb] = await connectFrom(s.topo, s.other, [hp(s.server.ip4, 8080)]);
  t.is(inb?.error, 'ECONNREFUSED');
  // A ztunnel that registered and then went away: its sockets leave the sockhash with it.
  const pod = s.en.get(s.server.uid)!;
  const z = await startStandin(s.bpffs, s.server, pod.netnsCookie, { outbound: false });
  z.register();
  const [up] = await connectFrom(s.topo, s.other, [hp(s.server.ip4, 8080)]);
  t.is(up?.reply?.listener, 'inbound');
  await z.close();
  const [down] = await connectFrom(s.topo, s.other, [hp(s.server.ip4, 8080)]);
  t.is(down?.error, 'ECONNREFUSED');
});

test("addresses of an enrolled pod that the mesh does not know (its IPv6 link-local, one added after enrolment) are refused from outside; the pod still reaches them itself", async (t) => {
  if (!(await requireRoot(t))) return;
  const s = await scenario(t);
  const pod = s.en.enrol({ uid: s.server.uid, netnsPath: s.server.netnsPath, addresses: addrs(s.server) });
  const z = await startStandin(s.bpffs, s.server, pod.netnsCookie, { outbound: false });
  t.teardown(() => z.close());
  z.register();
  const events: DatapathEvent[] = [];
  const reader = s.dp.readEvents((e) => events.push(...e), 20);
  t.teardown(() => reader.close());

  // The kernel gave the pod's eth0 a link-local address when it came up; the mesh never heard of it.
  const shown = await run('ip', ['-n', s.server.netns, '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'link']);
  const linkLocal = /inet6 (fe80::[0-9a-f:]+)\//.exec(shown)?.[1];
  if (!linkLocal) return t.fail(`the pod's eth0 has no link-local address: ${shown}`);
  // Addresses added to the pod after enrolment, routed to it by its node like its pod IPs.
  const [late4, late6] = ['10.101.0.200', 'fd00:101::200'];
  await ipBatch([`addr add ${late4}/32 dev eth0`, `addr add ${late6}/128 dev eth0 nodad`], s.server.netns);
  await ipBatch([`route add ${late4}/32 dev ${s.server.hostVeth}`, `route add ${late6}/128 dev ${s.server.hostVeth}`], s.server.node.netns);

  // From the node (its veth is the link-local's scope) and from a pod on another node.
  const [fromNode] = await connectFromNode(s.server.node, [hp(`${linkLocal}%${s.server.hostVeth}`, 8080)]);
  const [lateV4, lateV6, known] = await connectFrom(s.topo, s.other, [hp(late4, 8080), hp(late6, 9090), hp(s.server.ip4, 8080)]);
  t.is(fromNode?.error, 'ECONNREFUSED', `the link-local address is refused, not passed to the app (${JSON.stringify(fromNode)})`);
  t.is(lateV4?.error, 'ECONNREFUSED', `an IPv4 address added after enrolment is refused (${JSON.stringify(lateV4)})`);
  t.is(lateV6?.error, 'ECONNREFUSED', `an IPv6 address added after enrolment is refused (${JSON.stringify(lateV6)})`);
  t.like(known?.reply, { listener: 'inbound', local: `${s.server.ip4}:8080` }, 'the pod IP is steered to ztunnel as before');

  await waitFor('REFUSED events', () => (events.filter((e) => e.reason === 'unknown-address').length >= 3 ? true : undefined), 3000);
  const refused = (dst: string) => events.find((e) => e.kind === 'REFUSED' && e.dst === dst);
  t.like(refused(linkLocal), { reason: 'unknown-address', family: 6, dport: 8080, netnsCookie: 0n, podId: 0 });
  t.like(refused(late4), { reason: 'unknown-address', family: 4, src: s.other.ip4, dport: 8080 });
  t.like(refused(late6), { reason: 'unknown-address', family: 6, src: s.other.ip6, dport: 9090 });

  // Inside the pod those addresses are its own: a socket of ztunnel's (marked, so connect6/4 leave
  // it alone, as for its passthrough) calling them reaches the app, from the address itself.
  const [selfLinkLocal, selfLate] = await connectFrom(s.topo, s.server, [hp(`${linkLocal}%eth0`, 8080, 0x539), hp(late4, 8080, 0x539)]);
  t.like(selfLinkLocal?.reply, { listener: 'app', name: 'server', remote: `${linkLocal}%eth0:${selfLinkLocal?.reply?.remote.split(':').at(-1)}` }, JSON.stringify(selfLinkLocal));
  t.like(selfLate?.reply, { listener: 'app', name: 'server', remote: `${late4}:${selfLate?.reply?.remote.split(':').at(-1)}` }, JSON.stringify(selfLate));

  // Once the pod leaves the mesh its link-local address is an ordinary one again.
  s.en.unenrol(s.server.uid);
  const [after] = await connectFromNode(s.server.node, [hp(`${linkLocal}%${s.server.hostVeth}`, 8080)]);
  t.like(after?.reply, { listener: 'app', name: 'server' });
});

test("an unenrolment interrupted after the pod entry (agent killed) is finished by the next agent: the pod's link goes, so the pod is not left refusing", async (t) => {
  if (!(await requireRoot(t))) return;
  const s = await scenario(t);
  const pod = s.en.enrol({ uid: s.server.uid, netnsPath: s.server.netnsPath, addresses: addrs(s.server) });
  const kept = s.en.enrol({ uid: s.client.uid, netnsPath: s.client.netnsPath, addresses: addrs(s.client) });
  // The first step of unenrol() and no more: the pod entry is gone, its link is still attached.
  s.dp.maps.mesh_pods.delete(layout.u64Key(pod.netnsCookie));
  const [half] = await connectFrom(s.topo, s.other, [hp(s.server.ip4, 8080)]);
  t.is(half?.error, 'ECONNREFUSED', 'meanwhile sk_lookup refuses: it cannot place the pod');

  const next = new Enrolment(s.dp); // what a restarted agent does first
  t.deepEqual(s.dp.podLinkCookies(), [kept.netnsCookie], 'only the link of the pod still enrolled is left');
  t.is(next.get(s.server.uid), undefined);
  t.truthy(next.get(s.client.uid));
  const [direct] = await connectFrom(s.topo, s.other, [hp(s.server.ip4, 8080)]);
  t.like(direct?.reply, { listener: 'app', name: 'server' });
});

test('ring-buffer events report each decision with the socket and netns cookies', async (t) => {
  if (!(await requireRoot(t))) return;
  const s = await scenario(t);
  const events: DatapathEvent[] = [];
  const reader = s.dp.readEvents((e) => events.push(...e), 20);
  t.teardown(() => reader.close());
  const c = s.en.enrol({ uid: s.client.uid, netnsPath: s.client.netnsPath, addresses: addrs(s.client) });
  const sv = s.en.enrol({ uid: s.server.uid, netnsPath: s.server.netnsPath, addresses: addrs(s.server) });
  t.is(c.netnsCookie, netnsCookie(s.client.netnsPath));
  const zc = await startStandin(s.bpffs, s.client, c.netnsCookie, { inbound: false });
  t.teardown(() => zc.close());

  const [captured, loop] = await connectFrom(s.topo, s.client, [
    hp(s.server.ip4, 8080),
    hp('127.0.0.1', 7070),
  ]);
  const [refused] = await connectFrom(s.topo, s.other, [hp(s.server.ip4, 9090)]);
  t.is(refused?.error, 'ECONNREFUSED');
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && !events.some((e) => e.kind === 'REFUSED'))
    await new Promise((r) => setTimeout(r, 20));

  const cap = events.find((e) => e.kind === 'CAPTURED');
  t.like(cap, {
    netnsCookie: c.netnsCookie,
    dst: s.server.ip4,
    dport: 8080,
    newPort: 15001,
    family: 4,
    podId: c.podId,
  });
  t.is(
    String(cap?.sockCookie),
    String(captured?.cookie),
    'the event names the client socket by its SO_COOKIE',
  );
  const reply = captured?.reply as StandinReply | undefined;
  t.is(reply?.orig?.sockCookie, String(cap?.sockCookie), 'the recovered original destination names the same socket (how flows join ztunnel with the kernel)');
  const passed = events.find((e) => e.kind === 'PASSED' && e.reason === 'loopback');
  t.like(passed, { netnsCookie: c.netnsCookie, dst: '127.0.0.1', dport: 7070 });
  t.is(String(passed?.sockCookie), String(loop?.cookie));
  const ref = events.find((e) => e.kind === 'REFUSED');
  t.like(ref, {
    netnsCookie: sv.netnsCookie,
    src: s.other.ip4,
    dst: s.server.ip4,
    dport: 9090,
    reason: 'no-ztunnel-socket',
  });
  t.true((ref?.tsNs ?? 0n) > (cap?.tsNs ?? 0n), 'timestamps are monotonic');
  t.is(s.dp.eventsLost(), 0n);
});

test('a pod outside the mesh is observed, never touched: one OBSERVED event at the close, with its start and byte counts', async (t) => {
  if (!(await requireRoot(t))) return;
  const s = await scenario(t);
  const events: DatapathEvent[] = [];
  const reader = s.dp.readEvents((e) => events.push(...e), 20);
  t.teardown(() => reader.close());
  const before = process.hrtime.bigint();
  const [r, loop] = await connectFrom(s.topo, s.other, [hp(s.server.ip4, 8080), hp('127.0.0.1', 7070)]);
  t.truthy(r?.reply, 'the connection went straight to the app');
  t.is((r?.reply as { listener?: string } | undefined)?.listener, 'app');
  t.truthy(loop?.error, 'nothing listens on the other pod\'s loopback: no event either way');
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && !events.some((e) => e.kind === 'OBSERVED')) await new Promise((res) => setTimeout(res, 20));
  await new Promise((res) => setTimeout(res, 100));
  const seen = events.filter((e) => e.kind === 'OBSERVED');
  t.is(seen.length, 1, 'exactly one event for the one connection (loopback is not reported)');
  t.false(events.some((e) => e.kind === 'OPENED'), 'the reader keeps OPENED to itself: it only dates the OBSERVED');
  t.like(seen[0], { src: s.other.ip4, dst: s.server.ip4, dport: 8080, family: 4 });
  t.is(String(seen[0]?.sockCookie), String(r?.cookie), 'named by the client socket cookie');
  t.true((seen[0]?.sport ?? 0) > 0, 'with its source port');
  const replyLen = Buffer.byteLength(`${JSON.stringify(r?.reply)}\n`);
  // The kernel's counters advance over the FIN's sequence number too.
  t.true([replyLen, replyLen + 1].includes(Number(seen[0]?.bytesRecv)), `bytes received ${seen[0]?.bytesRecv} = the app reply (${replyLen}) (+1 for its FIN)`);
  t.true((seen[0]?.bytesSent ?? 0n) > 0n, 'bytes sent');
  t.true((seen[0]?.startNs ?? 0n) > before, 'started during the test');
  t.true((seen[0]?.tsNs ?? 0n) >= (seen[0]?.startNs ?? 0n), 'reported at the close, after its start');
  s.en.enrol({ uid: s.other.uid, netnsPath: s.other.netnsPath, addresses: addrs(s.other) });
  const enrolledFrom = events.length;
  await connectFrom(s.topo, s.other, [hp(s.server.ip4, 8080)]);
  await new Promise((res) => setTimeout(res, 200));
  t.false(events.slice(enrolledFrom).some((e) => e.kind === 'OBSERVED'), 'an enrolled pod is not observed (ztunnel reports it)');
});

// The capture datapath, shown end to end on this host (root), in namespaces it makes and removes:
// two nodes, a client pod and a server pod; the client is enrolled, its connect() to the server is
// captured into the pod's own outbound listener (a stand-in for ztunnel), which recovers the
// original destination; the server's inbound traffic is steered to its ztunnel sockets; and the
// datapath's decisions arrive as events. Until the local cluster lands (`meshctl dev up`), this is
// the README's main command: `npm run demo`.
import { Enrolment } from '../src/agent/index.ts';
import { Datapath, type DatapathEvent } from '../src/datapath/index.ts';
import { connectFrom, hp, startApp } from '../test/helpers/pods.ts';
import { startStandin } from '../test/helpers/standin.ts';
import { createScratch, uniquePrefix } from '../test/helpers/topology.ts';

const step = (s: string) => console.log(`\n▸ ${s}`);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('the demo creates network namespaces and loads eBPF programs: run it as root');
  const prefix = uniquePrefix().replace(/^mt/, 'md');
  step(`building two nodes and three pods in network namespaces (prefix ${prefix})`);
  const env = await createScratch(prefix, { ipv6: true });
  let dp: Datapath | undefined;
  const closers: (() => Promise<void> | void)[] = [];
  try {
    const [a, b] = [await env.topo.addNode('a'), await env.topo.addNode('b')];
    const [client, other, server] = await Promise.all([
      env.topo.addPod(a, 'client'),
      env.topo.addPod(a, 'other'),
      env.topo.addPod(b, 'server'),
    ]);
    for (const p of [client, other, server])
      console.log(`  pod ${p.name.padEnd(7)} on node ${p.node.name}  ${p.ip4}  ${p.ip6}`);
    await startApp(env.topo, server, [8080]);

    step(`loading the datapath (maps and links pinned under ${env.bpffs}, programs on ${env.cgroupParent})`);
    dp = await Datapath.open({ bpffsDir: env.bpffs, cgroupPath: env.cgroupParent });
    const events: DatapathEvent[] = [];
    const reader = dp.readEvents((e) => events.push(...e), 20);
    closers.push(() => reader.close());
    const en = new Enrolment(dp);

    step('before enrolment: client → server:8080 goes straight to the app');
    console.log(' ', JSON.stringify((await connectFrom(env.topo, client, [hp(server.ip4, 8080)]))[0]?.reply));

    step('enrolling client and server (what `kubectl label ns X mesh.io/dataplane-mode=ambient` will do)');
    const c = en.enrol({
      uid: client.uid,
      netnsPath: client.netnsPath,
      addresses: [client.ip4, client.ip6!],
    });
    const s = en.enrol({
      uid: server.uid,
      netnsPath: server.netnsPath,
      addresses: [server.ip4, server.ip6!],
    });
    console.log(`  client netns cookie ${c.netnsCookie}, server netns cookie ${s.netnsCookie}`);

    step('with no ztunnel listening yet, capture fails closed');
    const closed = await connectFrom(env.topo, client, [hp(server.ip4, 8080)]);
    const inClosed = await connectFrom(env.topo, other, [hp(server.ip4, 8080)]);
    console.log(
      `  client → server: ${closed[0]?.error}; other → server: ${inClosed[0]?.error} (never plaintext)`,
    );

    step('starting stand-in ztunnel listeners inside both pods (15001 outbound, 15006 inbound, 15008 HBONE)');
    const zc = await startStandin(env.bpffs, client, c.netnsCookie, { inbound: false });
    const zs = await startStandin(env.bpffs, server, s.netnsCookie, { outbound: false });
    zs.register();
    closers.push(
      () => zc.close(),
      () => zs.close(),
    );

    step('client → server: captured in the client pod, original destination recovered');
    for (const r of await connectFrom(env.topo, client, [hp(server.ip4, 8080), hp(server.ip6!, 8080)]))
      console.log(' ', JSON.stringify(r.reply));
    step("other (not enrolled) → server:8080 and :15008: steered to the server pod's ztunnel sockets");
    for (const r of await connectFrom(env.topo, other, [hp(server.ip4, 8080), hp(server.ip4, 15008)]))
      console.log(' ', JSON.stringify(r.reply));

    await new Promise((r) => setTimeout(r, 100));
    step(`datapath events (${events.length}, lost ${dp.eventsLost()})`);
    for (const e of events) {
      console.log(
        `  ${e.kind.padEnd(8)} ${(e.reason || '-').padEnd(18)} netns ${String(e.netnsCookie).padEnd(6)} ${e.src ? `${e.src}:${e.sport} ` : ''}→ ${e.dst}:${e.dport} ⇒ :${e.newPort}`,
      );
    }

    step('unenrolling: traffic is direct again');
    en.unenrol(client.uid);
    en.unenrol(server.uid);
    console.log(' ', JSON.stringify((await connectFrom(env.topo, client, [hp(server.ip4, 8080)]))[0]?.reply));
  } finally {
    for (const close of closers.reverse()) await close();
    dp?.close();
    Datapath.uninstall(env.bpffs);
    await env.destroy();
    step('removed every namespace, cgroup and pin the demo made');
  }
}

main().catch((e: Error) => {
  console.error(`demo failed: ${e.message}`);
  process.exit(1);
});

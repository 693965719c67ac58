// Enrolling and unenrolling many pods: every map and link returns to empty.
import test from 'ava';
import { Enrolment } from '../../src/agent/index.ts';
import { Datapath, MAP_NAMES } from '../../src/datapath/index.ts';
import { ipBatch } from '../../src/local/index.ts';
import { makeTopology, requireRoot } from '../helpers/topology.ts';

const PODS = 1000;

test(`enrolling and unenrolling ${PODS} pods leaves every map empty`, async (t) => {
  if (!(await requireRoot(t))) return;
  const { prefix, bpffs, cgroupParent } = await makeTopology(t);
  const names = Array.from({ length: PODS }, (_, i) => `${prefix}-x${i}`);
  t.teardown(() => ipBatch(names.map((n) => `netns del ${n}`)).catch(() => {}));
  await ipBatch(names.map((n) => `netns add ${n}`));
  const dp = await Datapath.open({ bpffsDir: bpffs, cgroupPath: cgroupParent });
  t.teardown(() => {
    dp.close();
    Datapath.uninstall(bpffs);
  });
  const en = new Enrolment(dp);

  const started = process.hrtime.bigint();
  for (const [i, n] of names.entries()) {
    en.enrol({
      uid: `uid-${i}`,
      netnsPath: `/run/netns/${n}`,
      addresses: [`10.200.${i >> 8}.${i & 255}`, `fd00:200::${i.toString(16)}`],
      excludeOutboundPorts: [9000 + (i % 3)],
      excludeInboundPorts: [22],
      excludeOutboundCidrs: ['169.254.0.0/16'],
    });
  }
  const enrolMs = Number(process.hrtime.bigint() - started) / 1e6;
  t.is(dp.maps.mesh_pods.keys().length, PODS);
  t.is(dp.maps.mesh_pod_addrs.keys().length, 2 * PODS);
  t.is(dp.maps.mesh_excl_cidrs.keys().length, PODS);
  t.is(dp.podLinkCookies().length, PODS);

  const mid = process.hrtime.bigint();
  for (let i = 0; i < PODS; i++) t.true(en.unenrol(`uid-${i}`));
  const unenrolMs = Number(process.hrtime.bigint() - mid) / 1e6;
  t.log(
    `enrol ${PODS}: ${enrolMs.toFixed(0)} ms (${((enrolMs * 1000) / PODS).toFixed(0)} µs/pod); unenrol: ${unenrolMs.toFixed(0)} ms`,
  );

  for (const name of MAP_NAMES) {
    // A ring, a fixed array and socket-local storage (freed with its socket) have no keys to leave.
    if (name === 'mesh_events' || name === 'mesh_stats' || name === 'mesh_pending') continue;
    t.is(dp.maps[name].keys().length, 0, `${name} is empty`);
  }
  t.deepEqual(dp.podLinkCookies(), [], 'no sk_lookup link is left');
});

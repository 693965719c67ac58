import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import {
  BPF_FS_MAGIC,
  type CheckResult,
  checkBpffs,
  checkBtf,
  checkCapabilities,
  checkCgroup2,
  checkKernel,
  checkProgramTypes,
  checkRingBuffer,
  checkSocketLb,
  compareKernel,
  EXIT_USAGE,
  exitCodeOf,
  type HostFacts,
  parseBpftoolCgroupShow,
  parseCapEff,
  parseKernelRelease,
  renderChecks,
  runChecks,
} from '../../src/cli/index.ts';

// This development host: systemd-style hybrid cgroups (v1 controllers, v2 at .../unified) and
// no bpffs mounted anywhere.
const HYBRID_NO_BPFFS = `\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw,discard
`;

// A typical Kubernetes node: unified cgroup v2 and bpffs at /sys/fs/bpf.
const UNIFIED_WITH_BPFFS = `\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
30 23 0:29 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:11 - bpf bpf rw,mode=700
`;

const SYSFS_MAGIC = 0x62656572;

// CapEff of root (all 41 capabilities), of Docker's default set, and of an unprivileged user.
const STATUS_ROOT =
  'Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n';
const STATUS_DOCKER_DEFAULT = 'Name:\tnode\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n';
const STATUS_USER = 'Name:\tnode\nCapEff:\t0000000000000000\n';
// CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN, no CAP_PERFMON: bits 39, 12, 21.
const STATUS_NO_PERFMON = `CapEff:\t${((1n << 39n) | (1n << 12n) | (1n << 21n)).toString(16).padStart(16, '0')}\n`;

// `bpftool -j cgroup show /sys/fs/cgroup` on a node running Cilium with socket LB (bpftool 7
// spelling), and the same from an older bpftool.
const BPFTOOL_CILIUM =
  '[{"id":1021,"attach_type":"cgroup_inet4_connect","attach_flags":"multi","name":"cil_sock4_connect"},' +
  '{"id":1022,"attach_type":"cgroup_inet6_connect","attach_flags":"multi","name":"cil_sock6_connect"},' +
  '{"id":1023,"attach_type":"cgroup_inet4_post_bind","attach_flags":"multi","name":"cil_sock4_post_bind"}]\n';
const BPFTOOL_OLD_CILIUM =
  '[{"id":77,"attach_type":"connect4","attach_flags":"multi","name":"sock4_connect"},' +
  '{"id":78,"attach_type":"sendmsg4","attach_flags":"","name":"sock4_sendmsg"}]\n';

const byStatus = (r: CheckResult) => r.status;

test('kernel releases parse to major.minor.patch, whatever the suffix', (t) => {
  t.deepEqual(parseKernelRelease('6.18.44-fc-v669'), [6, 18, 44]);
  t.deepEqual(parseKernelRelease('5.4.0-150-generic'), [5, 4, 0]);
  t.deepEqual(parseKernelRelease('5.10.0'), [5, 10, 0]);
  t.deepEqual(parseKernelRelease('6.1'), [6, 1, 0]);
  t.is(parseKernelRelease('banana'), undefined);
});

test('kernel versions compare numerically, not as strings', (t) => {
  const v = (s: string) => parseKernelRelease(s)!;
  t.true(compareKernel(v('6.18.44-fc-v669'), v('5.10.0')) > 0);
  t.true(compareKernel(v('5.4.0-150-generic'), v('5.10.0')) < 0);
  t.is(compareKernel(v('5.10.0'), v('5.10.0-rc1')), 0);
  t.true(compareKernel(v('5.9.16'), v('5.10.0')) < 0);
});

test('kernel: 5.14+ passes, 5.10-5.13 fails for SO_NETNS_COOKIE, older fails the floor', (t) => {
  const recent = checkKernel('6.18.44-fc-v669');
  t.is(recent.status, 'ok');
  t.regex(recent.detail, /ingress_ifindex/);

  const between = checkKernel('5.15.0-91-generic');
  t.is(between.status, 'ok');
  t.regex(between.detail, /ingress_ifindex needs 5\.17/);

  const noCookie = checkKernel('5.10.0');
  t.is(noCookie.status, 'fail');
  t.regex(noCookie.detail, /SO_NETNS_COOKIE/);
  t.truthy(noCookie.fix);

  const tooOld = checkKernel('5.4.0-150-generic');
  t.is(tooOld.status, 'fail');
  t.regex(tooOld.detail, /older than 5\.10/);

  t.is(checkKernel('weird').status, 'warn');
});

test('ring buffer needs 5.8', (t) => {
  t.is(checkRingBuffer('5.8.0').status, 'ok');
  t.is(checkRingBuffer('5.4.0-150-generic').status, 'fail');
});

test('btf: a missing vmlinux points at CONFIG_DEBUG_INFO_BTF', (t) => {
  t.is(checkBtf(undefined).status, 'ok');
  const missing = checkBtf('ENOENT');
  t.is(missing.status, 'fail');
  t.regex(missing.fix!, /CONFIG_DEBUG_INFO_BTF=y/);
  t.is(checkBtf('EACCES').status, 'fail');
});

test('cgroup2: a hybrid host warns and names the v2 mount the agent attaches under', (t) => {
  const r = checkCgroup2(HYBRID_NO_BPFFS);
  t.is(r.status, 'warn');
  t.regex(r.detail, /\/sys\/fs\/cgroup\/unified/);
  t.regex(r.detail, /pods' subtree of the v2 mount/);
  t.truthy(r.fix);
});

test('cgroup2: unified passes, v1-only fails', (t) => {
  t.is(checkCgroup2(UNIFIED_WITH_BPFFS).status, 'ok');
  const v1 = checkCgroup2('32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n');
  t.is(v1.status, 'fail');
  t.regex(v1.fix!, /unified_cgroup_hierarchy/);
});

test('bpffs: none mounted is a failure that says how to mount it', (t) => {
  const r = checkBpffs(HYBRID_NO_BPFFS, '/sys/fs/bpf/mesh', { ancestor: '/sys/fs/bpf', fsType: SYSFS_MAGIC });
  t.is(r.status, 'fail');
  t.regex(r.detail, /\/sys\/fs\/bpf is sysfs/);
  t.regex(r.detail, /no bpffs is mounted/);
  t.is(r.fix, 'mount -t bpf bpf /sys/fs/bpf');
});

test('bpffs: the configured directory, or its nearest existing ancestor, on bpffs passes', (t) => {
  t.is(
    checkBpffs(UNIFIED_WITH_BPFFS, '/sys/fs/bpf/mesh', { ancestor: '/sys/fs/bpf', fsType: BPF_FS_MAGIC })
      .status,
    'ok',
  );
  t.is(
    checkBpffs(UNIFIED_WITH_BPFFS, '/sys/fs/bpf/mesh', { ancestor: '/sys/fs/bpf/mesh', fsType: BPF_FS_MAGIC })
      .status,
    'ok',
  );
});

test('bpffs: a directory off the mounted bpffs fails and points at the mount that exists', (t) => {
  const r = checkBpffs(UNIFIED_WITH_BPFFS, '/var/run/mesh', { ancestor: '/var/run', fsType: 0x01021994 });
  t.is(r.status, 'fail');
  t.regex(r.detail, /bpffs is mounted at \/sys\/fs\/bpf/);
  t.regex(r.fix!, /MESH_BPFFS_DIR=\/sys\/fs\/bpf\/mesh/);
  t.is(checkBpffs(UNIFIED_WITH_BPFFS, '/x', { error: 'EACCES' }).status, 'fail');
});

test('capabilities: CapEff is read from /proc/self/status', (t) => {
  t.is(parseCapEff(STATUS_ROOT), 0x1ffffffffffn);
  t.is(parseCapEff(STATUS_USER), 0n);
  t.is(parseCapEff('Name:\tnode\n'), undefined);
});

test('capabilities: root passes; an unprivileged or default container fails naming what is missing', (t) => {
  t.is(checkCapabilities(STATUS_ROOT, '6.18.44-fc-v669').status, 'ok');

  const docker = checkCapabilities(STATUS_DOCKER_DEFAULT, '6.18.44-fc-v669');
  t.is(docker.status, 'fail');
  t.regex(docker.detail, /CAP_BPF/);
  t.regex(docker.detail, /CAP_NET_ADMIN/);
  t.regex(docker.detail, /CAP_SYS_ADMIN to enter pod network namespaces/);

  t.is(checkCapabilities(STATUS_USER, '6.18.44-fc-v669').status, 'fail');
  t.is(
    checkCapabilities(STATUS_NO_PERFMON, '6.18.44-fc-v669').status,
    'ok',
    'CAP_SYS_ADMIN covers CAP_PERFMON',
  );
});

test('capabilities: before 5.8 CAP_BPF does not exist and CAP_SYS_ADMIN is what loads programs', (t) => {
  const r = checkCapabilities(STATUS_ROOT, '5.4.0-150-generic');
  t.is(r.status, 'ok');
  t.regex(r.detail, /^CAP_SYS_ADMIN/);
});

test('program types: an unbuilt addon says to run make', (t) => {
  const r = checkProgramTypes({ addon: 'missing', message: 'the native addon is not built' }, true);
  t.is(r.status, 'warn');
  t.regex(r.fix!, /make/);
});

test('program types: unsupported is a failure only when the probe had the privilege to load', (t) => {
  const probe = {
    addon: 'ok' as const,
    features: [
      { feature: 'cgroup/connect4+6', supported: true },
      { feature: 'sk_lookup', supported: false },
    ],
  };
  const privileged = checkProgramTypes(probe, true);
  t.is(privileged.status, 'fail');
  t.regex(privileged.detail, /sk_lookup/);
  t.is(checkProgramTypes(probe, false).status, 'warn');
  t.is(
    checkProgramTypes({ addon: 'ok', features: [{ feature: 'sockops', supported: true }] }, true).status,
    'ok',
  );
});

test('bpftool output: empty means no programs; both attach-type spellings parse', (t) => {
  t.deepEqual(parseBpftoolCgroupShow(''), []);
  t.deepEqual(parseBpftoolCgroupShow(BPFTOOL_CILIUM)[0], {
    id: 1021,
    attachType: 'cgroup_inet4_connect',
    attachFlags: 'multi',
    name: 'cil_sock4_connect',
  });
  t.is(parseBpftoolCgroupShow(BPFTOOL_OLD_CILIUM)[0]?.attachType, 'connect4');
  t.throws(() => parseBpftoolCgroupShow('{"error":"x"}'));
});

test('socket-lb: Cilium connect programs at the root cgroup warn, other hooks do not count', (t) => {
  const cgroup = '/sys/fs/cgroup';
  const cilium = checkSocketLb({ bpftool: 'ok', cgroup, programs: parseBpftoolCgroupShow(BPFTOOL_CILIUM) });
  t.is(cilium.status, 'warn');
  t.regex(cilium.detail, /^2 program\(s\) attached at the root cgroup/);
  t.regex(cilium.detail, /cil_sock4_connect/);
  t.notRegex(cilium.detail, /post_bind/);

  const old = checkSocketLb({ bpftool: 'ok', cgroup, programs: parseBpftoolCgroupShow(BPFTOOL_OLD_CILIUM) });
  t.regex(old.detail, /^1 program\(s\)/);

  const none = checkSocketLb({ bpftool: 'ok', cgroup, programs: [] });
  t.is(none.status, 'ok');
  t.regex(none.detail, /^none/);
});

test('socket-lb: a root connect program attached without flags fails: nothing can attach below it', (t) => {
  const r = checkSocketLb({
    bpftool: 'ok',
    cgroup: '/sys/fs/cgroup',
    programs: [{ id: 9, attachType: 'cgroup_inet4_connect', attachFlags: '', name: 'lb_connect4' }],
  });
  t.is(r.status, 'fail');
  t.regex(r.detail, /BPF_F_ALLOW_MULTI/);
});

test('socket-lb: without bpftool the check is skipped with a warning', (t) => {
  const r = checkSocketLb({ bpftool: 'missing' });
  t.is(r.status, 'warn');
  t.regex(r.detail, /skipped/);
});

// The whole of `meshctl check` on a host shaped like this one, with no bpffs.
const THIS_HOST: HostFacts = {
  kernelRelease: '6.18.44-fc-v669',
  btfError: undefined,
  mountinfo: HYBRID_NO_BPFFS,
  procStatus: STATUS_ROOT,
  bpffsDir: '/sys/fs/bpf/mesh',
  bpffs: { ancestor: '/sys/fs/bpf', fsType: SYSFS_MAGIC },
  progTypes: { addon: 'ok', features: [{ feature: 'cgroup/connect4+6', supported: true }] },
  rootCgroup: { bpftool: 'ok', cgroup: '/sys/fs/cgroup/unified', programs: [] },
};

test('a hybrid host without bpffs fails the check with exit code 1', (t) => {
  const results = runChecks(THIS_HOST);
  t.deepEqual(
    results.map((r) => [r.name, byStatus(r)]),
    [
      ['kernel', 'ok'],
      ['btf', 'ok'],
      ['cgroup2', 'warn'],
      ['bpffs', 'fail'],
      ['capabilities', 'ok'],
      ['program-types', 'ok'],
      ['ring-buffer', 'ok'],
      ['socket-lb', 'ok'],
    ],
  );
  t.is(exitCodeOf(results), 1);
  for (const r of results) if (r.status !== 'ok') t.truthy(r.fix, `${r.name} says what to do`);
});

test('warnings alone exit 0', (t) => {
  const results = runChecks({
    ...THIS_HOST,
    bpffs: { ancestor: '/sys/fs/bpf', fsType: BPF_FS_MAGIC },
  });
  t.is(exitCodeOf(results), 0);
});

test('human output: one line per check with its mark, the fix under it, and a summary', (t) => {
  const text = renderChecks(runChecks(THIS_HOST));
  const lines = text.trimEnd().split('\n');
  t.true(lines.some((l) => l.startsWith('✔ kernel ')));
  t.true(lines.some((l) => l.startsWith('! cgroup2 ')));
  const bpffs = lines.findIndex((l) => l.startsWith('✖ bpffs '));
  t.true(bpffs >= 0);
  t.regex(lines[bpffs + 1]!, /→ mount -t bpf bpf \/sys\/fs\/bpf$/);
  t.regex(lines.at(-1)!, /1 check failed, 1 warning/);
});

const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));

test('meshctl: unknown commands and flags exit 2 with a message', (t) => {
  for (const args of [['frobnicate'], ['check', '--nope'], ['check', '-o', 'yaml'], []]) {
    const r = spawnSync(MESHCTL, args, { encoding: 'utf8' });
    t.is(r.status, EXIT_USAGE, `meshctl ${args.join(' ')}`);
    t.true(r.stderr.length > 0);
  }
  t.regex(spawnSync(MESHCTL, ['frobnicate'], { encoding: 'utf8' }).stderr, /unknown command 'frobnicate'/);
});

test('meshctl check -o json prints every check as {name, status, detail, fix?}', (t) => {
  const r = spawnSync(MESHCTL, ['check', '-o', 'json'], { encoding: 'utf8' });
  t.true(r.status === 0 || r.status === 1, r.stderr);
  const results = JSON.parse(r.stdout) as CheckResult[];
  t.deepEqual(
    results.map((c) => c.name),
    ['kernel', 'btf', 'cgroup2', 'bpffs', 'capabilities', 'program-types', 'ring-buffer', 'socket-lb'],
  );
  for (const c of results) t.true(['ok', 'warn', 'fail'].includes(c.status));
  t.is(r.status, results.some((c) => c.status === 'fail') ? 1 : 0);
});

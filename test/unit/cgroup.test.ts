import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { CgroupError, findCgroup2Mount, findPodCgroup, parseProcCgroup } from '../../src/common/cgroup.ts';

// Captured from a hybrid-mode host (systemd with cgroup v1 controllers and v2 at .../unified).
const HYBRID = `\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:18 - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw
`;

// Unified mode, plus a second cgroup2 mount a container runtime made elsewhere.
const UNIFIED = `\
22 1 0:20 / /run rw,nosuid,nodev - tmpfs tmpfs rw
90 22 0:26 / /run/runtime/cg rw - cgroup2 cgroup2 rw,nsdelegate
26 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
`;

const V1_ONLY = `\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
`;

test('finds cgroup2 at /sys/fs/cgroup/unified on a hybrid host', (t) => {
  t.is(findCgroup2Mount(HYBRID), '/sys/fs/cgroup/unified');
});

test('prefers /sys/fs/cgroup over other cgroup2 mounts', (t) => {
  t.is(findCgroup2Mount(UNIFIED), '/sys/fs/cgroup');
});

test('falls back to the first cgroup2 mount, unescaping its path', (t) => {
  const info =
    '50 1 0:40 / /mnt/my\\040cg rw - cgroup2 none rw\n51 1 0:41 / /mnt/other rw - cgroup2 none rw\n';
  t.is(findCgroup2Mount(info), '/mnt/my cg');
});

test('a cgroup v1-only host gets an error that names cgroup v2', (t) => {
  const err = t.throws(() => findCgroup2Mount(V1_ONLY), { instanceOf: CgroupError });
  t.is(err?.code, 'MESH_ERR_NO_CGROUP2');
  t.regex(err?.message ?? '', /cgroup v2/);
});

test('reads the live mountinfo of this process', (t) => {
  try {
    t.true(findCgroup2Mount().startsWith('/'));
  } catch (err) {
    t.true(err instanceof CgroupError);
  }
});

test('reads the unified-hierarchy path from /proc/PID/cgroup', (t) => {
  const text =
    '12:memory:/kubepods/pod1\n1:name=systemd:/kubepods/pod1\n0::/kubepods/besteffort/pod1/c0ffee\n';
  t.is(parseProcCgroup(text), '/kubepods/besteffort/pod1/c0ffee');
  t.is(parseProcCgroup('0::/\n'), '/');
  t.is(parseProcCgroup('0::/gone (deleted)\n'), '/gone');
});

test('a process without a 0:: line means no cgroup v2', (t) => {
  t.throws(() => parseProcCgroup('4:memory:/x\n1:name=systemd:/x\n'), { instanceOf: CgroupError });
});

const UID = '8d3f2a1c-5b6e-4f70-9a81-0c2d3e4f5a6b';

function tree(t: { teardown: (fn: () => void) => void }, dirs: string[]): string {
  const root = mkdtempSync(join(tmpdir(), 'mesh-cgtest-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const dir of dirs) mkdirSync(join(root, dir), { recursive: true });
  return root;
}

test('finds a pod cgroup made by the cgroupfs driver', async (t) => {
  const root = tree(t, [`kubepods/besteffort/pod${UID}/c1`, 'kubepods/burstable/podffff', 'system.slice']);
  t.is(await findPodCgroup(UID, root), join(root, `kubepods/besteffort/pod${UID}`));
});

test('finds a pod cgroup made by the systemd driver', async (t) => {
  const systemd = `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replaceAll('-', '_')}.slice`;
  const root = tree(t, [`kubelet.slice/${systemd}/cri-containerd-abc.scope`]);
  t.is(await findPodCgroup(UID, root), join(root, 'kubelet.slice', systemd));
});

test('finds a guaranteed pod directly under kubepods', async (t) => {
  const root = tree(t, [`kubepods/pod${UID}`]);
  t.is(await findPodCgroup(UID, root), join(root, `kubepods/pod${UID}`));
});

test('a missing pod, or one nested deeper than the bound, is not found', async (t) => {
  const root = tree(t, ['kubepods/besteffort/podaaaa', `a/b/c/d/e/f/pod${UID}`]);
  t.is(await findPodCgroup(UID, root), undefined);
  t.is(await findPodCgroup(UID, root, 7), join(root, `a/b/c/d/e/f/pod${UID}`));
});

test('does not mistake another pod with a similar UID', async (t) => {
  const root = tree(t, [`kubepods/pod${UID}0`, `kubepods/x-pod${UID.replaceAll('-', '_')}_1.slice`]);
  t.is(await findPodCgroup(UID, root), undefined);
});

test('rejects a UID that could escape the search', async (t) => {
  await t.throwsAsync(findPodCgroup('../etc', '/tmp'), { instanceOf: TypeError });
});

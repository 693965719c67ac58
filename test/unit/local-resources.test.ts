// resources.limits/requests as cgroup settings (src/local/runtime/resources.ts): quantities,
// podman flags for OCI containers, the pod cgroup's files for host commands, and the fields that
// cannot be honoured, named.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { containerLimits, ociResourceArgs, parseQuantity, podLimits, writeCgroupLimits } from '../../src/local/runtime/resources.ts';

test('quantities parse as resource.Quantity does', (t) => {
  t.is(parseQuantity('64Mi'), 64 * 2 ** 20);
  t.is(parseQuantity('1G'), 1e9);
  t.is(parseQuantity('500m'), 0.5);
  t.is(parseQuantity('1.5'), 1.5);
  t.is(parseQuantity('129e6'), 129e6);
  t.is(parseQuantity(2), 2);
  t.true(Number.isNaN(parseQuantity('lots')));
});

test('limits become podman flags; a cpu limit without a request gives shares as kubelet does; the rest is named', (t) => {
  const { limits, unsupported } = containerLimits({ name: 'c', resources: { limits: { memory: '64Mi', cpu: '500m', 'ephemeral-storage': '1Gi' }, requests: { memory: '32Mi' } } }, 'spec.containers{c}');
  t.deepEqual(limits, { memoryBytes: 67108864, cpuMillis: 500, cpuShares: 512 });
  t.deepEqual(unsupported, ['spec.containers{c}.resources.limits.ephemeral-storage', 'spec.containers{c}.resources.requests.memory']);
  t.deepEqual(ociResourceArgs(limits), ['--memory', '67108864', '--memory-swap', '67108864', '--cpu-period', '100000', '--cpu-quota', '50000', '--cpu-shares', '512']);
  t.deepEqual(containerLimits({ name: 'c', resources: { requests: { cpu: '250m' } } }, '').limits, { cpuShares: 256 });
});

test('a pod cgroup gets the sum of its containers limits only when every container has one', (t) => {
  t.deepEqual(podLimits([{ memoryBytes: 10, cpuMillis: 100 }, { memoryBytes: 20 }]), { memoryBytes: 30 });
  t.deepEqual(podLimits([]), {});
});

test('the pod cgroup v2 files are written where the controllers are delegated; missing controllers are named', (t) => {
  const mount = mkdtempSync(join(tmpdir(), 'mesh-cgroup-'));
  t.teardown(() => rmSync(mount, { recursive: true, force: true }));
  const parent = join(mount, 'kubepods', 'node1');
  const pod = join(parent, 'podabc');
  mkdirSync(pod, { recursive: true });
  for (const d of [mount, join(mount, 'kubepods'), parent]) writeFileSync(join(d, 'cgroup.controllers'), 'cpu memory pids\n');
  writeFileSync(join(mount, 'cgroup.subtree_control'), 'cpu memory\n');
  for (const d of [join(mount, 'kubepods'), parent]) writeFileSync(join(d, 'cgroup.subtree_control'), '');
  for (const f of ['memory.max', 'cpu.max', 'cpu.weight']) writeFileSync(join(pod, f), 'max');
  t.deepEqual(writeCgroupLimits(mount, pod, { memoryBytes: 1 << 20, cpuMillis: 250, cpuShares: 256 }), []);
  t.is(readFileSync(join(pod, 'memory.max'), 'utf8'), '1048576');
  t.is(readFileSync(join(pod, 'cpu.max'), 'utf8'), '25000 100000');
  t.is(readFileSync(join(pod, 'cpu.weight'), 'utf8'), '10');
  t.is(readFileSync(join(parent, 'cgroup.subtree_control'), 'utf8'), '+cpu'); // a real cgroupfs keeps both; a file keeps the last write

  // The host delegates no memory controller to the v2 hierarchy (a hybrid host): named, not written.
  writeFileSync(join(mount, 'cgroup.subtree_control'), 'cpu\n');
  writeFileSync(join(pod, 'memory.max'), 'max');
  t.deepEqual(writeCgroupLimits(mount, pod, { memoryBytes: 1 << 20 }), [`resources.limits.memory (no memory controller in the cgroup v2 hierarchy at ${mount})`]);
  t.is(readFileSync(join(pod, 'memory.max'), 'utf8'), 'max');
});

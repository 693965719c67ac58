// Runs after the whole suite (npm test): nothing the tests made may be left on this host —
// network namespaces, cgroups, bpffs mounts, scratch directories, or processes running our
// fixtures. Each test checks its own prefix in teardown; this catches what escaped (a killed
// worker, a test that forgot its teardown).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { findCgroup2Mount } from '../src/common/cgroup.ts';
import { run } from '../src/local/index.ts';
import { listContainers } from '../src/local/runtime/oci.ts';

const TEST_PREFIX = /^m[tbd][a-z0-9]{5}-/; // test, bench and demo prefixes (test/helpers/topology.ts)
const leftovers: string[] = [];

for (const line of (await run('ip', ['netns', 'list'])).split('\n')) {
  const name = line.split(' ')[0];
  if (name && TEST_PREFIX.test(name)) leftovers.push(`netns ${name}`);
}
const mount = findCgroup2Mount();
for (const name of readdirSync(mount)) if (name.startsWith('mesh-test-')) leftovers.push(`cgroup ${join(mount, name)}`);
// podman's default cgroup parent: the local kubelet always names one (the pod's), so this appears
// only if something ran a container, or its conmon, without it.
const PODMAN_DEFAULT_PARENT = 'libpod_parent';
if (readdirSync(mount).includes(PODMAN_DEFAULT_PARENT)) leftovers.push(`cgroup ${join(mount, PODMAN_DEFAULT_PARENT)} (a container started without the pod's cgroup parent)`);
for (const name of await listContainers()) if (TEST_PREFIX.test(name)) leftovers.push(`container ${name}`);
if (mount !== '/sys/fs/cgroup') {
  for (const h of readdirSync('/sys/fs/cgroup')) {
    if (join('/sys/fs/cgroup', h) === mount) continue;
    let names: string[];
    try {
      names = readdirSync(join('/sys/fs/cgroup', h));
    } catch {
      continue; // not a directory
    }
    for (const name of names) if (TEST_PREFIX.test(name) || name.startsWith('mesh-test-') || name === PODMAN_DEFAULT_PARENT) leftovers.push(`cgroup ${join('/sys/fs/cgroup', h, name)}`);
  }
}
for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
  const [, mountPoint, fstype] = line.split(' ');
  if (fstype === 'bpf' && mountPoint?.startsWith('/tmp/mesh-')) leftovers.push(`bpffs ${mountPoint}`);
}
for (const name of readdirSync('/tmp')) if (/^mesh-m[tbd][a-z0-9]{5}-/.test(name)) leftovers.push(`/tmp/${name}`);
for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
  let cmd: string;
  try {
    cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    continue; // gone meanwhile
  }
  if (/test\/fixtures\/|connect_bench|src\/agent\/main\.ts/.test(cmd)) leftovers.push(`process ${pid}: ${cmd.trim()}`);
}

if (leftovers.length) {
  console.error(`not ok - the test suite left these on the host:\n  ${leftovers.join('\n  ')}`);
  process.exit(1);
}
console.log('leak check: no namespaces, containers, cgroups, bpffs mounts, scratch directories or processes left');

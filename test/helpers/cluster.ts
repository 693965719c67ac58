// A local cluster for one e2e test: a unique prefix and state dir, and a teardown that stops it,
// removes the state dir and fails the test if anything of it is left on the host (network
// namespaces and their /etc/netns entries, cgroups, mounts, containers).
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import type { ExecutionContext } from 'ava';
import { LocalCluster } from '../../src/local/runtime/cluster.ts';
import { assertNothingLeaked, uniquePrefix } from './topology.ts';

export interface TestCluster {
  cluster: LocalCluster;
  prefix: string;
  stateDir: string;
}

export async function startTestCluster(t: ExecutionContext, nodes: number): Promise<TestCluster> {
  const prefix = uniquePrefix();
  const stateDir = mkdtempSync(`/tmp/mesh-${prefix}-state-`);
  const started: { cluster?: LocalCluster } = {};
  t.teardown(async () => {
    await started.cluster?.stop();
    rmSync(stateDir, { recursive: true, force: true });
    const left = await assertNothingLeaked(prefix);
    const etc = existsSync('/etc/netns') ? readdirSync('/etc/netns').filter((d) => d.startsWith(`${prefix}-`)).map((d) => `/etc/netns/${d}`) : [];
    if (left.length || etc.length) throw new Error(`left on the host: ${[...left, ...etc].join('; ')}`);
  });
  started.cluster = await LocalCluster.start({ stateDir, nodes, prefix });
  return { cluster: started.cluster, prefix, stateDir };
}

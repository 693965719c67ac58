// `meshctl dev up` as a user runs it, for one e2e test: its own prefix and state dir, meshctl and
// kubectl pointed at them, and a teardown that takes the cluster down (`dev down --purge`).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { uniquePrefix } from './topology.ts';

const run = promisify(execFile);
export const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));

export interface DevCluster {
  prefix: string;
  stateDir: string;
  env: NodeJS.ProcessEnv;
  meshctl(...args: string[]): Promise<{ stdout: string; stderr: string }>;
  kubectl(...args: string[]): Promise<{ stdout: string; stderr: string }>;
}

export function devCluster(t: ExecutionContext): DevCluster {
  const prefix = uniquePrefix();
  const stateDir = mkdtempSync(`/tmp/mesh-${prefix}-dev-`);
  const env = { ...process.env, MESH_DEV_PREFIX: prefix, MESH_DEV_STATE_DIR: stateDir, KUBECONFIG: `${stateDir}/kubeconfig` };
  const meshctl = (...args: string[]) => run(MESHCTL, args, { env, timeout: 120_000 });
  t.teardown(async () => {
    await meshctl('dev', 'down', '--purge').catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
  });
  return { prefix, stateDir, env, meshctl, kubectl: (...args: string[]) => run('kubectl', args, { env }) };
}

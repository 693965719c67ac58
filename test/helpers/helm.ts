// The real helm binaries (make tools/helm, tools/helm3: taken from npm packages; helm 4 and 3)
// and the chart, rendered as a user's `helm template` would.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as yaml from 'js-yaml';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CHART = fileURLToPath(new URL('../../daemonset/chart', import.meta.url));

/** Helm 4 (the default) or 3: the binary's path, fetched once on a fresh clone. */
export function helmBinary(major: 3 | 4 = 4): string {
  const target = major === 4 ? 'tools/helm' : 'tools/helm3';
  const path = join(ROOT, target);
  if (!existsSync(path)) execFileSync('make', ['-s', '-C', ROOT, target], { stdio: 'ignore' });
  return path;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function helm(args: string[], env: NodeJS.ProcessEnv = {}, major: 3 | 4 = 4): Promise<HelmResult> {
  return new Promise((resolve) => {
    execFile(helmBinary(major), args, { env: { ...process.env, ...env }, timeout: 60_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A rendered manifest object, loosely typed: tests assert on its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Manifest = any;

/** `helm template mesh <chart> -n mesh-system` with `--set` pairs; throws with helm's message. */
export async function renderChart(set: Record<string, string> = {}, major: 3 | 4 = 4): Promise<Manifest[]> {
  const args = ['template', 'mesh', CHART, '-n', 'mesh-system', ...Object.entries(set).flatMap(([k, v]) => ['--set', `${k}=${v}`])];
  const r = await helm(args, {}, major);
  if (r.code !== 0) throw new Error(r.stderr.trim());
  return yaml.loadAll(r.stdout).filter((d) => d) as Manifest[];
}

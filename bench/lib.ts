// What the mesh benchmarks share: hey's latency percentiles, and a client pod run to completion.
import { readFileSync } from 'node:fs';
import type * as k8s from '@kubernetes/client-node';
import { type Mesh, waitFor } from '../test/helpers/mesh.ts';

/** hey's latency distribution (ms) and its 200s and errors; hey (Go, Debian's package) measured DESIGN's floor. */
export function heyPercentiles(out: string): { n: number; errors: number; p50: number; p90: number; p99: number } {
  const pct = (p: number) => {
    const m = new RegExp(`\\s${p}% in ([\\d.]+) secs`).exec(out);
    if (!m) throw new Error(`hey printed no ${p}th percentile:\n${out.slice(-1500)}`);
    return Number(m[1]) * 1000;
  };
  const codes = [...out.matchAll(/\[(\d{3})\]\s+(\d+) responses/g)];
  const ok = codes.filter((c) => c[1] === '200').reduce((a, c) => a + Number(c[2]), 0);
  const bad = codes.filter((c) => c[1] !== '200').reduce((a, c) => a + Number(c[2]), 0);
  const errors = [...out.matchAll(/^\s+\[(\d+)\]\s+Get /gm)].reduce((a, c) => a + Number(c[1]), 0);
  return { n: ok, errors: bad + errors, p50: pct(50), p90: pct(90), p99: pct(99) };
}

/** Runs `command` as a pod on `node` until it ends (within `seconds` + 60 s) and returns its output. */
export async function runPod(mesh: Mesh, ns: string, name: string, node: string, command: string[], seconds: number): Promise<string> {
  await mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { nodeName: node, restartPolicy: 'Never', containers: [{ name: 'main', image: 'local', command }] } } as k8s.V1Pod });
  await waitFor(`${ns}/${name}`, async () => {
    const p = await mesh.core.readNamespacedPod({ name, namespace: ns });
    return ['Succeeded', 'Failed'].includes(p.status?.phase ?? '') ? true : undefined;
  }, (seconds + 60) * 1000);
  return readFileSync(`${mesh.stateDir}/logs/${ns}_${name}_main.log`, 'utf8');
}

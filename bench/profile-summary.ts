// Hot spots of V8 CPU profiles (.cpuprofile, from `node --cpu-prof`): busy time, then the
// functions with the most self time and with the most inclusive time (time with the function on
// the stack).
//
//   node bench/profile-summary.ts [--top 25] [--match REGEX] FILE.cpuprofile...
//
// --match keeps only functions whose "name file:line" matches, e.g. 'ztunnel/|hbone/|datapath/'.
// On a machine where the profiled process competes for CPU, samples taken while it was preempted
// count against whatever it was running, so syscall-heavy functions look heavier than they are.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '25' }, match: { type: 'string' } },
});
if (positionals.length === 0) {
  console.error('usage: node bench/profile-summary.ts [--top N] [--match REGEX] FILE.cpuprofile...');
  process.exit(2);
}
const top = Number(values.top);
const match = values.match ? new RegExp(values.match) : undefined;

const label = (n: ProfileNode): string =>
  `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;

for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let total = 0;
  let busy = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]!)!;
    const dt = p.timeDeltas[i] ?? 0;
    total += dt;
    if (node.callFrame.functionName === '(idle)') continue;
    busy += dt;
    self.set(label(node), (self.get(label(node)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const l = label(byId.get(id)!);
      if (seen.has(l)) continue;
      seen.add(l);
      inclusive.set(l, (inclusive.get(l) ?? 0) + dt);
    }
  }
  const rows = (m: Map<string, number>) =>
    [...m]
      .filter(([l]) => !match || match.test(l))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([l, us]) => `  ${(us / 1000).toFixed(0).padStart(7)} ms ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${l}`)
      .join('\n');
  console.log(`== ${file}: ${(busy / 1e6).toFixed(2)} s busy of ${(total / 1e6).toFixed(2)} s`);
  console.log(`self time:\n${rows(self)}`);
  console.log(`inclusive time:\n${rows(inclusive)}\n`);
}

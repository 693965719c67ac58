// The cost of capture itself: connect() latency and rate from a pod, measured three ways in one
// run, on the real kernel, in namespaces this benchmark makes:
//   baseline   the pod's process sits in a cgroup outside the attached subtree, so no program runs;
//              it connects to a listener on its own loopback
//   bystander  programs attached, pod not enrolled (the hook runs and returns at the first lookup)
//   captured   pod enrolled; it connects to another pod's IP and the hook rewrites the connect()
//              to the same loopback listener, recording the original destination
// All three end on the same loopback listener, so the difference is the datapath's cost alone.
// Two more measure what flows cost a pod outside the mesh (sockops reports each of its connections
// to a non-loopback address, OBSERVED, and its close, CLOSED), against the pod's own IP:
//   baseline-ip  no program runs (outside the subtree), connecting to the pod's own IP
//   observed     programs attached, pod not enrolled, same connections: two ring-buffer events each
// Every round runs all three, in a rotating order, so drift in the machine hits each alike.
//   npm run bench -- [--connects N] [--rounds R] [--prog-stats]
// --prog-stats turns on kernel.bpf_stats_enabled for the run (restored after) and reports the
// average time each program spends per invocation.
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Enrolment } from '../src/agent/index.ts';
import { Datapath, native } from '../src/datapath/index.ts';
import type { PodNet } from '../src/local/index.ts';
import { createScratch, uniquePrefix } from '../test/helpers/topology.ts';

const execFileP = promisify(execFile);
const TOOL = fileURLToPath(new URL('.output/connect_bench', import.meta.url));
const { values } = parseArgs({
  options: {
    connects: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '3' },
    'prog-stats': { type: 'boolean', default: false },
  },
});
const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';
const CONNECTS = Number(values.connects);
const ROUNDS = Number(values.rounds);

interface Sample {
  n: number;
  failed: number;
  seconds: number;
  rate: number;
  mean_us: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  max_us: number;
}

type Scenario = 'baseline' | 'bystander' | 'captured' | 'baseline-ip' | 'observed';

async function main(): Promise<void> {
  const env = await createScratch(uniquePrefix().replace(/^mt/, 'mb'));
  const { topo } = env;
  let dp: Datapath | undefined;
  const restore: (() => void)[] = [];
  try {
    const node = await topo.addNode('a');
    const [enrolled, plain, target] = await Promise.all([
      topo.addPod(node, 'enr'),
      topo.addPod(node, 'plain'),
      topo.addPod(node, 'dst'),
    ]);
    for (const pod of [enrolled, plain]) await serve(topo, pod);
    await serve(topo, plain, plain.ip4);
    const samples: Record<Scenario, Sample[]> = { baseline: [], bystander: [], captured: [], 'baseline-ip': [], observed: [] };

    const outside = `${env.cgroupParent}-base`;
    mkdirSync(outside, { recursive: true });
    restore.push(() => rmdirSync(outside));
    dp = await Datapath.open({ bpffsDir: env.bpffs, cgroupPath: env.cgroupParent, emitPassed: false });
    const statsWas = values['prog-stats'] ? readFileSync(STATS_SYSCTL, 'utf8').trim() : undefined;
    if (statsWas !== undefined) writeFileSync(STATS_SYSCTL, '1');
    restore.push(() => statsWas !== undefined && writeFileSync(STATS_SYSCTL, statsWas));
    const en = new Enrolment(dp);
    en.enrol({ uid: enrolled.uid, netnsPath: enrolled.netnsPath, addresses: [enrolled.ip4] });
    let events = 0;
    const reader = dp.readEvents((e) => (events += e.length));
    const run: Record<Scenario, () => Promise<Sample>> = {
      baseline: () => measureOutside(plain, outside),
      bystander: () => measure(topo, plain, '127.0.0.1'),
      captured: () => measure(topo, enrolled, target.ip4, 8080),
      'baseline-ip': () => measureOutside(plain, outside, plain.ip4),
      observed: () => measure(topo, plain, plain.ip4),
    };
    const scenarios = Object.keys(run) as Scenario[];
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < scenarios.length; i++) {
        const s = scenarios[(r + i) % scenarios.length]!;
        samples[s].push(await run[s]());
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    reader.close();

    const progStats = Object.fromEntries(
      (['mesh_connect4', 'mesh_sockops'] as const).map((name) => {
        const info = native().progInfo(dp!.programFd(name));
        const avg = info.runCount > 0n ? Number(info.runTimeNs) / Number(info.runCount) : Number.NaN;
        return [name, { runs: String(info.runCount), avgNs: Math.round(avg) }];
      }),
    );
    const summary = summarize(samples);
    const report = {
      date: new Date().toISOString(),
      kernel: (await import('node:os')).release(),
      connectsPerRound: CONNECTS,
      rounds: ROUNDS,
      summary,
      eventsDelivered: events,
      eventsLost: String(dp.eventsLost()),
      ...(values['prog-stats'] ? { progStats } : {}),
      samples,
    };
    mkdirSync(new URL('results/', import.meta.url), { recursive: true });
    const file = new URL(`results/capture-${report.date.replace(/[:.]/g, '-')}.json`, import.meta.url);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    print(summary, events, dp.eventsLost());
    if (values['prog-stats']) console.log('programs (avg ns per run, bystander + captured):', JSON.stringify(progStats));
    console.log(`\nfull results: ${fileURLToPath(file)}`);
  } finally {
    for (const r of restore) r();
    dp?.close();
    Datapath.uninstall(env.bpffs);
    await env.destroy();
  }
}

async function serve(topo: Awaited<ReturnType<typeof createScratch>>['topo'], pod: PodNet, host = '127.0.0.1'): Promise<void> {
  const child = topo.spawn(pod, TOOL, ['serve', host, '15001'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await once(child.stdout!, 'data');
}

async function measure(
  topo: Awaited<ReturnType<typeof createScratch>>['topo'],
  pod: PodNet,
  host: string,
  port = 15001,
): Promise<Sample> {
  const r = await topo.exec(pod, TOOL, ['connect', host, String(port), String(CONNECTS)], {
    timeoutMs: 120_000,
  });
  // Exit 1 means some connects failed; they are counted in the sample and reported.
  if (r.code !== 0 && r.code !== 1)
    throw new Error(`connect_bench in ${pod.netns} failed (${r.code}): ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as Sample;
}

/** Like measure(), but with the client in `cgroup` instead of the pod's own cgroup. */
async function measureOutside(pod: PodNet, cgroup: string, host = '127.0.0.1'): Promise<Sample> {
  const enter = 'echo $$ > "$1" && shift && exec ip netns exec "$@"';
  const args = ['-c', enter, 'sh', `${cgroup}/cgroup.procs`, pod.netns, TOOL, 'connect', host, '15001', String(CONNECTS)];
  const r = await execFileP('sh', args, { timeout: 120_000 }).catch((e: { stdout?: string; code?: number }) => {
    if (e.code === 1 && e.stdout) return { stdout: e.stdout }; // some connects failed: counted
    throw e;
  });
  return JSON.parse(r.stdout) as Sample;
}

function summarize(samples: Record<Scenario, Sample[]>) {
  const agg = (xs: Sample[]) => {
    const med = (f: (s: Sample) => number) => {
      const v = xs.map(f).sort((a, b) => a - b);
      return v[Math.floor(v.length / 2)] ?? Number.NaN;
    };
    return {
      rate: med((s) => s.rate),
      p50_us: med((s) => s.p50_us),
      p99_us: med((s) => s.p99_us),
      failed: xs.reduce((a, s) => a + s.failed, 0),
    };
  };
  const base = agg(samples.baseline);
  const baseIp = agg(samples['baseline-ip']);
  const out: Record<
    string,
    ReturnType<typeof agg> & { rate_ratio: number; p50_ratio: number; p99_ratio: number }
  > = {};
  for (const [name, xs] of Object.entries(samples)) {
    const a = agg(xs);
    // Each scenario against the baseline that connects to the same kind of address.
    const b = name === 'observed' || name === 'baseline-ip' ? baseIp : base;
    out[name] = {
      ...a,
      rate_ratio: a.rate / b.rate,
      p50_ratio: a.p50_us / b.p50_us,
      p99_ratio: a.p99_us / b.p99_us,
    };
  }
  return out;
}

function print(summary: ReturnType<typeof summarize>, events: number, lost: bigint): void {
  console.log(`connect() from a pod, ${CONNECTS} per round × ${ROUNDS} rounds (median of rounds)\n`);
  console.log('scenario     connects/s   ×base   p50 µs   ×base   p99 µs   ×base   failed   (observed: ×baseline-ip)');
  for (const [name, s] of Object.entries(summary)) {
    console.log(
      `${name.padEnd(11)} ${s.rate.toFixed(0).padStart(11)} ${s.rate_ratio.toFixed(2).padStart(7)} ${s.p50_us.toFixed(1).padStart(8)} ${s.p50_ratio.toFixed(2).padStart(7)} ${s.p99_us.toFixed(1).padStart(8)} ${s.p99_ratio.toFixed(2).padStart(7)} ${String(s.failed).padStart(8)}`,
    );
  }
  console.log(`\nring-buffer events delivered: ${events}, lost: ${lost}`);
}

await main();

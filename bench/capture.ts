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
//   npm run bench -- [--connects N] [--rounds R] [--prog-stats] [--flows] [--batch-ms MS]
// --prog-stats turns on kernel.bpf_stats_enabled for the run (restored after) and reports, per
// scenario, the time the programs spent per connect (run_time_ns / connects, connect4 and sockops
// apart): the eBPF part of capture, without the loopback hop and without the event reader.
// --flows hands the events to the agent's FlowCollector (one plaintext flow per observed connection,
// into a FlowRing), so that the reader's CPU column counts what the agent does with them.
// --batch-ms sets the event reader's pause after each batch (Datapath.readEvents; 0 = a wakeup
// per event, as before the pause existed).
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Enrolment } from '../src/agent/index.ts';
import { FlowCollector } from '../src/agent/flows.ts';
import { FlowRing } from '../src/flows/ring.ts';
import { Datapath, EVENT_BATCH_MS, native } from '../src/datapath/index.ts';
import type { PodNet } from '../src/local/index.ts';
import { createScratch, uniquePrefix } from '../test/helpers/topology.ts';

const execFileP = promisify(execFile);
const TOOL = fileURLToPath(new URL('.output/connect_bench', import.meta.url));
const { values } = parseArgs({
  options: {
    connects: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '5' },
    'prog-stats': { type: 'boolean', default: false },
    flows: { type: 'boolean', default: false },
    'batch-ms': { type: 'string', default: String(EVENT_BATCH_MS) },
  },
});
const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';
const CONNECTS = Number(values.connects);
const ROUNDS = Number(values.rounds);
const SETTLE_MS = 300;

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
  /** The client's CPU time per connect (user + system), µs. */
  cpu_us: number;
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
    const flowRing = new FlowRing();
    const collector = values.flows ? new FlowCollector({ ring: flowRing, nodeName: 'a', resolve: () => undefined }) : undefined;
    const reader = dp.readEvents(
      (e) => {
        events += e.length;
        collector?.onKernelEvents(e);
      },
      100,
      Number(values['batch-ms']),
    );
    // Program time per scenario: run_time_ns and run_cnt before and after each sample.
    const progs = ['mesh_connect4', 'mesh_sockops'] as const;
    const progTotals = () => progs.map((name) => native().progInfo(dp!.programFd(name)));
    const progTime: Record<Scenario, { connects: number; ns: [bigint, bigint]; runs: [bigint, bigint]; readerCpuUs: number; mainCpuUs: number }> = Object.fromEntries(
      (Object.keys(samples) as Scenario[]).map((s) => [s, { connects: 0, ns: [0n, 0n], runs: [0n, 0n], readerCpuUs: 0, mainCpuUs: 0 }]),
    ) as never;
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
        const before = progTotals();
        const cpuBefore = process.cpuUsage();
        const mainBefore = process.threadCpuUsage();
        const sample = await run[s]();
        const after = progTotals();
        samples[s].push(sample);
        // The listener accepts (and resets) behind the client's connects: let it finish before
        // the next scenario starts, or its backlog steals the CPU from whichever comes next.
        await new Promise((r) => setTimeout(r, SETTLE_MS));
        const cpu = process.cpuUsage(cpuBefore);
        const main = process.threadCpuUsage(mainBefore);
        const t = progTime[s];
        t.readerCpuUs += cpu.user + cpu.system;
        t.mainCpuUs += main.user + main.system;
        t.connects += sample.n;
        for (let p = 0; p < progs.length; p++) {
          t.ns[p]! += after[p]!.runTimeNs - before[p]!.runTimeNs;
          t.runs[p]! += after[p]!.runCount - before[p]!.runCount;
        }
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    reader.close();

    // ns per connect: everything the programs did for it (the client's and the listener's sockets).
    const progStats = Object.fromEntries(
      scenarios.map((sc) => {
        const t = progTime[sc];
        const per = (p: number) => Math.round(Number(t.ns[p]) / t.connects);
        return [
          sc,
          {
            connect4_ns: per(0),
            sockops_ns: per(1),
            total_ns: per(0) + per(1),
            sockops_runs_per_connect: Number(t.runs[1]) / t.connects,
            reader_cpu_ns: Math.round((t.readerCpuUs * 1000) / t.connects),
            main_thread_cpu_ns: Math.round((t.mainCpuUs * 1000) / t.connects),
          },
        ];
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
      ...(collector ? { flows: flowRing.seenFlows, flowsPending: collector.pending() } : {}),
      batchMs: Number(values['batch-ms']),
      ...(values['prog-stats'] ? { progStats } : {}),
      samples,
    };
    mkdirSync(new URL('results/', import.meta.url), { recursive: true });
    const file = new URL(`results/capture-${report.date.replace(/[:.]/g, '-')}.json`, import.meta.url);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    print(summary, events, dp.eventsLost());
    if (collector) console.log(`flows made: ${flowRing.seenFlows}, still pending: ${JSON.stringify(collector.pending())}`);
    if (values['prog-stats']) {
      console.log('\neBPF time per connect (bpf_stats run_time_ns / connects), ns:');
      console.log('scenario      connect4    sockops      total   sockops runs/connect   reader+bench CPU   of it JS thread');
      for (const [name, p] of Object.entries(progStats)) {
        console.log(
          `${name.padEnd(11)} ${String(p.connect4_ns).padStart(10)} ${String(p.sockops_ns).padStart(10)} ${String(p.total_ns).padStart(10)} ${p.sockops_runs_per_connect.toFixed(1).padStart(22)} ${String(p.reader_cpu_ns).padStart(18)} ${String(p.main_thread_cpu_ns).padStart(17)}`,
        );
      }
      console.log('(reader+bench CPU: this process — the event reader thread, decoding, --flows and the bench itself —, ns per connect; of it JS thread: its main thread alone)');
    }
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
  const median = (v: number[]) => {
    const sorted = [...v].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
  };
  const agg = (xs: Sample[]) => {
    const med = (f: (s: Sample) => number) => median(xs.map(f));
    return {
      rate: med((s) => s.rate),
      p50_us: med((s) => s.p50_us),
      p90_us: med((s) => s.p90_us),
      p99_us: med((s) => s.p99_us),
      cpu_us: med((s) => s.cpu_us),
      failed: xs.reduce((a, s) => a + s.failed, 0),
    };
  };
  // Ratios are taken round by round (a round runs every scenario back to back, so a burst of
  // other load on the machine hits a scenario and its baseline alike), then the median of them.
  const ratio = (xs: Sample[], bs: Sample[], f: (s: Sample) => number) => median(xs.map((x, i) => f(x) / f(bs[i]!)));
  const out: Record<
    string,
    ReturnType<typeof agg> & { rate_ratio: number; p50_ratio: number; p90_ratio: number; p99_ratio: number; cpu_ratio: number }
  > = {};
  for (const [name, xs] of Object.entries(samples)) {
    // Each scenario against the baseline that connects to the same kind of address.
    const bs = name === 'observed' || name === 'baseline-ip' ? samples['baseline-ip'] : samples.baseline;
    out[name] = {
      ...agg(xs),
      rate_ratio: ratio(xs, bs, (s) => s.rate),
      p50_ratio: ratio(xs, bs, (s) => s.p50_us),
      p90_ratio: ratio(xs, bs, (s) => s.p90_us),
      p99_ratio: ratio(xs, bs, (s) => s.p99_us),
      cpu_ratio: ratio(xs, bs, (s) => s.cpu_us),
    };
  }
  return out;
}

function print(summary: ReturnType<typeof summarize>, events: number, lost: bigint): void {
  console.log(`connect() from a pod, ${CONNECTS} per round × ${ROUNDS} rounds (median of rounds; ×base: median of per-round ratios)\n`);
  console.log('scenario     connects/s   ×base   p50 µs   ×base   p90 µs   ×base   p99 µs   ×base   failed   cpu µs   ×base   (observed: ×baseline-ip)');
  for (const [name, s] of Object.entries(summary)) {
    const col = (v: number, r: number) => `${v.toFixed(1).padStart(8)} ${r.toFixed(2).padStart(7)}`;
    console.log(
      `${name.padEnd(11)} ${s.rate.toFixed(0).padStart(11)} ${s.rate_ratio.toFixed(2).padStart(7)} ${col(s.p50_us, s.p50_ratio)} ${col(s.p90_us, s.p90_ratio)} ${col(s.p99_us, s.p99_ratio)} ${String(s.failed).padStart(8)} ${s.cpu_us.toFixed(2).padStart(8)} ${s.cpu_ratio.toFixed(2).padStart(7)}`,
    );
  }
  console.log(`\nring-buffer events delivered: ${events}, lost: ${lost}`);
}

await main();

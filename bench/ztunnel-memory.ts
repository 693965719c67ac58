// ztunnel's memory (issue 16): resident memory idle, at 1,000 rps of 1 KB HTTP, and while it holds
// N concurrent connections (default 10,000) pod to pod across two nodes — beside, in the same run,
// the floor any Node 24 process costs here (a bare `node` idling) and the same loads without the
// mesh (latency at 1,000 rps; connections held). A two-node local cluster: root, and run it under
// the netns lock. Bounded: 2 × 2 × --seconds of load (1,000 rps, then wrk saturation), one hold of
// --conns connections, per namespace.
//   node bench/ztunnel-memory.ts [--conns 10000] [--seconds 10] [--node-options=--max-semi-space-size=2]
//     [--ztunnel-env=MALLOC_ARENA_MAX=1] [--from-source]
// --node-options runs the ztunnels with those Node/V8 flags (on their command line) in place of
// their own (ZTUNNEL_NODE_FLAGS, src/ztunnel/config.ts); `--node-options=--max-semi-space-size=0` is V8's
// default heap. Run once with and once without, and compare each run's mesh figures against its
// own no-mesh baseline. --ztunnel-env (K=V, comma-separated; `K=` leaves K unset) likewise
// replaces ztunnel's own process environment (ZTUNNEL_PROCESS_ENV), e.g. glibc's malloc tunables.
// --from-source runs ztunnel from src/ztunnel/main.ts instead of its bundle (ZTUNNEL_ENTRY).
// RSS counts the pages of the Node binary that a process touched (file-backed, shared with every
// other Node process on the node); RssAnon is what the process itself allocated. Both are printed.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type * as k8s from '@kubernetes/client-node';
import { startMesh, waitFor } from '../test/helpers/mesh.ts';
import { uniquePrefix } from '../test/helpers/topology.ts';
import { ZTUNNEL_ENTRY, ZTUNNEL_NODE_FLAGS, ZTUNNEL_PROCESS_ENV } from '../src/ztunnel/config.ts';
import { heyPercentiles, runPod } from './lib.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, conns: { type: 'string', default: '10000' }, 'node-options': { type: 'string', default: '' }, 'ztunnel-env': { type: 'string' }, 'from-source': { type: 'boolean', default: false } } });
const SECONDS = Number(values.seconds);
const CONNS = Number(values.conns);
const NODE = process.execPath;
const ZTUNNEL_ENV = values['ztunnel-env'] === undefined ? undefined : Object.fromEntries(values['ztunnel-env'].split(',').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const envText = (e: Readonly<Record<string, string>>) => Object.entries(e).map(([k, v]) => (v ? `${k}=${v}` : `${k} unset`)).join(' ') || 'none';
const WEB = `const body = Buffer.alloc(1024, 'x'); require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.end(body)); }).listen(8080);`;
// Answers each connection once and keeps it open.
const HOLDER = `require('node:net').createServer((s) => { s.on('error', () => {}); s.once('data', () => s.write('ok')); }).listen(9090);`;
// Opens N connections, 250 at a time (each answered before the next batch), holds them for
// HOLD_MS, then says how many are still open.
const CLIENT = `
const net = require('node:net');
const [host, n, holdMs] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const socks = []; let ok = 0, failed = 0;
const one = () => new Promise((done) => {
  const s = net.connect(9090, host);
  socks.push(s);
  s.setTimeout(30000, () => { failed++; s.destroy(); done(); });
  s.on('connect', () => s.write('hi'));
  s.once('data', () => { ok++; s.setTimeout(0); done(); });
  s.on('error', () => { failed++; done(); });
});
(async () => {
  const t0 = Date.now();
  for (let i = 0; i < n; i += 250) await Promise.all(Array.from({ length: Math.min(250, n - i) }, one));
  console.log('held', ok, 'failed', failed, 'ms', Date.now() - t0);
  setTimeout(() => { console.log('alive', socks.filter((s) => !s.destroyed && s.readyState === 'open').length); process.exit(0); }, holdMs);
})();
`;

interface Mem {
  rssMb: number;
  anonMb: number;
  fileMb: number;
  threads: number;
}
function mem(pid: number): Mem {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) / 1024;
  return { rssMb: kb('VmRSS'), anonMb: kb('RssAnon'), fileMb: kb('RssFile'), threads: Number(/^Threads:\s+(\d+)/m.exec(status)?.[1]) };
}
/**
 * Where a process's resident pages are, from /proc/PID/smaps: the Node binary, other files (libc,
 * the addon), glibc's main heap ([heap]), thread stacks and the anonymous mappings (V8's heap and
 * code, other threads' malloc arenas), in MB.
 */
function smapsSplit(pid: number): string {
  const by = new Map<string, number>();
  let name = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const path = head[1]!;
      name = path === '' ? 'anon' : path === process.execPath || path.endsWith('/node') ? 'node binary' : path.startsWith('[stack') ? 'stack' : path.startsWith('[') ? path : 'other files';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) by.set(name, (by.get(name) ?? 0) + Number(rss[1]) / 1024);
  }
  return [...by].filter(([, mb]) => mb >= 0.05).sort((a, b) => b[1] - a[1]).map(([k, mb]) => `${k} ${mb.toFixed(1)}`).join(', ');
}
/** CPU seconds a process has used (user + system). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(stat[11]) + Number(stat[12])) / 100;
}
const fmt = (m: Mem) => `${m.rssMb.toFixed(1)} MB (anon ${m.anonMb.toFixed(1)}, file ${m.fileMb.toFixed(1)}, ${m.threads} threads)`;

/** The largest RSS of `pids` seen every 250 ms while `work` runs. */
async function peakDuring<T>(pids: number[], work: Promise<T>): Promise<{ value: T; peak: Mem[] }> {
  const peak = pids.map(mem);
  let done = false;
  const sampler = (async () => {
    while (!done) {
      pids.forEach((p, i) => {
        const m = mem(p);
        if (m.rssMb > peak[i]!.rssMb) peak[i] = m;
      });
      await sleep(250);
    }
  })();
  try {
    return { value: await work, peak };
  } finally {
    done = true;
    await sampler;
  }
}

async function main(): Promise<void> {
  const cleanups: (() => Promise<void> | void)[] = [];
  try {
    // The floor: what an idle Node 24 process with no code of ours is resident in, here and now.
    const bare = spawn(NODE, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    await sleep(1500);
    const floor = mem(bare.pid!);
    bare.kill();

    const mesh = await startMesh({ teardown: (fn) => cleanups.push(fn) }, { ztunnel: true, prefix: uniquePrefix().replace(/^mt/, 'mz'), ztunnelNodeOptions: values['node-options'], ...(ZTUNNEL_ENV ? { ztunnelEnv: ZTUNNEL_ENV } : {}), ztunnelFromSource: values['from-source'] });
    const zpids = () => ['ztunnel-node1', 'ztunnel-node2'].map((k) => mesh.processes.get(k)!.pid!);
    const results: Record<string, Record<string, number | string>> = {};
    for (const [ns, ambient] of [['plain', false], ['meshed', true]] as const) {
      await mesh.core.createNamespace({ body: { metadata: { name: ns, labels: ambient ? { 'mesh.io/dataplane-mode': 'ambient' } : {} } } });
      for (const [name, cmd] of [['web', [NODE, '-e', WEB]], ['holder', [NODE, '-e', HOLDER]]] as const) {
        await mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { nodeName: 'node1', containers: [{ name: 'main', image: 'unused', command: [...cmd] }] } } as k8s.V1Pod });
      }
      const ip = async (name: string) =>
        waitFor(`${ns}/${name}`, async () => {
          const p = await mesh.core.readNamespacedPod({ name, namespace: ns });
          return p.status?.phase === 'Running' && p.status.podIP ? p.status.podIP : undefined;
        });
      const [web, holder] = [await ip('web'), await ip('holder')];
      if (ambient) await waitFor('servers enrolled', () => ((mesh.logs.get('ztunnel-node1') ?? '').includes(`"pod":"${ns}/holder"`) ? true : undefined));
      await sleep(3000);
      const idle = zpids().map(mem);
      const idleSplit = zpids().map(smapsSplit);
      const cpu0 = zpids().map(cpuSeconds);
      const t0 = Date.now();
      const rate = await peakDuring(zpids(), runPod(mesh, ns, 'fixed', 'node2', ['hey', '-z', `${SECONDS}s`, '-c', '8', '-q', '125', `http://${web}:8080/`], SECONDS));
      const fixed = heyPercentiles(rate.value);
      const rateSplit = zpids().map(smapsSplit);
      const rateCores = zpids().reduce((a, p, i) => a + cpuSeconds(p) - cpu0[i]!, 0) / ((Date.now() - t0) / 1000);
      // Saturation (wrk, 32 connections): what a heap setting may cost in throughput. The ztunnels'
      // CPU per request there is the steadier measure on a shared machine: rps moves with the
      // neighbours' load, the work each request costs much less.
      const satCpu0 = zpids().map(cpuSeconds);
      const sat = await peakDuring(zpids(), runPod(mesh, ns, 'wrk', 'node2', ['wrk', '-t2', '-c32', `-d${SECONDS}s`, `http://${web}:8080/`], SECONDS));
      const satRps = Number(/Requests\/sec:\s+([\d.]+)/.exec(sat.value)?.[1]);
      const satRequests = Number(/(\d+) requests in/.exec(sat.value)?.[1]);
      const satCpuUs = (zpids().reduce((a, p, i) => a + cpuSeconds(p) - satCpu0[i]!, 0) / satRequests) * 1e6;
      const holdMs = 5000;
      const hold = await peakDuring(zpids(), runPod(mesh, ns, 'hold', 'node2', [NODE, '-e', CLIENT, holder, String(CONNS), String(holdMs)], 120));
      const held = /held (\d+) failed (\d+) ms (\d+)/.exec(hold.value);
      const alive = /alive (\d+)/.exec(hold.value);
      if (!held || !alive) throw new Error(`the holding client printed no counts:\n${hold.value.slice(-1500)}`);
      results[ns] = {
        idle_rss_mb: Math.max(...idle.map((m) => m.rssMb)),
        idle_anon_mb: Math.max(...idle.map((m) => m.anonMb)),
        rate_peak_rss_mb: Math.max(...rate.peak.map((m) => m.rssMb)),
        rate_peak_anon_mb: Math.max(...rate.peak.map((m) => m.anonMb)),
        p50_ms: fixed.p50,
        p99_ms: fixed.p99,
        rate_errors: fixed.errors,
        rate_ztunnel_cores: rateCores,
        wrk_rps: satRps,
        wrk_ztunnel_cpu_us_per_request: satCpuUs,
        wrk_peak_rss_mb: Math.max(...sat.peak.map((m) => m.rssMb)),
        wrk_peak_anon_mb: Math.max(...sat.peak.map((m) => m.anonMb)),
        held: Number(held[1]),
        hold_failed: Number(held[2]),
        hold_open_ms: Number(held[3]),
        still_open_after_hold: Number(alive[1]),
        hold_peak_rss_mb: Math.max(...hold.peak.map((m) => m.rssMb)),
        hold_peak_anon_mb: Math.max(...hold.peak.map((m) => m.anonMb)),
        detail: `idle ${idle.map(fmt).join(' / ')}; 1000 rps peak ${rate.peak.map(fmt).join(' / ')}; saturation peak ${sat.peak.map(fmt).join(' / ')}; holding peak ${hold.peak.map(fmt).join(' / ')} (node1 / node2)`,
        split: `idle: ${idleSplit.join(' / ')}; after 1000 rps: ${rateSplit.join(' / ')} (node1 / node2, MB)`,
      };
    }
    const p = results.plain!;
    const m = results.meshed!;
    const n = (v: number | string | undefined) => Number(v).toFixed(1);
    console.log(`\nztunnel memory, ${SECONDS} s at 1,000 rps, ${CONNS} connections held (${new Date().toISOString()})`);
    console.log(`ztunnel runs: ${values['from-source'] ? 'src/ztunnel/main.ts (--from-source)' : ZTUNNEL_ENTRY}`);
    console.log(`ztunnel Node flags: ${values['node-options'] || `${ZTUNNEL_NODE_FLAGS.join(' ')} (its own)`}`);
    console.log(`ztunnel process env: ${ZTUNNEL_ENV ? envText(ZTUNNEL_ENV) : `${envText(ZTUNNEL_PROCESS_ENV)} (its own)`}`);
    console.log(`floor: a bare Node ${process.version} process idling: ${fmt(floor)}`);
    console.log(`ztunnel idle (max of two nodes):         ${n(m.idle_rss_mb)} MB RSS, ${n(m.idle_anon_mb)} MB anon   (target ≤ 50 MB; ${(Number(m.idle_rss_mb) / floor.rssMb).toFixed(2)}× the floor)`);
    console.log(`ztunnel at 1,000 rps (peak):             ${n(m.rate_peak_rss_mb)} MB RSS, ${n(m.rate_peak_anon_mb)} MB anon   (target ≤ 80 MB)`);
    console.log(`  1 KB @1000 rps p50/p99: no mesh ${n(p.p50_ms)}/${n(p.p99_ms)} ms, mesh ${n(m.p50_ms)}/${n(m.p99_ms)} ms; errors ${p.rate_errors} / ${m.rate_errors}`);
    console.log(`  ztunnels' CPU at 1,000 rps (both): ${Number(m.rate_ztunnel_cores).toFixed(3)} cores`);
    console.log(`saturation (wrk -c32): no mesh ${Number(p.wrk_rps).toFixed(0)} rps, mesh ${Number(m.wrk_rps).toFixed(0)} rps (×${(Number(m.wrk_rps) / Number(p.wrk_rps)).toFixed(2)}); ztunnel peak ${n(m.wrk_peak_rss_mb)} MB RSS, ${n(m.wrk_peak_anon_mb)} MB anon; ztunnels' CPU ${n(m.wrk_ztunnel_cpu_us_per_request)} µs per request (both)`);
    console.log(`connections held: no mesh ${p.held} (failed ${p.hold_failed}, open after ${5} s: ${p.still_open_after_hold}), mesh ${m.held} (failed ${m.hold_failed}, open after 5 s: ${m.still_open_after_hold}); opened in ${p.hold_open_ms} / ${m.hold_open_ms} ms`);
    console.log(`ztunnel while holding them (peak):       ${n(m.hold_peak_rss_mb)} MB RSS, ${n(m.hold_peak_anon_mb)} MB anon`);
    console.log(`meshed: ${m.detail}`);
    console.log(`meshed, resident by mapping: ${m.split}`);
    console.log(JSON.stringify({ floor, results }));
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}

await main();

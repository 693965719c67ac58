// HTTP through a waypoint against L4 only and against no mesh, in one run, on a two-node local
// cluster (root): the client on node2, the server on node1, and in the L7 phase the waypoint
// (its own pod, on node1) between them — client ztunnel → waypoint → server ztunnel. 1 KB bodies
// at a fixed 1,000 rps (latency percentiles) and at saturation (wrk), and the waypoint's CPU and
// RSS beside Istio's published figure for its waypoint (0.25 vCPU and 60 MB at 1,000 rps).
//   node bench/waypoint.ts [--seconds 10] [--phases plain,l4,l7] [--flags '--max-semi-space-size=2']
//     [--env MALLOC_ARENA_MAX=] [--cpu-prof DIR]
//
// --phases runs only those (the L7/L4 and L7/none ratios need all three). --flags replaces the
// waypoint's Node/V8 flags (WAYPOINT_NODE_FLAGS, src/waypoint/config.ts; '' = V8's defaults) and
// --env adds to its process environment (WAYPOINT_PROCESS_ENV; `KEY=` unsets one), to weigh a
// setting. --cpu-prof writes a V8 CPU profile of the waypoint over the L7 phase's load into DIR
// (print its hot spots with `node bench/profile-summary.ts DIR/*.cpuprofile`). Beside the phase's
// vCPU at 1,000 rps, the waypoint's CPU per request at saturation is printed: the steadier figure
// on a loaded host.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type * as k8s from '@kubernetes/client-node';
import { podCgroupFor } from '../src/local/runtime/cluster.ts';
import { startMesh, waitFor } from '../test/helpers/mesh.ts';
import { heyPercentiles, runPod } from './lib.ts';
import { uniquePrefix } from '../test/helpers/topology.ts';
import { fileURLToPath } from 'node:url';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    phases: { type: 'string', default: 'plain,l4,l7' },
    flags: { type: 'string' },
    env: { type: 'string', multiple: true, default: [] },
    'cpu-prof': { type: 'string' },
  },
});
const SECONDS = Number(values.seconds);
const PHASES = new Set(values.phases.split(','));
const PROFILE_IN_POD = '/var/run/mesh-controller/cpu-prof';
const NODE = process.execPath;
const GATEWAY_API = fileURLToPath(new URL('../daemonset/chart/files/gateway-api-crds.yaml', import.meta.url));
const SERVER = `const body = Buffer.alloc(1024, 'x'); require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.end(body)); }).listen(8080);`;

/** The pids in a cgroup tree (the waypoint's pod). */
function cgroupPids(dir: string): number[] {
  const pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) pids.push(...cgroupPids(join(dir, e.name)));
  return pids;
}

/** CPU seconds, resident MB and anonymous resident MB of the processes in a cgroup tree. */
function cgroupUsage(dir: string): { cpuSeconds: number; rssMb: number; anonMb: number } {
  const usec = Number(/usage_usec (\d+)/.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'))?.[1] ?? 0);
  let rss = 0;
  let anon = 0;
  for (const pid of cgroupPids(dir)) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      rss += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
      anon += Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
    } catch {
      /* gone */
    }
  }
  return { cpuSeconds: usec / 1e6, rssMb: rss / 2 ** 20, anonMb: anon / 2 ** 20 };
}

/** The waypoint's node process in its pod: pid, command line and the MALLOC_/NODE_ part of its environment. */
function waypointProcess(dir: string): { pid: number; cmdline: string; env: string } | undefined {
  for (const pid of cgroupPids(dir)) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
      if (!cmdline.includes('waypoint/main.ts')) continue;
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((e) => /^(MALLOC_|NODE_OPTIONS)/.test(e)).join(' ');
      return { pid, cmdline, env };
    } catch {
      /* gone */
    }
  }
  return undefined;
}

async function main(): Promise<void> {
  const cleanups: (() => Promise<void> | void)[] = [];
  try {
    const profile = values['cpu-prof'];
    const waypointEnv: Record<string, string> = Object.fromEntries(values.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    // A profile is written when the process exits: SIGTERM with no drain ends it at once.
    if (profile) Object.assign(waypointEnv, { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${PROFILE_IN_POD}`, MESH_DRAIN_DELAY: '0s', MESH_DRAIN_TIMEOUT: '1s' });
    const mesh = await startMesh(
      { teardown: (fn) => cleanups.push(fn) },
      {
        ztunnel: true,
        prefix: uniquePrefix().replace(/^mt/, 'mw'),
        ...(values.flags !== undefined ? { waypointNodeFlags: values.flags.split(' ').filter(Boolean) } : {}),
        ...(Object.keys(waypointEnv).length ? { waypointEnv } : {}),
      },
    );
    await mesh.kubectl('apply', '-f', GATEWAY_API);
    const results: Record<string, Record<string, number>> = {};
    for (const [ns, mode] of [['plain', 'none'], ['l4', 'ambient'], ['l7', 'waypoint']] as const) {
      if (!PHASES.has(ns)) continue;
      await mesh.core.createNamespace({ body: { metadata: { name: ns, labels: mode === 'none' ? {} : { 'mesh.io/dataplane-mode': 'ambient' } } } });
      await mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'web', labels: { app: 'web' } }, spec: { nodeName: 'node1', containers: [{ name: 'main', image: 'local', command: [NODE, '-e', SERVER] }] } } as k8s.V1Pod });
      const svc = await mesh.core.createNamespacedService({ namespace: ns, body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 as unknown as k8s.IntOrString }] } } });
      const url = `http://${svc.spec!.clusterIP}/`;
      let waypoint: string | undefined;
      if (mode === 'waypoint') {
        const f = join(mesh.stateDir, 'waypoint.yaml');
        writeFileSync(f, `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: ${ns}}\nspec:\n  gatewayClassName: mesh-waypoint\n  listeners:\n  - {name: mesh, port: 15008, protocol: HBONE}\n`);
        await mesh.kubectl('apply', '-f', f);
        await mesh.kubectl('label', 'namespace', ns, 'mesh.io/use-waypoint=waypoint');
        await waitFor('the waypoint to be Programmed', async () => {
          const { stdout } = await mesh.kubectl('get', 'gateway', '-n', ns, 'waypoint', '-o', 'jsonpath={.status.conditions[?(@.type=="Programmed")].status}');
          return stdout === 'True' ? true : undefined;
        }, 60_000);
        const { stdout } = await mesh.kubectl('get', 'pod', '-n', ns, '-l', 'gateway.networking.k8s.io/gateway-name=waypoint', '-o', 'jsonpath={.items[0].metadata.uid} {.items[0].spec.nodeName}');
        const [uid, node] = stdout.trim().split(' ') as [string, string];
        waypoint = join(podCgroupFor(mesh.prefix, node), `pod${uid}`);
        // The first requests prove the path (and warm it): the waypoint answers them.
        await runPod(mesh, ns, 'warm', 'node2', ['hey', '-n', '200', '-c', '4', url], SECONDS);
      }
      await new Promise((r) => setTimeout(r, 1000));
      const before = waypoint ? cgroupUsage(waypoint) : undefined;
      const t0 = Date.now();
      // 25 workers at 40 rps each: a hey worker sends its next request only once the last one is
      // answered, and through the waypoint 8 workers at 125 rps (8 ms a request) fell behind —
      // 5,000–8,500 of the 10,000 requests (2026-12-08).
      const fixed = heyPercentiles(await runPod(mesh, ns, 'fixed', 'node2', ['hey', '-z', `${SECONDS}s`, '-c', '25', '-q', '40', url], SECONDS));
      const fixedWall = (Date.now() - t0) / 1000;
      const atRate = waypoint ? cgroupUsage(waypoint) : undefined;
      const wrk = await runPod(mesh, ns, 'wrk', 'node2', ['wrk', '-t2', '-c32', `-d${SECONDS}s`, '--latency', url], SECONDS);
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(wrk)?.[1]);
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(wrk)?.[1] ?? 0);
      const saturated = waypoint ? cgroupUsage(waypoint) : undefined;
      const proc = waypoint ? waypointProcess(waypoint) : undefined;
      if (proc) console.log(`waypoint process ${proc.pid}: ${proc.cmdline}${proc.env ? ` (${proc.env})` : ''}`);
      if (waypoint && profile && proc) {
        process.kill(proc.pid, 'SIGTERM');
        await waitFor('the profiled waypoint to exit', async () => (existsSync(`/proc/${proc.pid}`) ? undefined : true), 30_000);
        const dir = join(mesh.stateDir, 'controller-sockets', 'cpu-prof');
        mkdirSync(profile, { recursive: true });
        for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(profile, f));
        console.log(`waypoint CPU profile: ${profile} — node bench/profile-summary.ts ${profile}/*.cpuprofile`);
      }
      results[ns] = {
        p50_ms: fixed.p50,
        p90_ms: fixed.p90,
        p99_ms: fixed.p99,
        fixed_ok: fixed.n,
        fixed_errors: fixed.errors,
        wrk_rps: rps,
        wrk_non2xx: non2xx,
        ...(before && atRate && saturated
          ? {
              waypoint_cpu_cores_at_1000rps: (atRate.cpuSeconds - before.cpuSeconds) / fixedWall,
              waypoint_cpu_us_per_request_at_rate: ((atRate.cpuSeconds - before.cpuSeconds) * 1e6) / fixed.n,
              waypoint_rss_mb: atRate.rssMb,
              waypoint_anon_mb: atRate.anonMb,
              waypoint_cpu_us_per_request_saturated: ((saturated.cpuSeconds - atRate.cpuSeconds) * 1e6) / (rps * SECONDS),
              waypoint_rss_mb_saturated: saturated.rssMb,
            }
          : {}),
      };
    }
    console.log(JSON.stringify(results));
    const l7 = results.l7;
    if (l7) {
      console.log(`waypoint at 1,000 rps: ${l7.waypoint_cpu_cores_at_1000rps!.toFixed(2)} vCPU (${l7.waypoint_cpu_us_per_request_at_rate!.toFixed(0)} µs per request), ${l7.waypoint_rss_mb!.toFixed(0)} MB RSS (${l7.waypoint_anon_mb!.toFixed(0)} MB anonymous) (Istio's waypoint, published: 0.25 vCPU, 60 MB)`);
      console.log(`waypoint at saturation: ${l7.wrk_rps!.toFixed(0)} rps, ${l7.waypoint_cpu_us_per_request_saturated!.toFixed(0)} µs of CPU per request, ${l7.waypoint_rss_mb_saturated!.toFixed(0)} MB RSS`);
    }
    const [p, l4] = [results.plain, results.l4];
    if (!p || !l4 || !l7) return;
    console.log(`\nHTTP 1 KB, client node2 → server node1, ${SECONDS} s per phase (${new Date().toISOString()})`);
    console.log('                       no mesh        L4        L7 (waypoint)   L7/L4    L7/none');
    for (const k of ['p50_ms', 'p90_ms', 'p99_ms'] as const) {
      console.log(`@1000rps ${k.padEnd(12)} ${p[k]!.toFixed(2).padStart(8)} ${l4[k]!.toFixed(2).padStart(9)} ${l7[k]!.toFixed(2).padStart(12)}   ×${(l7[k]! / l4[k]!).toFixed(2).padStart(5)}   ×${(l7[k]! / p[k]!).toFixed(2)}`);
    }
    console.log(`saturation rps (wrk)  ${p.wrk_rps!.toFixed(0).padStart(8)} ${l4.wrk_rps!.toFixed(0).padStart(9)} ${l7.wrk_rps!.toFixed(0).padStart(12)}   ×${(l7.wrk_rps! / l4.wrk_rps!).toFixed(2).padStart(5)}   ×${(l7.wrk_rps! / p.wrk_rps!).toFixed(2)}`);
    console.log(`errors: fixed ${p.fixed_errors}/${l4.fixed_errors}/${l7.fixed_errors}, wrk non-2xx ${p.wrk_non2xx}/${l4.wrk_non2xx}/${l7.wrk_non2xx}`);
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}

await main();

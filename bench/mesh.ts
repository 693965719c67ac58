// Pod to pod through two ztunnels against the same kind of pods without the mesh, in one run, on a
// two-node local cluster (root): 1 KB HTTP at a fixed 1,000 rps (latency percentiles), saturation
// with wrk, a new connection per request (hey -disable-keepalive, 16 at a time: what connection
// set-up costs), bulk with iperf3, and ztunnel CPU and RSS. Prints ratios to the no-mesh baseline.
// The anchor for latency runs in the same run: the 1 KB at 1,000 rps phase between the same kind
// of pods without the mesh, through a pair of native TLS proxies (Debian's stunnel4, mutual TLS
// 1.3) — one in the client pod, one in the server pod — which is what two ztunnels stand for.
//   node bench/mesh.ts [--seconds 10] [--no-stunnel] [--phases latency,saturation,churn,bulk] [--node-options=FLAGS] [--from-source]
// --phases runs only those phases (default: all four; the stunnel anchor runs with latency only),
// e.g. `--phases saturation,churn` for connection cost alone. --node-options runs the ztunnels with
// those Node/V8 flags in place of their own (ZTUNNEL_NODE_FLAGS), to weigh a heap setting's CPU;
// --from-source runs them from src/ztunnel/main.ts instead of their bundle (ZTUNNEL_ENTRY).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type * as k8s from '@kubernetes/client-node';
import { startMesh, waitFor } from '../test/helpers/mesh.ts';
import { heyPercentiles, runPod } from './lib.ts';
import { uniquePrefix } from '../test/helpers/topology.ts';

const PHASES = ['latency', 'saturation', 'churn', 'bulk'] as const;
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, 'no-stunnel': { type: 'boolean', default: false }, phases: { type: 'string', default: PHASES.join(',') }, 'node-options': { type: 'string', default: '' }, 'from-source': { type: 'boolean', default: false } } });
const SECONDS = Number(values.seconds);
const phases = new Set(values.phases!.split(','));
for (const p of phases) if (!(PHASES as readonly string[]).includes(p)) throw new Error(`--phases: ${p} is not one of ${PHASES.join(', ')}`);
const NO_HEY = { p50: NaN, p90: NaN, p99: NaN, errors: NaN, n: 0 };
const NODE = process.execPath;
const SERVER = `const body = Buffer.alloc(1024, 'x'); require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.end(body)); }).listen(8080);`;

function cpuAndRss(pid: number): { cpuSeconds: number; userSeconds: number; sysSeconds: number; rssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const [user, sys] = [Number(stat[11]) / 100, Number(stat[12]) / 100];
  const rss = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096;
  return { cpuSeconds: user + sys, userSeconds: user, sysSeconds: sys, rssMb: rss / 2 ** 20 };
}

async function main(): Promise<void> {
  const cleanups: (() => Promise<void> | void)[] = [];
  try {
    const mesh = await startMesh({ teardown: (fn) => cleanups.push(fn) }, { ztunnel: true, prefix: uniquePrefix().replace(/^mt/, 'mb'), ...(values['node-options'] ? { ztunnelNodeOptions: values['node-options'] } : {}), ztunnelFromSource: values['from-source'] });
    const results: Record<string, Record<string, number>> = {};
    for (const [ns, ambient] of [['plain', false], ['meshed', true]] as const) {
      await mesh.core.createNamespace({ body: { metadata: { name: ns, labels: ambient ? { 'mesh.io/dataplane-mode': 'ambient' } : {} } } });
      for (const [name, cmd] of [['web', [NODE, '-e', SERVER]], ['iperf', ['iperf3', '-s']]] as const) {
        await mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { nodeName: 'node1', containers: [{ name: 'main', image: 'unused', command: [...cmd] }] } } as k8s.V1Pod });
      }
      const ip = async (name: string) =>
        waitFor(`${ns}/${name}`, async () => {
          const p = await mesh.core.readNamespacedPod({ name, namespace: ns });
          return p.status?.phase === 'Running' && p.status.podIP ? p.status.podIP : undefined;
        });
      const [web, iperf] = [await ip('web'), await ip('iperf')];
      if (ambient) await waitFor('servers enrolled', () => ((mesh.logs.get('ztunnel-node1') ?? '').includes(`"pod":"${ns}/iperf"`) ? true : undefined));
      const z = ['ztunnel-node1', 'ztunnel-node2'].map((k) => mesh.processes.get(k)!.pid!);
      const before = z.map(cpuAndRss);
      // Both ztunnels' CPU seconds so far: per phase, what each unit of work cost them. CPU time,
      // unlike rates, hardly depends on how many other processes share the cores.
      const ztCpu = () => z.map(cpuAndRss).reduce((a, u) => a + u.cpuSeconds, 0);
      const t0 = Date.now();
      const fixed = phases.has('latency') ? heyPercentiles(await runPod(mesh, ns, 'fixed', 'node2', ['hey', '-z', `${SECONDS}s`, '-c', '8', '-q', '125', `http://${web}:8080/`], SECONDS)) : NO_HEY;
      const cpuWrk0 = ztCpu();
      const wrk = phases.has('saturation') ? await runPod(mesh, ns, 'wrk', 'node2', ['wrk', '-t2', '-c32', `-d${SECONDS}s`, '--latency', `http://${web}:8080/`], SECONDS) : '';
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(wrk)?.[1]);
      const cpuWrk = ztCpu() - cpuWrk0;
      const agents = ['agent-node1', 'agent-node2'].map((k) => mesh.processes.get(k)!.pid!);
      const agentCpu = () => agents.map(cpuAndRss).reduce((a, u) => a + u.cpuSeconds, 0);
      const split0 = z.map(cpuAndRss);
      const agentChurn0 = agentCpu();
      const churnOut = phases.has('churn') ? await runPod(mesh, ns, 'churn', 'node2', ['hey', '-z', `${SECONDS}s`, '-c', '16', '-disable-keepalive', `http://${web}:8080/`], SECONDS) : '';
      const cpuChurn = ztCpu() - cpuWrk0 - cpuWrk;
      // Each ztunnel's user and kernel time per connection: the kernel's share is the sockets'
      // syscalls and, on veth and loopback, the softirq work of the packets this process sends.
      const agentChurn = agentCpu() - agentChurn0;
      const split = z.map(cpuAndRss).map((a, i) => ({ user: a.userSeconds - split0[i]!.userSeconds, sys: a.sysSeconds - split0[i]!.sysSeconds }));
      const churn = churnOut ? { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(churnOut)?.[1]), ...heyPercentiles(churnOut) } : { rps: NaN, ...NO_HEY };
      const ztBytes = async () => {
        // What the client's ztunnel carried (source reporter): the proof that the phase was meshed.
        const text = await (await fetch(`http://127.0.0.1:${mesh.ztunnelPort('node2', 'metrics')}/metrics`)).text();
        // Istio's names: received = request direction (what iperf3's client sends), sent = response.
        const bytes = (l: string) => (l.startsWith('istio_tcp_received_bytes_total{') || l.startsWith('istio_tcp_sent_bytes_total{')) && l.includes('reporter="source"');
        return text.split('\n').filter(bytes).reduce((a, l) => a + Number(l.split(' ').at(-1)), 0);
      };
      const ztBefore = await ztBytes();
      const cpuIperf0 = ztCpu();
      const iperfOut = phases.has('bulk')
        ? JSON.parse(await runPod(mesh, ns, 'iperf-client', 'node2', ['iperf3', '-c', iperf, '-t', String(Math.min(SECONDS, 10)), '-J'], SECONDS))
        : { end: { sum_received: { bits_per_second: NaN }, sum_sent: { bytes: NaN } } };
      const gbps = iperfOut.end.sum_received.bits_per_second / 1e9;
      const carried = (await ztBytes()) - ztBefore;
      const cpuIperf = ztCpu() - cpuIperf0;
      const after = z.map(cpuAndRss);
      const wall = (Date.now() - t0) / 1000;
      results[ns] = {
        p50_ms: fixed.p50,
        p90_ms: fixed.p90,
        p99_ms: fixed.p99,
        fixed_errors: fixed.errors,
        wrk_rps: rps,
        // Both ztunnels' CPU per unit of work (meaningful for the meshed phase only).
        zt_cpu_us_per_request_wrk: (cpuWrk * 1e6) / (rps * SECONDS),
        churn_rps: churn.rps,
        churn_p50_ms: churn.p50,
        churn_errors: churn.errors,
        zt_cpu_us_per_connection: (cpuChurn * 1e6) / (churn.rps * SECONDS),
        // node1's ztunnel serves the destination, node2's the source (the clients run on node2).
        // The node agents' share: kernel events and ztunnel's records made into flows.
        agent_cpu_us_per_connection: (agentChurn * 1e6) / (churn.rps * SECONDS),
        zt_dst_user_us_per_connection: (split[0]!.user * 1e6) / (churn.rps * SECONDS),
        zt_dst_sys_us_per_connection: (split[0]!.sys * 1e6) / (churn.rps * SECONDS),
        zt_src_user_us_per_connection: (split[1]!.user * 1e6) / (churn.rps * SECONDS),
        zt_src_sys_us_per_connection: (split[1]!.sys * 1e6) / (churn.rps * SECONDS),
        iperf_gbps: gbps,
        zt_cpu_s_per_gb: cpuIperf / (Number(iperfOut.end.sum_sent.bytes) / 1e9),
        ztunnel_cpu_cores: (after[0]!.cpuSeconds - before[0]!.cpuSeconds + after[1]!.cpuSeconds - before[1]!.cpuSeconds) / wall,
        ztunnel_rss_mb: Math.max(after[0]!.rssMb, after[1]!.rssMb),
        // Share of iperf3's bytes that went through ztunnel (≈1 when meshed, 0 when not).
        iperf_through_ztunnel: carried / Number(iperfOut.end.sum_sent.bytes),
      };
    }
    const tls = values['no-stunnel'] || !phases.has('latency') ? undefined : await stunnelPair(mesh, (fn) => cleanups.push(fn));
    const p = results.plain!;
    const m = results.meshed!;
    console.log(`\npod to pod across nodes, ${SECONDS} s per phase (${new Date().toISOString()})`);
    console.log('                     no mesh      mesh     added / ratio');
    for (const k of phases.has('latency') ? (['p50_ms', 'p90_ms', 'p99_ms'] as const) : []) {
      const anchor = tls ? `   (stunnel pair ${tls[k].toFixed(3)}: +${(tls[k] - p[k]!).toFixed(3)} ms)` : '';
      console.log(`1 KB @1000rps ${k.padEnd(7)} ${p[k]!.toFixed(3).padStart(8)} ${m[k]!.toFixed(3).padStart(9)}   +${(m[k]! - p[k]!).toFixed(3)} ms${anchor}`);
    }
    if (phases.has('saturation')) console.log(`saturation (wrk)     ${p.wrk_rps!.toFixed(0).padStart(8)} ${m.wrk_rps!.toFixed(0).padStart(9)}   ×${(m.wrk_rps! / p.wrk_rps!).toFixed(2)} rps`);
    if (phases.has('churn')) console.log(`new conn/request     ${p.churn_rps!.toFixed(0).padStart(8)} ${m.churn_rps!.toFixed(0).padStart(9)}   ×${(m.churn_rps! / p.churn_rps!).toFixed(2)} rps (p50 ${p.churn_p50_ms!.toFixed(1)} → ${m.churn_p50_ms!.toFixed(1)} ms)`);
    if (phases.has('bulk')) console.log(`bulk (iperf3)        ${p.iperf_gbps!.toFixed(2).padStart(8)} ${m.iperf_gbps!.toFixed(2).padStart(9)}   ×${(m.iperf_gbps! / p.iperf_gbps!).toFixed(2)} Gbit/s`);
    console.log(`ztunnel CPU per new connection: source ${m.zt_src_user_us_per_connection!.toFixed(0)} user + ${m.zt_src_sys_us_per_connection!.toFixed(0)} sys µs, destination ${m.zt_dst_user_us_per_connection!.toFixed(0)} user + ${m.zt_dst_sys_us_per_connection!.toFixed(0)} sys µs; node agents (both) ${m.agent_cpu_us_per_connection!.toFixed(0)} µs`);
    console.log(`ztunnel CPU (both): ${m.zt_cpu_us_per_connection!.toFixed(0)} µs per new connection, ${m.zt_cpu_us_per_request_wrk!.toFixed(0)} µs per request at saturation, ${m.zt_cpu_s_per_gb!.toFixed(2)} s per GB bulk`);
    console.log(`ztunnels: ${m.ztunnel_cpu_cores!.toFixed(2)} cores busy during the meshed phase (both), max RSS ${m.ztunnel_rss_mb!.toFixed(0)} MB`);
    // Pods enrolled at sandbox creation: every connection of the meshed phase is captured. (Before
    // that, clients that connected at once raced their enrolment and partly bypassed the mesh,
    // which flattered earlier figures.) This line shows it was so.
    if (phases.has('bulk')) console.log(`iperf3 bytes carried by ztunnel: ${(m.iperf_through_ztunnel! * 100).toFixed(0)}% (meshed phase), ${(p.iperf_through_ztunnel! * 100).toFixed(0)}% (no mesh)`);
    if (tls) console.log(`stunnel pair (no mesh, mutual TLS 1.3 client pod → server pod): errors ${tls.errors} of ${tls.n + tls.errors}`);
    console.log(JSON.stringify({ ...results, ...(tls ? { stunnel: tls } : {}) }));
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}

/**
 * 1 KB at 1,000 rps between two pods outside the mesh through two native TLS proxies: stunnel in
 * the server pod (mutual TLS 1.3 on :8443 → 127.0.0.1:8080) and in the client pod (127.0.0.1:18080
 * → server:8443), the client's hey sending to its local stunnel. Each proxy makes one TLS
 * connection per client connection (hey keeps 8 open), as ztunnel's pool keeps one session.
 */
async function stunnelPair(mesh: Awaited<ReturnType<typeof startMesh>>, teardown: (fn: () => void) => void): Promise<{ p50_ms: number; p90_ms: number; p99_ms: number; errors: number; n: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-bench-stunnel-'));
  teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=bench'], { stdio: 'ignore' });
  const common = ['foreground = yes', 'pid =', 'debug = 3', 'socket = l:TCP_NODELAY=1', 'socket = r:TCP_NODELAY=1', `cert = ${cert}`, `key = ${key}`, `CAfile = ${cert}`, 'verifyChain = yes', 'requireCert = yes', 'sslVersionMin = TLSv1.3'];
  const ns = 'stunnel';
  await mesh.core.createNamespace({ body: { metadata: { name: ns } } });
  writeFileSync(join(dir, 'server.conf'), [...common, '[web]', 'accept = 8443', 'connect = 127.0.0.1:8080', ''].join('\n'));
  await mesh.core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { name: 'web' }, spec: { nodeName: 'node1', containers: [{ name: 'main', image: 'unused', command: [NODE, '-e', SERVER] }, { name: 'tls', image: 'unused', command: ['stunnel', join(dir, 'server.conf')] }] } } as k8s.V1Pod,
  });
  const web = await waitFor(`${ns}/web`, async () => {
    const p = await mesh.core.readNamespacedPod({ name: 'web', namespace: ns });
    return p.status?.phase === 'Running' && p.status.podIP ? p.status.podIP : undefined;
  });
  writeFileSync(join(dir, 'client.conf'), [...common, 'client = yes', '[web]', 'accept = 127.0.0.1:18080', `connect = ${web}:8443`, ''].join('\n'));
  // stunnel in the foreground beside hey in one container: it ends when hey has.
  const script = `stunnel ${join(dir, 'client.conf')} & S=$!; sleep 0.5; hey -z ${SECONDS}s -c 8 -q 125 http://127.0.0.1:18080/; kill $S`;
  const out = await runPod(mesh, ns, 'fixed', 'node2', ['sh', '-c', script], SECONDS);
  const h = heyPercentiles(out);
  return { p50_ms: h.p50, p90_ms: h.p90, p99_ms: h.p99, errors: h.errors, n: h.n };
}

await main();

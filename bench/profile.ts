// Where ztunnel's time goes under one kind of load: a two-node local cluster, a server pod on
// node1 and a load pod on node2, with V8 CPU profiles of the mesh's processes (root).
//
//   node bench/profile.ts [--load bulk|rate|saturation|churn] [--seconds 8] [--rounds 1]
//                         [--no-cpu-prof] [--plain] [--out DIR]
//
//   bulk        iperf3 for --seconds
//   rate        hey, 1 KB at a fixed 1,000 rps over 8 keep-alive connections
//   saturation  wrk, 32 connections
//   churn       hey -disable-keepalive, 16 at a time: a new connection per request
//
// Each round runs the load once and prints the load's summary and each ztunnel's resident memory,
// heap and event-loop lag (from its own /metrics). The profiles (one .cpuprofile per agent and
// ztunnel, written when the mesh stops) land in --out; print their hot spots with
// `node bench/profile-summary.ts DIR/*.cpuprofile`. --plain runs the same load outside the mesh.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type * as k8s from '@kubernetes/client-node';
import { type Mesh, startMesh, waitFor } from '../test/helpers/mesh.ts';
import { uniquePrefix } from '../test/helpers/topology.ts';

const { values } = parseArgs({
  options: {
    load: { type: 'string', default: 'churn' },
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '1' },
    'no-cpu-prof': { type: 'boolean', default: false },
    plain: { type: 'boolean', default: false },
    out: { type: 'string', default: join('bench', 'results', `profile-${new Date().toISOString().replace(/[:.]/g, '-')}`) },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const HTTP_SERVER = `const body = Buffer.alloc(1024, 'x'); require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.end(body)); }).listen(8080);`;

const loads: Record<string, { server: string[]; client: (ip: string) => string[]; summary: RegExp }> = {
  bulk: { server: ['iperf3', '-s'], client: (ip) => ['iperf3', '-c', ip, '-t', String(SECONDS)], summary: /receiver$/m },
  rate: { server: [process.execPath, '-e', HTTP_SERVER], client: (ip) => ['hey', '-z', `${SECONDS}s`, '-c', '8', '-q', '125', `http://${ip}:8080/`], summary: /Requests\/sec|\s(50|99)% in/ },
  saturation: { server: [process.execPath, '-e', HTTP_SERVER], client: (ip) => ['wrk', '-t2', '-c32', `-d${SECONDS}s`, `http://${ip}:8080/`], summary: /Requests\/sec|Latency/ },
  churn: { server: [process.execPath, '-e', HTTP_SERVER], client: (ip) => ['hey', '-z', `${SECONDS}s`, '-c', '16', '-disable-keepalive', `http://${ip}:8080/`], summary: /Requests\/sec|\s(50|99)% in/ },
};
const load = loads[values.load!];
if (!load) throw new Error(`--load ${values.load}: expected one of ${Object.keys(loads).join(', ')}`);

async function runPod(mesh: Mesh, ns: string, name: string, node: string, command: string[], until: 'Running' | 'done'): Promise<k8s.V1Pod> {
  await mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { nodeName: node, restartPolicy: 'Never', containers: [{ name: 'main', image: 'unused', command }] } } as k8s.V1Pod });
  return waitFor(`${ns}/${name}`, async () => {
    const p = await mesh.core.readNamespacedPod({ name, namespace: ns });
    const phase = p.status?.phase ?? '';
    if (until === 'Running') return phase === 'Running' && p.status?.podIP ? p : undefined;
    return ['Succeeded', 'Failed'].includes(phase) ? p : undefined;
  }, (SECONDS + 60) * 1000);
}

async function processHealth(mesh: Mesh, node: string): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${mesh.ztunnelPort(node, 'metrics')}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  const mb = (name: string) => `${(value(name) / 2 ** 20).toFixed(0)} MB`;
  return `RSS ${mb('process_resident_memory_bytes')}, heap ${mb('nodejs_heap_size_used_bytes')} used of ${mb('nodejs_heap_size_total_bytes')}, event-loop lag p99 ${(value('nodejs_eventloop_lag_p99_seconds') * 1000).toFixed(1)} ms`;
}

const cleanups: (() => Promise<void> | void)[] = [];
try {
  const out = values.out!;
  // Every Node process the mesh starts inherits this (agents, ztunnels, pods); ours does not.
  if (!values['no-cpu-prof']) {
    mkdirSync(out, { recursive: true });
    process.env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${out}`;
  }
  const mesh = await startMesh({ teardown: (fn) => cleanups.push(fn) }, { ztunnel: true, prefix: uniquePrefix().replace(/^mt/, 'mp') });
  delete process.env.NODE_OPTIONS;
  const ns = 'profiled';
  await mesh.core.createNamespace({ body: { metadata: { name: ns, labels: values.plain ? {} : { 'mesh.io/dataplane-mode': 'ambient' } } } });
  const server = await runPod(mesh, ns, 'server', 'node1', load.server, 'Running');
  const pids = ['node1', 'node2'].map((n) => `ztunnel-${n}: pid ${mesh.processes.get(`ztunnel-${n}`)!.pid}, agent-${n}: pid ${mesh.processes.get(`agent-${n}`)!.pid}`);
  console.log(`load ${values.load}, ${SECONDS} s × ${ROUNDS}, ${values.plain ? 'outside the mesh' : 'meshed'}; ${pids.join('; ')}`);
  await new Promise((r) => setTimeout(r, 1000));
  for (let round = 0; round < ROUNDS; round++) {
    await runPod(mesh, ns, `load${round}`, 'node2', load.client(server.status!.podIP!), 'done');
    const output = readFileSync(`${mesh.stateDir}/logs/${ns}_load${round}_main.log`, 'utf8');
    console.log(`round ${round + 1}: ${output.split('\n').filter((l) => load.summary.test(l)).map((l) => l.trim()).join(' · ')}`);
    for (const node of ['node1', 'node2']) console.log(`  ztunnel ${node}: ${await processHealth(mesh, node)}`);
  }
  if (!values['no-cpu-prof']) console.log(`CPU profiles (written as the mesh stops): ${out} — node bench/profile-summary.ts ${out}/*.cpuprofile`);
} finally {
  for (const c of cleanups.reverse()) await c();
}

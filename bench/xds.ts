// Config stream propagation: from ConfigServer.set() to the version applied at every subscribed
// client, with 1,000 and 10,000 workloads in the model and 2 / 10 / 50 clients, in one run.
//
//   node bench/xds.ts [--sizes 1000,10000] [--clients 2,10,50] [--updates 200] [--burst 0.1]
//
// Two processes on one host, over real gRPC on 127.0.0.1 (insecure credentials): this process
// runs the server; one child process runs all the clients of a configuration. Timestamps are
// process.hrtime (CLOCK_MONOTONIC, shared by the two processes). All clients share the child's
// one event loop and the host's cores, so the tail grows with the client count in a way that
// real nodes, each with its own CPU, would not: the figures are an upper bound.
//
// Per configuration:
//   initial sync   clients start → every client ready (full state applied)
//   single update  one workload changes, then the next one 25 ms later (longer than the push
//                  interval, so each is pushed alone): per (update, client) sample and per
//                  update the time until the last client had it
//   burst          one batch changing --burst of the model: until every client had all of it
//   RSS            server process after the sync; client process before / after, per client
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as grpc from '@grpc/grpc-js';
import type { ChangeEvent, ConfigClient as Client, MeshTypes } from '../src/xds/index.ts';

// Connection logs at info from 50 clients would bury the figures; the logger reads this at import.
process.env.MESH_LOG_LEVEL ??= 'warn';
const { AUTHORIZATION, ConfigClient, ConfigServer, SERVICE, WORKLOAD } = await import('../src/xds/index.ts');
const { service, strictPeerAuthentication, workload } = await import('../test/helpers/xds.ts');

const now = () => Number(process.hrtime.bigint()) / 1e6;

// A full GC before reading the heap, so heap figures are live data, not garbage yet to collect.
setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;
const heapMb = () => {
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

type ToChild = { cmd: 'start'; port: number; clients: number } | { cmd: 'track'; on: boolean } | { cmd: 'rss' };
type FromChild =
  | { ev: 'baseline'; rss: number; heap: number }
  | { ev: 'ready'; at: number }
  | { ev: 'applied'; samples: [client: number, name: string, at: number][] }
  | { ev: 'rss'; rss: number; heap: number };

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string', default: '1000,10000' },
      clients: { type: 'string', default: '2,10,50' },
      updates: { type: 'string', default: '200' },
      burst: { type: 'string', default: '0.1' },
    },
  });
  const sizes = values.sizes.split(',').map(Number);
  const counts = values.clients.split(',').map(Number);
  const updates = Number(values.updates);
  const results = [];
  for (const size of sizes) {
    for (const clients of counts) {
      const r = await runOne(size, clients, updates, Number(values.burst));
      results.push(r);
      printRow(r);
    }
  }
  const dir = fileURLToPath(new URL('results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}xds-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify({ host: { cpus: (await import('node:os')).cpus().length, node: process.version }, results }, null, 2));
  console.log(`\nwritten ${file}`);
}

function printRow(r: Awaited<ReturnType<typeof runOne>>): void {
  const f = (n: number) => n.toFixed(1).padStart(7);
  console.log(
    `workloads ${String(r.workloads).padStart(6)}  clients ${String(r.clients).padStart(3)}  ` +
      `sync ${f(r.initialSyncMs)} ms  update p50 ${f(r.update.p50)} p99 ${f(r.update.p99)} ms  ` +
      `all-clients p50 ${f(r.updateAll.p50)} p99 ${f(r.updateAll.p99)} ms  ` +
      `burst(${r.burst.changes}) ${f(r.burst.ms)} ms  ` +
      `RSS server ${r.rssMb.server.toFixed(0)} MB, clients ${r.rssMb.clients.toFixed(0)} MB (+${r.rssMb.perClient.toFixed(1)} MB each)  ` +
      `heap server +${r.heapMb.server.toFixed(0)} MB, client ${r.heapMb.perClient.toFixed(1)} MB each`,
  );
}

async function runOne(size: number, clients: number, updates: number, burstShare: number) {
  const heapBefore = heapMb();
  const server = new ConfigServer<MeshTypes>();
  server.batch((tx) => {
    for (let i = 0; i < size; i++) tx.set(WORKLOAD, workload(i).uid, workload(i));
    for (let i = 0; i < size / 10; i++) tx.set(SERVICE, `s${i}`, service(i));
    for (let i = 0; i < 10; i++) tx.set(AUTHORIZATION, `ns${i}/strict`, strictPeerAuthentication(`ns${i}`));
  });
  const port = await server.listen('127.0.0.1:0', grpc.ServerCredentials.createInsecure());
  const kid = fork(fileURLToPath(import.meta.url), ['--clients-child'], {
    env: { ...process.env, MESH_LOG_LEVEL: process.env.MESH_LOG_LEVEL ?? 'warn' },
  });
  const inbox = new Inbox(kid);
  const baseline = await inbox.next('baseline');

  const t0 = now();
  send(kid, { cmd: 'start', port, clients });
  const readyAt = (await inbox.next('ready')).at;
  const initialSyncMs = readyAt - t0;
  const serverRss = process.memoryUsage().rss;
  const serverHeap = heapMb() - heapBefore;
  send(kid, { cmd: 'rss' });
  const clientMem = await inbox.next('rss');
  send(kid, { cmd: 'track', on: true });

  // Single updates.
  const perClient: number[] = [];
  const perUpdate: number[] = [];
  for (let u = 0; u < updates; u++) {
    const i = (u * 7919) % size;
    const name = workload(i).uid;
    const wait = inbox.applied(new Set([name]), clients);
    const start = now();
    server.set(WORKLOAD, name, workload(i, { canonicalRevision: `r${u}` }));
    const times = await wait;
    for (const at of times) perClient.push(at - start);
    perUpdate.push(Math.max(...times) - start);
    await sleep(25);
  }

  // One burst.
  const changes = Math.round(size * burstShare);
  const names = new Set<string>();
  for (let k = 0; k < changes; k++) names.add(workload((k * 31) % size).uid);
  const wait = inbox.applied(names, clients);
  const start = now();
  server.batch((tx) => {
    for (let k = 0; k < changes; k++) {
      const i = (k * 31) % size;
      tx.set(WORKLOAD, workload(i).uid, workload(i, { canonicalRevision: 'burst' }));
    }
  });
  const burstMs = Math.max(...(await wait)) - start;

  kid.kill();
  await server.close(200);
  return {
    workloads: size,
    clients,
    initialSyncMs,
    update: { samples: perClient.length, p50: pct(perClient, 50), p99: pct(perClient, 99), max: Math.max(...perClient) },
    updateAll: { samples: perUpdate.length, p50: pct(perUpdate, 50), p99: pct(perUpdate, 99) },
    burst: { changes: names.size, ms: burstMs },
    rssMb: {
      server: serverRss / 2 ** 20,
      clients: clientMem.rss / 2 ** 20,
      perClient: (clientMem.rss - baseline.rss) / 2 ** 20 / clients,
    },
    // Live heap after a full GC: the model and stream state at the server, the state per client.
    heapMb: { server: serverHeap, perClient: (clientMem.heap - baseline.heap) / clients },
  };
}

/** Messages from the client process, and waits for applied names. */
class Inbox {
  readonly #queue: FromChild[] = [];
  #waiter: (() => void) | undefined;
  #watch: { names: Set<string>; need: number; seen: Map<string, number>; last: number[]; done: () => void } | undefined;

  constructor(kid: ChildProcess) {
    kid.on('message', (m: FromChild) => {
      if (m.ev === 'applied') {
        const w = this.#watch;
        if (!w) return;
        for (const [client, name, at] of m.samples) {
          if (!w.names.has(name)) continue;
          w.seen.set(name, (w.seen.get(name) ?? 0) + 1);
          w.last[client] = Math.max(w.last[client] ?? 0, at);
          if (w.seen.get(name) === w.need) w.names.delete(name);
        }
        if (w.names.size === 0) w.done();
        return;
      }
      this.#queue.push(m);
      this.#waiter?.();
    });
    kid.on('exit', (code) => {
      if (code) throw new Error(`the client process exited with ${code}`);
    });
  }

  async next<E extends FromChild['ev']>(ev: E): Promise<Extract<FromChild, { ev: E }>> {
    for (;;) {
      const i = this.#queue.findIndex((m) => m.ev === ev);
      if (i >= 0) return this.#queue.splice(i, 1)[0] as Extract<FromChild, { ev: E }>;
      await new Promise<void>((r) => (this.#waiter = r));
    }
  }

  /** Resolves, per client, to when it applied the last of names. */
  applied(names: Set<string>, clients: number): Promise<number[]> {
    return new Promise((resolve) => {
      const w = {
        names: new Set(names),
        need: clients,
        seen: new Map<string, number>(),
        last: [] as number[],
        done: () => {
          this.#watch = undefined;
          resolve(w.last);
        },
      };
      this.#watch = w;
    });
  }
}

async function child(): Promise<void> {
  send(process, { ev: 'baseline', rss: process.memoryUsage().rss, heap: heapMb() });
  let tracking = false;
  let buffer: [number, string, number][] = [];
  setInterval(() => {
    if (buffer.length === 0) return;
    send(process, { ev: 'applied', samples: buffer });
    buffer = [];
  }, 2).unref();
  const list: Client<MeshTypes>[] = [];
  process.on('message', async (m: ToChild) => {
    if (m.cmd === 'start') {
      for (let c = 0; c < m.clients; c++) {
        const client = new ConfigClient<MeshTypes>({
          address: `127.0.0.1:${m.port}`,
          credentials: grpc.credentials.createInsecure(),
          node: { id: `bench~node-${c}`, name: `node-${c}`, cluster: 'Kubernetes' },
          types: [WORKLOAD, SERVICE, AUTHORIZATION],
        });
        client.on('change', (e: ChangeEvent) => {
          if (!tracking || e.type !== WORKLOAD) return;
          const at = now();
          for (const name of e.updated) buffer.push([c, name, at]);
        });
        list.push(client.start());
      }
      await Promise.all(list.map((c) => c.ready(120_000)));
      send(process, { ev: 'ready', at: now() });
    } else if (m.cmd === 'track') {
      tracking = m.on;
    } else if (m.cmd === 'rss') {
      send(process, { ev: 'rss', rss: process.memoryUsage().rss, heap: heapMb() });
    }
  });
  process.on('disconnect', () => process.exit(0));
}

function send(to: ChildProcess | NodeJS.Process, m: ToChild | FromChild): void {
  to.send!(m);
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

if (process.argv[2] === '--clients-child') await child();
else await main();

// HBONE tunnel overhead against direct TCP, in one run:
//
//   node bench/hbone.ts [--rate 1000] [--seconds 5] [--conns 32] [--bulk-mb 256] [--bulk-only] [--out DIR]
//
// Two processes on one host, over 127.0.0.1. This process is the source side: the load generator
// and the HbonePool (ztunnel outbound's client). A forked child is the destination side: the
// HboneServer (ztunnel inbound) and the application — a 1 KB echo and a byte sink. The baseline
// connects the same generator straight to the same application, so the difference is what the
// tunnel adds: TLS 1.3, HTTP/2 framing, the server's splice to the application's socket. Both
// processes share the host's cores (and the generator shares the client's event loop), so the
// figures are a lower bound on what separate nodes would give.
//
//   latency     1 KB written, 1 KB echoed back, at a fixed --rate over 10 long-lived connections
//               (open loop, paced by a ~1 ms timer; latency counts from the write, so the
//               timer's lateness is not in it)
//   saturation  --conns closed-loop connections, each sending the next 1 KB when the last came
//               back, for --seconds: requests per second
//   setup       new tunnel (CONNECT → 200) on a warm session vs a new TCP connection
//   bulk        --bulk-mb MB one way into the sink, until the sink confirms: MB/s, and each
//               process's CPU per MB over the transfer (less sensitive to a busy host than MB/s);
//               --bulk-only runs just this phase
//   RSS / CPU   both processes, after the runs
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

process.env.MESH_LOG_LEVEL ??= 'warn';
const { HboneServer, HbonePool } = await import('../src/hbone/index.ts');

const REQ = 1024;
const CART = 'spiffe://cluster.local/ns/bench/sa/client';
const ECHO = 'spiffe://cluster.local/ns/bench/sa/server';

type Creds = { identity: string; key: string; certChain: string[]; roots: string[] };
type ToChild = { cmd: 'start'; server: Creds } | { cmd: 'usage' };
type FromChild = { ev: 'ready'; hbone: number; echo: number; sink: number } | { ev: 'usage'; rss: number; cpuMs: number };

// ---- destination side (child) ----------------------------------------------------------------

async function destination(): Promise<void> {
  const echo = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  const sink = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    let n = 0;
    s.on('error', () => {});
    s.on('data', (d: Buffer) => (n += d.length));
    s.on('end', () => s.end(String(n)));
  });
  const listen = async (srv: net.Server): Promise<number> => {
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    return (srv.address() as net.AddressInfo).port;
  };
  const echoPort = await listen(echo);
  const sinkPort = await listen(sink);
  const cpu0 = process.cpuUsage();
  process.on('message', async (m: ToChild) => {
    if (m.cmd === 'start') {
      const server = new HboneServer({
        credentials: m.server,
        trustDomains: ['cluster.local'],
        handler: async (t) => {
          const up = net.connect({ host: '127.0.0.1', port: t.target.port, allowHalfOpen: true, noDelay: true });
          await once(up, 'connect');
          return { status: 200, upstream: up };
        },
      });
      const { port } = await server.listen({ port: 0, host: '127.0.0.1' });
      process.send!({ ev: 'ready', hbone: port, echo: echoPort, sink: sinkPort } satisfies FromChild);
    } else {
      const c = process.cpuUsage(cpu0);
      process.send!({ ev: 'usage', rss: process.memoryUsage().rss, cpuMs: (c.user + c.system) / 1000 } satisfies FromChild);
    }
  });
}

// ---- source side (this process) ---------------------------------------------------------------

/** A request/response channel over one byte stream: send 1 KB, the echo's bytes complete it. */
class Channel {
  private received = 0;
  private sent = 0;
  private readonly waiting: { due: number; resolve: (ms: number) => void }[] = [];
  private readonly s: Duplex;
  private static readonly payload = Buffer.alloc(REQ, 7);

  constructor(s: Duplex) {
    this.s = s;
    s.on('data', (d: Buffer) => {
      this.received += d.length;
      while (this.waiting.length && this.received >= (this.sent - this.waiting.length + 1) * REQ) {
        const w = this.waiting.shift()!;
        w.resolve(performance.now() - w.due);
      }
    });
  }

  /** Sends one request now; resolves with ms from now until its echo is complete. */
  request(): Promise<number> {
    return new Promise((resolve) => {
      this.sent++;
      this.waiting.push({ due: performance.now(), resolve });
      this.s.write(Channel.payload);
    });
  }
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const summary = (xs: number[]): { p50: number; p90: number; p99: number; max: number; n: number } => {
  const s = [...xs].sort((a, b) => a - b);
  const r = (v: number) => Math.round(v * 1000) / 1000;
  return { p50: r(pct(s, 50)), p90: r(pct(s, 90)), p99: r(pct(s, 99)), max: r(s[s.length - 1]!), n: s.length };
};

async function fixedRate(chans: Channel[], rate: number, seconds: number): Promise<number[]> {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const start = performance.now() + 5;
  const pending: Promise<number>[] = [];
  let i = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      while (i < total && start + i * interval <= now) {
        pending.push(chans[i % chans.length]!.request());
        i++;
      }
      if (i < total) setTimeout(tick, 0.5);
      else resolve();
    };
    setTimeout(tick, 5);
  });
  return Promise.all(pending);
}

async function closedLoop(chans: Channel[], seconds: number): Promise<{ rps: number; latency: ReturnType<typeof summary> }> {
  const end = performance.now() + seconds * 1000;
  const lat: number[] = [];
  await Promise.all(
    chans.map(async (c) => {
      while (performance.now() < end) lat.push(await c.request());
    }),
  );
  return { rps: Math.round(lat.length / seconds), latency: summary(lat) };
}

async function bulk(s: Duplex, mb: number): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 1);
  const total = mb * 1024 * 1024;
  let reply = '';
  s.on('data', (d) => (reply += d));
  const ended = once(s, 'end');
  const t0 = performance.now();
  for (let off = 0; off < total; off += chunk.length) if (!s.write(chunk)) await once(s, 'drain');
  s.end();
  await ended;
  const secs = (performance.now() - t0) / 1000;
  if (Number(reply) !== total) throw new Error(`sink got ${reply} bytes, sent ${total}`);
  return Math.round(mb / secs);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '1000' },
      seconds: { type: 'string', default: '5' },
      conns: { type: 'string', default: '32' },
      'bulk-mb': { type: 'string', default: '256' },
      'bulk-only': { type: 'boolean', default: false },
      out: { type: 'string', default: fileURLToPath(new URL('./results/', import.meta.url)) },
    },
  });
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const conns = Number(values.conns);
  const bulkMb = Number(values['bulk-mb']);

  // Only the source side mints; the destination loads nothing it would not load in ztunnel.
  const { memoryCa, mint } = await import('../test/helpers/ca.ts');
  const ca = await memoryCa();
  const asCreds = (c: Awaited<ReturnType<typeof mint>>, identity: string): Creds => ({ identity, key: c.key, certChain: [...c.certChain], roots: [...c.roots] });
  const client = asCreds(await mint(ca, CART), CART);
  const server = asCreds(await mint(ca, ECHO), ECHO);

  const child = fork(fileURLToPath(import.meta.url), ['--destination'], { stdio: 'inherit' });
  const next = (): Promise<FromChild> => once(child, 'message').then(([m]) => m as FromChild);
  child.send({ cmd: 'start', server } satisfies ToChild);
  const ready = (await next()) as Extract<FromChild, { ev: 'ready' }>;

  const pool = new HbonePool();
  const hbone = `127.0.0.1:${ready.hbone}`;
  const tunnel = (port: number) => pool.connect({ source: client, dstAddr: hbone, expectedIdentities: [ECHO], authority: `127.0.0.1:${port}` });
  const direct = async (port: number): Promise<net.Socket> => {
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true, allowHalfOpen: true });
    await once(s, 'connect');
    return s;
  };
  const openChans = async (open: () => Promise<Duplex>, n: number) => Promise.all(Array.from({ length: n }, async () => new Channel(await open())));
  const cpu0 = process.cpuUsage();
  const rssPhases: Record<string, { source: number; destination: number }> = {};
  const rssNow = async (phase: string): Promise<void> => {
    child.send({ cmd: 'usage' } satisfies ToChild);
    const u = (await next()) as Extract<FromChild, { ev: 'usage' }>;
    rssPhases[phase] = { source: Math.round(process.memoryUsage().rss / 2 ** 20), destination: Math.round(u.rss / 2 ** 20) };
  };
  await rssNow('start');

  const result: Record<string, unknown> = {
    when: new Date().toISOString(),
    node: process.version,
    cpus: (await import('node:os')).cpus().length,
    processes: 'two: source (generator + HbonePool) and destination (HboneServer + echo/sink app), forked',
    params: { rate, seconds, conns, bulkMb, requestBytes: REQ },
  };

  // Warm up both paths (TLS session, JIT).
  for (const open of [() => tunnel(ready.echo), () => direct(ready.echo)]) await closedLoop(await openChans(open, 4), 1);

  const usageNow = async (): Promise<{ source: number; destination: number }> => {
    child.send({ cmd: 'usage' } satisfies ToChild);
    const u = (await next()) as Extract<FromChild, { ev: 'usage' }>;
    const c = process.cpuUsage(cpu0);
    return { source: (c.user + c.system) / 1000, destination: u.cpuMs };
  };
  if (!values['bulk-only']) await timedPhases();
  async function timedPhases(): Promise<void> {
    const latency: Record<string, unknown> = {};
    for (const [name, open] of [
      ['direct', () => direct(ready.echo)],
      ['hbone', () => tunnel(ready.echo)],
    ] as const) {
      latency[name] = summary(await fixedRate(await openChans(open, 10), rate, seconds));
    }
    result.latencyMs = latency;
    await rssNow('after latency');

    const sat: Record<string, { rps: number; latency: unknown }> = {};
    for (const [name, open] of [
      ['direct', () => direct(ready.echo)],
      ['hbone', () => tunnel(ready.echo)],
    ] as const) {
      sat[name] = await closedLoop(await openChans(open, conns), seconds);
    }
    result.saturation = { ...sat, ratio: Math.round((sat.hbone!.rps / sat.direct!.rps) * 100) / 100 };
    await rssNow('after saturation');

    const setup: Record<string, unknown> = {};
    for (const [name, open] of [
      ['direct', () => direct(ready.echo)],
      ['hbone', () => tunnel(ready.echo)],
    ] as const) {
      const xs: number[] = [];
      for (let i = 0; i < 500; i++) {
        const t0 = performance.now();
        const s = await open();
        xs.push(performance.now() - t0);
        s.destroy();
      }
      setup[name] = summary(xs);
    }
    result.tunnelSetupMs = setup;
  }

  const perMb = (a: { source: number; destination: number }, b: { source: number; destination: number }) => ({
    source: Math.round(((b.source - a.source) / bulkMb) * 100) / 100,
    destination: Math.round(((b.destination - a.destination) / bulkMb) * 100) / 100,
  });
  const u0 = await usageNow();
  const direct1 = await bulk(await direct(ready.sink), bulkMb);
  const u1 = await usageNow();
  const hbone1 = await bulk(await tunnel(ready.sink), bulkMb);
  const u2 = await usageNow();
  result.bulkMBps = { direct: direct1, hbone: hbone1, ratio: Math.round((hbone1 / direct1) * 100) / 100 };
  result.bulkCpuMsPerMB = { direct: perMb(u0, u1), hbone: perMb(u1, u2) };

  child.send({ cmd: 'usage' } satisfies ToChild);
  const usage = (await next()) as Extract<FromChild, { ev: 'usage' }>;
  const c = process.cpuUsage(cpu0);
  result.rssMB = { ...rssPhases, 'after bulk': { source: Math.round(process.memoryUsage().rss / 2 ** 20), destination: Math.round(usage.rss / 2 ** 20) } };
  result.cpuSeconds = { source: Math.round((c.user + c.system) / 1e4) / 100, destination: Math.round(usage.cpuMs / 10) / 100 };
  result.poolSessions = pool.stats().sessions.length;

  pool.destroy();
  child.kill();
  console.log(JSON.stringify(result, null, 2));
  mkdirSync(values.out, { recursive: true });
  const file = `${values.out.replace(/\/$/, '')}/hbone-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify(result, null, 2));
  console.error(`wrote ${file}`);
}

if (process.argv.includes('--destination')) await destination();
else await main();

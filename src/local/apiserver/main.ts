// The API server alone in its own process, for the benchmark (bench/apiserver.ts) and the crash
// test (test/local/apiserver-crash.test.ts): both need its memory and its death apart from theirs.
//   node src/local/apiserver/main.ts --data-dir DIR [--port N]
// Started with an IPC channel (child_process.fork), it sends {type:'ready', url, port, caCertPem,
// adminToken} once listening and answers {type:'memory'} with process.memoryUsage() (after a full
// GC when run with --expose-gc) and its CPU time so far (process.cpuUsage(), µs); {type:'trace'}
// with {type:'trace', syncs, gcs}: the log's batch writes (wal.ts WalSync) and this process's GC
// pauses ({at, ms, kind}; at in ms since the epoch, kind as perf_hooks reports it) since the previous 'trace' — the first one starts
// recording. SIGTERM stops it cleanly.
import { subscribe } from 'node:diagnostics_channel';
import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { startApiServer } from './index.ts';
import { type WalSync, walSyncChannel } from './wal.ts';

const { values } = parseArgs({ options: { 'data-dir': { type: 'string' }, port: { type: 'string', default: '0' } } });
if (!values['data-dir']) {
  console.error('usage: node src/local/apiserver/main.ts --data-dir DIR [--port N]');
  process.exit(2);
}
const server = await startApiServer({ dataDir: values['data-dir'], port: Number(values.port) });
const ready = { type: 'ready', url: server.url, port: server.port, caCertPem: server.caCertPem, adminToken: server.adminToken };
if (process.send) process.send(ready);
else console.log(JSON.stringify(ready));

// Bounded, in case a caller starts tracing and never asks again.
const TRACE_MAX = 100_000;
let trace: { syncs: WalSync[]; gcs: { at: number; ms: number; kind?: number }[] } | undefined;

process.on('message', (m: { type?: string }) => {
  if (m?.type === 'memory') {
    (globalThis as { gc?: () => void }).gc?.();
    process.send?.({ type: 'memory', ...process.memoryUsage(), cpu: process.cpuUsage() });
  } else if (m?.type === 'trace') {
    if (!trace) {
      trace = { syncs: [], gcs: [] };
      subscribe(walSyncChannel.name, (s) => void (trace!.syncs.length < TRACE_MAX && trace!.syncs.push(s as WalSync)));
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) if (trace!.gcs.length < TRACE_MAX) trace!.gcs.push({ at: performance.timeOrigin + e.startTime, ms: e.duration, kind: (e as { detail?: { kind?: number } }).detail?.kind });
      }).observe({ entryTypes: ['gc'] });
    }
    process.send?.({ type: 'trace', ...trace });
    trace.syncs = [];
    trace.gcs = [];
  }
});
process.on('disconnect', () => void shutdown());
process.on('SIGTERM', () => void shutdown());

async function shutdown(): Promise<void> {
  await server.stop();
  process.exit(0);
}

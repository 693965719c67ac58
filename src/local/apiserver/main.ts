// The API server alone in its own process, for the benchmark (bench/apiserver.ts) and the crash
// test (test/local/apiserver-crash.test.ts): both need its memory and its death apart from theirs.
//   node src/local/apiserver/main.ts --data-dir DIR [--port N]
// Started with an IPC channel (child_process.fork), it sends {type:'ready', url, port, caCertPem,
// adminToken} once listening and answers {type:'memory'} with process.memoryUsage() (after a full
// GC when run with --expose-gc) and its CPU time so far (process.cpuUsage(), µs). SIGTERM stops it
// cleanly.
import { parseArgs } from 'node:util';
import { startApiServer } from './index.ts';

const { values } = parseArgs({ options: { 'data-dir': { type: 'string' }, port: { type: 'string', default: '0' } } });
if (!values['data-dir']) {
  console.error('usage: node src/local/apiserver/main.ts --data-dir DIR [--port N]');
  process.exit(2);
}
const server = await startApiServer({ dataDir: values['data-dir'], port: Number(values.port) });
const ready = { type: 'ready', url: server.url, port: server.port, caCertPem: server.caCertPem, adminToken: server.adminToken };
if (process.send) process.send(ready);
else console.log(JSON.stringify(ready));

process.on('message', (m: { type?: string }) => {
  if (m?.type !== 'memory') return;
  (globalThis as { gc?: () => void }).gc?.();
  process.send?.({ type: 'memory', ...process.memoryUsage(), cpu: process.cpuUsage() });
});
process.on('disconnect', () => void shutdown());
process.on('SIGTERM', () => void shutdown());

async function shutdown(): Promise<void> {
  await server.stop();
  process.exit(0);
}

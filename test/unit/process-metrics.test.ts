// ztunnel's process metrics (src/common/prom.ts, collectProcessMetrics): the series prom-client's
// collectDefaultMetrics gives, with their types and help, from fewer modules — none of the index's
// and not @opentelemetry/api (issue 16: a node's ztunnel loads only what it uses).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import { collectDefaultMetrics, Registry as IndexRegistry } from 'prom-client';
import { collectProcessMetrics, Registry } from '../../src/common/prom.ts';

const run = promisify(execFile);

test('process metrics: the same series as prom-client default metrics, CPU counting up', async (t) => {
  const ours = new Registry();
  collectProcessMetrics(ours);
  const theirs = new IndexRegistry();
  collectDefaultMetrics({ register: theirs });
  const shape = async (r: Registry) => (await r.getMetricsAsJSON()).map((m) => `${m.name} ${m.type} ${m.help}`).sort();
  t.deepEqual(await shape(ours), await shape(theirs));
  const cpu = async () => Number(/^process_cpu_seconds_total (\S+)$/m.exec(await ours.metrics())?.[1]);
  const first = await cpu();
  const until = Date.now() + 20;
  while (Date.now() < until);
  t.true((await cpu()) > first, 'process_cpu_seconds_total grows with the CPU spent');
});

test('process metrics load neither prom-client index nor @opentelemetry/api', async (t) => {
  const prom = new URL('../../src/common/prom.ts', import.meta.url).pathname;
  const probe = `
    const { collectProcessMetrics, Registry } = await import(${JSON.stringify(prom)});
    collectProcessMetrics(new Registry());
    const { createRequire } = await import('node:module');
    console.log(JSON.stringify(Object.keys(createRequire(import.meta.url).cache).filter((f) => /@opentelemetry|prom-client\\/(index|lib\\/(pushgateway|cluster|summary))\\.js/.test(f))));
  `;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe]);
  t.deepEqual(JSON.parse(stdout), []);
});

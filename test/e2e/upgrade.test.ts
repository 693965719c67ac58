// ztunnel upgrades that drop nothing (issue 15): a rollout of node1's ztunnel, then node2's, as
// `meshctl dev rollout ztunnel` (src/local/rollout/) performs it, while
//   - a bulk transfer of 2 GiB runs through both ztunnels (HBONE, node1 → node2),
//   - a connection idles through both upgrades, then talks,
//   - a mesh client opens 100 new connections/s, and a client outside the mesh 20/s (plaintext
//     inbound),
// and tshark on the fabric never sees a mesh client's plaintext. Then: the old processes exit
// when their last connection ends; one with a short drain deadline resets what is left and logs
// how many; a ztunnel killed hard serves new connections again, and how soon is reported.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import type * as k8s from '@kubernetes/client-node';
import { rollout, type RolloutResult } from '../../src/local/rollout/index.ts';
import { type Mesh, startMesh, waitFor } from '../helpers/mesh.ts';
import { requireRoot } from '../helpers/topology.ts';

const NODE = process.execPath;
const MESHCTL = fileURLToPath(new URL('../../bin/meshctl', import.meta.url));
const run = promisify(execFile);
const BULK_BYTES = Number(process.env.MESH_TEST_BULK_BYTES ?? 2 ** 31);
/** The bulk sender's pace: the transfer must outlast both upgrades (≈ 35 s for 2 GiB). */
const BULK_RATE = Number(process.env.MESH_TEST_BULK_RATE ?? 64 << 20);
const MARKER = 'UPGRADE-PLAINTEXT-7f3a';

// The bytes of every transfer: a 64 KiB block, repeated.
const BLOCK = `const BLOCK = Buffer.alloc(65536); for (let i = 0; i < BLOCK.length; i++) BLOCK[i] = (i * 131 + 7) & 255;`;

// node1: 9000 sends "<n>\n" bytes of the pattern at RATE bytes/s; 9001 echoes; 9002 answers "ok".
const SERVER = `
const net = require('node:net');
${BLOCK}
const RATE = Number(process.argv[1]);
net.createServer((s) => {
  s.on('error', () => {});
  s.once('data', (d) => {
    let left = Number(String(d).trim()), off = 0, allowance = 0, last = Date.now(), waiting = false;
    const pump = () => {
      const now = Date.now(); allowance = Math.min(allowance + (now - last) * RATE / 1000, 4 * RATE); last = now;
      while (left > 0 && allowance > 0 && !waiting) {
        const n = Math.min(left, 65536 - off);
        const ok = s.write(BLOCK.subarray(off, off + n));
        left -= n; allowance -= n; off = (off + n) % 65536;
        if (!ok) { waiting = true; s.once('drain', () => { waiting = false; }); }
      }
      if (left === 0) { clearInterval(t); s.end(); }
    };
    const t = setInterval(pump, 10);
    s.on('close', () => clearInterval(t));
  });
}).listen(9000);
net.createServer((s) => { s.on('error', () => {}); s.pipe(s); }).listen(9001);
net.createServer((s) => { s.on('error', () => {}); s.on('data', () => s.end('ok')); }).listen(9002);
`;

// node2: the bulk client checks every byte against the pattern as it arrives.
const BULK = `
const net = require('node:net');
${BLOCK}
const [ip, total] = [process.argv[1], Number(process.argv[2])];
let got = 0, bad = -1, mark = 0;
const s = net.connect(9000, ip, () => { console.log(Date.now(), 'bulk connected'); s.write(total + '\\n'); });
s.on('data', (d) => {
  for (let i = 0; i < d.length && bad < 0; ) {
    const off = (got + i) % 65536, n = Math.min(d.length - i, 65536 - off);
    if (!d.subarray(i, i + n).equals(BLOCK.subarray(off, off + n))) bad = got + i;
    i += n;
  }
  got += d.length;
  if (got >= mark) { console.log(Date.now(), 'bulk progress', got); mark += 256 << 20; }
});
s.on('error', (e) => console.log(Date.now(), 'bulk error', e.code || e.message));
s.on('close', () => console.log(Date.now(), 'bulk done', got, got === total && bad < 0 ? 'exact' : 'WRONG first-bad=' + bad));
`;

// node2: connects, says hello, idles until the test asks it to talk (and at least 10 s), then
// sends 1 MiB and checks the echo.
const IDLE = `
const net = require('node:net');
const fs = require('node:fs');
${BLOCK}
const [ip, trigger] = [process.argv[1], process.argv[2]];
const hello = Buffer.from('${MARKER}-hello\\n');
const body = Buffer.concat(Array.from({ length: 16 }, () => BLOCK));
const want = Buffer.concat([hello, body]);
let echoed = Buffer.alloc(0);
const opened = Date.now();
const s = net.connect(9001, ip, () => { console.log(Date.now(), 'idle connected'); s.write(hello); });
s.on('data', (d) => {
  echoed = Buffer.concat([echoed, d]);
  if (echoed.length === hello.length) {
    console.log(Date.now(), 'idle hello echoed');
    const t = setInterval(() => {
      if (Date.now() - opened < 10000 || !fs.existsSync(trigger)) return;
      clearInterval(t);
      console.log(Date.now(), 'idle talks after', Date.now() - opened, 'ms');
      s.write(body);
    }, 100);
  }
  if (echoed.length >= want.length) { console.log(Date.now(), 'idle done', echoed.equals(want) ? 'exact' : 'WRONG'); s.end(); }
});
s.on('error', (e) => console.log(Date.now(), 'idle error', e.code || e.message));
s.on('close', () => console.log(Date.now(), 'idle closed'));
`;

// A new connection every 1000/RATE ms until the stop file appears (at most 10 min): one line per
// second, "<ms> tally <ok> <failed> <codes>".
const OPENER = `
const net = require('node:net');
const fs = require('node:fs');
const [ip, rate, stop, payload] = [process.argv[1], Number(process.argv[2]), process.argv[3], process.argv[4]];
let ok = 0, failed = 0, codes = [], failing = false;
const started = Date.now();
const t = setInterval(() => {
  if (fs.existsSync(stop) || Date.now() - started > 600000) { clearInterval(t); clearInterval(r); setTimeout(report, 2000); return; }
  const s = net.connect(9002, ip);
  let got = '';
  s.setTimeout(3000, () => s.destroy(new Error('timeout')));
  s.on('connect', () => s.write(payload));
  s.on('data', (d) => { got += d; });
  s.on('close', () => {
    if (got === 'ok') { ok++; if (failing) console.log(Date.now(), 'recovered'); failing = false; }
    else { failed++; failing = true; codes.push(s.errCode || 'closed-without-ok'); console.log(Date.now(), 'failed', s.errCode || 'closed-without-ok'); }
  });
  s.on('error', (e) => { s.errCode = e.code || e.message; });
}, 1000 / rate);
const report = () => { console.log(Date.now(), 'tally', ok, failed, codes.join(',') || '-'); ok = 0; failed = 0; codes = []; };
const r = setInterval(report, 1000);
`;

interface Tally {
  ok: number;
  failed: number;
  codes: string[];
}

function podLog(mesh: Mesh, ns: string, pod: string): string[] {
  try {
    return readFileSync(`${mesh.stateDir}/logs/${ns}_${pod}_main.log`, 'utf8').trim().split('\n');
  } catch {
    return [];
  }
}

function tally(mesh: Mesh, ns: string, pod: string, from = 0, to = Infinity): Tally {
  const out: Tally = { ok: 0, failed: 0, codes: [] };
  for (const l of podLog(mesh, ns, pod)) {
    const [ts, what, ok, failed, codes] = l.split(' ');
    if (what !== 'tally' || Number(ts) < from || Number(ts) > to) continue;
    out.ok += Number(ok);
    out.failed += Number(failed);
    if (codes && codes !== '-') out.codes.push(...codes.split(','));
  }
  return out;
}

function lineOf(mesh: Mesh, ns: string, pod: string, re: RegExp): string | undefined {
  return podLog(mesh, ns, pod).find((l) => re.test(l));
}

/** JSON log lines of one ztunnel process (old and new ones of a node share the node's log). */
function ztunnelLog(mesh: Mesh, node: string, pid: number): Record<string, unknown>[] {
  return readFileSync(`${mesh.stateDir}/logs/mesh/ztunnel-${node}.log`, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r.pid === pid);
}

let mesh: Mesh;
const cleanups: (() => Promise<void> | void)[] = [];
let serverIp = '';
let tshark: ChildProcess | undefined;
let capFile = '';
const stopFile = () => `${mesh.stateDir}/stop-openers`;

test.before(async (t) => {
  if (!(await requireRoot(t as never))) return;
  mesh = await startMesh({ teardown: (fn) => void cleanups.push(fn) }, { ztunnel: true });
  await mesh.core.createNamespace({ body: { metadata: { name: 'shop', labels: { 'mesh.io/dataplane-mode': 'ambient' } } } });
  await mesh.core.createNamespace({ body: { metadata: { name: 'outside' } } });
  const mk = (ns: string, name: string, node: string, command: string[]) =>
    mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { nodeName: node, containers: [{ name: 'main', image: 'unused', command }] } } as k8s.V1Pod });
  await mk('shop', 'server', 'node1', [NODE, '-e', SERVER, String(BULK_RATE)]);
  const server = await waitFor('server running', async () => {
    const p = await mesh.core.readNamespacedPod({ name: 'server', namespace: 'shop' });
    return p.status?.podIP && p.status.phase === 'Running' ? p : undefined;
  });
  serverIp = server.status!.podIP!;
  await waitFor('server served', () => ((mesh.logs.get('ztunnel-node1') ?? '').includes('"pod":"shop/server"') ? true : undefined));
  // New connections throughout every test: 100/s from a mesh pod, 20/s from outside the mesh.
  await mk('shop', 'opener', 'node2', [NODE, '-e', OPENER, serverIp, '100', stopFile(), MARKER]);
  await mk('outside', 'plain', 'node2', [NODE, '-e', OPENER, serverIp, '20', stopFile(), 'plaintext-by-design']);
  await waitFor('new connections to succeed', () => (tally(mesh, 'shop', 'opener').ok >= 50 ? true : undefined), 30_000);
  capFile = `${mesh.stateDir}/upgrade.pcap`;
  // Headers and the start of each segment (snaplen 256): enough to find a marker that begins a
  // payload, without writing 2 GiB to disk.
  tshark = spawn('ip', ['netns', 'exec', `${mesh.prefix}-fabric`, 'tshark', '-q', '-i', 'f0', '-s', '256', '-w', capFile, '-f', 'tcp'], { stdio: 'ignore' });
  cleanups.unshift(() => {
    if (tshark?.exitCode === null) tshark.kill('SIGTERM');
  });
  await new Promise((r) => setTimeout(r, 1500));
});

test.after.always(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

test.serial('upgrading node1\'s then node2\'s ztunnel: long-lived connections complete byte-exact, new connections never fail, the old processes exit when their last connection ends', async (t) => {
  if (!mesh) return t.fail('no mesh (see the before hook)');
  const mk = (ns: string, name: string, node: string, command: string[]) =>
    mesh.core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { nodeName: node, containers: [{ name: 'main', image: 'unused', command }] } } as k8s.V1Pod });
  const trigger = `${mesh.stateDir}/idle-talk`;
  await mk('shop', 'idle', 'node2', [NODE, '-e', IDLE, serverIp, trigger]);
  // The same from outside the mesh: a plaintext connection through node1's inbound listener.
  await mk('outside', 'idle', 'node2', [NODE, '-e', IDLE.replace(MARKER, 'plaintext-by-design'), serverIp, trigger]);
  await mk('shop', 'bulk', 'node2', [NODE, '-e', BULK, serverIp, String(BULK_BYTES)]);
  await waitFor('the bulk transfer and the idle connections to start', () => (lineOf(mesh, 'shop', 'bulk', /bulk progress [1-9]/) && lineOf(mesh, 'shop', 'idle', /idle hello echoed/) && lineOf(mesh, 'outside', 'idle', /idle hello echoed/) ? true : undefined), 30_000);
  await waitFor('new connections to succeed', () => (tally(mesh, 'shop', 'opener').ok >= 50 ? true : undefined), 30_000);
  const from = Date.now();

  const results: RolloutResult[] = [];
  const rounds = Number(process.env.MESH_TEST_ROLLOUT_ROUNDS ?? 1);
  for (const node of Array.from({ length: rounds }, () => ['node1', 'node2']).flat()) {
    const [r] = await rollout(mesh.local, 'ztunnel', { node }, (m) => t.log(`${new Date().toISOString()} ${m}`));
    results.push(r!);
    if (results.length === 1) {
      // The old ztunnel still carries the bulk transfer and the idle connection: `meshctl status`
      // shows it draining.
      const st = await run(MESHCTL, ['status', '--state-dir', mesh.stateDir], { timeout: 30_000 }).catch((e: { stdout: string }) => e);
      t.log(`meshctl status:\n${st.stdout}`);
      t.regex(st.stdout, /node1: ztunnel draining \(\d+ connections?, (60|59) min left\)/);
    }
    // Some traffic on the new ztunnel before the next node.
    await new Promise((res) => setTimeout(res, 2000));
  }
  const upgradedAt = Date.now();
  const bulkDone = await waitFor('the bulk transfer to end', () => lineOf(mesh, 'shop', 'bulk', /bulk done/), 300_000);
  const bulkEnd = Number(bulkDone.split(' ')[0]);
  t.true(bulkEnd > upgradedAt, `the transfer outlasted both upgrades (ended ${bulkEnd - upgradedAt} ms after them)`);
  t.regex(bulkDone, new RegExp(`bulk done ${BULK_BYTES} exact`), `bulk transfer: ${bulkDone}`);
  writeFileSync(trigger, '');
  const idleDone = await waitFor('the idle connection to talk', () => lineOf(mesh, 'shop', 'idle', /idle (done|closed|error)/), 60_000);
  t.regex(idleDone, /idle done exact/, `idle connection: ${podLog(mesh, 'shop', 'idle').join(' | ')}`);
  const plainDone = await waitFor('the idle plaintext connection to talk', () => lineOf(mesh, 'outside', 'idle', /idle (done|closed|error)/), 60_000);
  t.regex(plainDone, /idle done exact/, `idle plaintext connection: ${podLog(mesh, 'outside', 'idle').join(' | ')}`);

  // The openers ran throughout; their last tallies are in within a second.
  await new Promise((res) => setTimeout(res, 1500));
  const to = Date.now();
  const mtls = tally(mesh, 'shop', 'opener', from, to);
  const plain = tally(mesh, 'outside', 'plain', from, to);
  const failures = (ns: string, pod: string) => podLog(mesh, ns, pod).filter((l) => l.split(' ')[1] === 'failed' && Number(l.split(' ')[0]) >= from && Number(l.split(' ')[0]) <= to);
  for (const f of [...failures('shop', 'opener'), ...failures('outside', 'plain')]) {
    const at = Number(f.split(' ')[0]);
    t.log(`failure at ${new Date(at).toISOString()}: ${f}`);
    for (const node of ['node1', 'node2']) {
      const near = readFileSync(`${mesh.stateDir}/logs/mesh/ztunnel-${node}.log`, 'utf8').split('\n').filter((l) => {
        const m = /"time":"([^"]+)"/.exec(l);
        return m && Math.abs(Date.parse(m[1]!) - at) < 300 && !l.includes('"access"');
      });
      for (const l of near.slice(0, 20)) t.log(`  ${node}: ${l.slice(0, 300)}`);
    }
  }
  t.log(`new connections during the upgrades (${((to - from) / 1000).toFixed(1)} s): mesh ${mtls.ok} ok / ${mtls.failed} failed, plaintext ${plain.ok} ok / ${plain.failed} failed`);
  t.true(mtls.ok > 1000, `the mesh client kept connecting (${mtls.ok})`);
  t.is(mtls.failed, 0, `mesh connections failed: ${mtls.codes.slice(0, 20).join(',')}`);
  t.is(plain.failed, 0, `plaintext connections failed: ${plain.codes.slice(0, 20).join(',')}`);

  // Each old ztunnel served its last connection (bulk, idle) and exited on its own.
  for (const r of results) {
    const d = await Promise.race([r.drained, new Promise<undefined>((res) => setTimeout(() => res(undefined), 30_000))]);
    t.truthy(d, `old ztunnel on ${r.node} (pid ${r.oldPid}) exited after its last connection`);
    if (!d) continue;
    const lines = ztunnelLog(mesh, r.node!, r.oldPid!);
    const drained = lines.find((l) => l.msg === 'drained: the last connection ended');
    t.truthy(drained, `${r.node}'s old ztunnel logged its drain`);
    t.false(lines.some((l) => String(l.msg).startsWith('drain deadline passed')), 'nothing was reset');
    t.log(`${r.node}: new ztunnel served every pod ${r.handoverMs} ms after it started; the old one drained for ${d.ms} ms and exited (code ${d.code})`);
  }
});

test.serial('rolling out both agents touches no traffic: an open connection carries on, new ones never fail', async (t) => {
  if (!mesh) return t.fail('no mesh (see the before hook)');
  const trigger = `${mesh.stateDir}/idle3-talk`;
  await mesh.core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name: 'idle3' }, spec: { nodeName: 'node2', containers: [{ name: 'main', image: 'unused', command: [NODE, '-e', IDLE, serverIp, trigger] }] } } as k8s.V1Pod });
  await waitFor('the connection to be open', () => lineOf(mesh, 'shop', 'idle3', /idle hello echoed/), 30_000);
  const from = Date.now();
  const results = await rollout(mesh.local, 'agent', {}, (m) => t.log(m));
  t.is(results.length, 2);
  await new Promise((r) => setTimeout(r, 2000));
  writeFileSync(trigger, '');
  const done = await waitFor('the connection to talk', () => lineOf(mesh, 'shop', 'idle3', /idle (done|closed|error)/), 30_000);
  t.regex(done, /idle done exact/, 'the connection opened before the rollout completed byte-exact');
  if (!/idle done exact/.test(done)) {
    for (const key of ['agent-node1', 'agent-node2', 'ztunnel-node1', 'ztunnel-node2']) {
      const lines = readFileSync(`${mesh.stateDir}/logs/mesh/${key}.log`, 'utf8').split('\n').filter((l) => {
        const m = /"time":"([^"]+)"/.exec(l);
        return m && Date.parse(m[1]!) >= from - 500 && !l.includes('"access"') && !l.includes('fdatasync');
      });
      t.log(`${key}:\n${lines.slice(0, 40).map((l) => l.slice(0, 400)).join('\n')}`);
    }
  }
  await new Promise((r) => setTimeout(r, 1500));
  const to = Date.now();
  const mtls = tally(mesh, 'shop', 'opener', from, to);
  const plain = tally(mesh, 'outside', 'plain', from, to);
  t.log(`new connections during the agent rollout (${((to - from) / 1000).toFixed(1)} s): mesh ${mtls.ok} ok / ${mtls.failed} failed, plaintext ${plain.ok} ok / ${plain.failed} failed`);
  t.true(mtls.ok > 100);
  t.is(mtls.failed, 0, `mesh connections failed: ${mtls.codes.slice(0, 20).join(',')}`);
  t.is(plain.failed, 0, `plaintext connections failed: ${plain.codes.slice(0, 20).join(',')}`);
});

test.serial('a short drain deadline resets what is left and logs how many', async (t) => {
  if (!mesh) return t.fail('no mesh (see the before hook)');
  // node1's ztunnel with a 3 s deadline, then a connection that stays open, then its successor.
  const [first] = await rollout(mesh.local, 'ztunnel', { node: 'node1', drainTimeoutMs: 3000 }, (m) => t.log(m));
  await first!.drained;
  const trigger = `${mesh.stateDir}/idle2-talk`;
  await mesh.core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name: 'idle2' }, spec: { nodeName: 'node2', containers: [{ name: 'main', image: 'unused', command: [NODE, '-e', IDLE, serverIp, trigger] }] } } as k8s.V1Pod });
  await waitFor('the connection to be open', () => lineOf(mesh, 'shop', 'idle2', /idle hello echoed/), 30_000);
  const [second] = await rollout(mesh.local, 'ztunnel', { node: 'node1' }, (m) => t.log(m));
  // What the draining process says it holds (its admin server, found through mesh.json as
  // `meshctl status` finds it).
  const endpoints = JSON.parse(readFileSync(`${mesh.stateDir}/mesh.json`, 'utf8')) as { nodes: Record<string, { ztunnelDraining?: string[] }> };
  const admin = endpoints.nodes.node1?.ztunnelDraining?.[0];
  t.truthy(admin, 'mesh.json lists the draining ztunnel');
  // SIGTERM reaches the old process's event loop asynchronously: it says "draining" once it has.
  type Dump = { drain: { phase: string; connections: number; deadline?: string }; connections: unknown[] };
  let dump: Dump | undefined;
  await waitFor('the old ztunnel to say it drains', async () => {
    dump = (await (await fetch(`http://${admin}/config_dump`)).json()) as Dump;
    return dump.drain.phase === 'draining' ? true : undefined;
  }, 2000).catch(() => undefined);
  if (!dump) return t.fail('no config_dump from the draining ztunnel');
  t.log(`draining ztunnel: ${JSON.stringify(dump.drain)}; connections ${JSON.stringify(dump.connections)}`);
  t.is(dump.drain.phase, 'draining');
  t.truthy(dump.drain.deadline);
  const d = await Promise.race([second!.drained, new Promise<undefined>((res) => setTimeout(() => res(undefined), 20_000))]);
  t.truthy(d, 'the old ztunnel exited at its deadline');
  t.true(d!.ms >= 2900 && d!.ms < 8000, `it drained for ${d!.ms} ms (deadline 3 s)`);
  const lines = ztunnelLog(mesh, 'node1', second!.oldPid!);
  const reset = lines.find((l) => String(l.msg).startsWith('drain deadline passed'));
  t.truthy(reset, 'it logged the reset');
  t.true(typeof reset?.reset === 'number' && (reset.reset as number) >= 1, `it reset the connections left (the idle one at least): ${JSON.stringify(reset)}`);
  t.log(`logged: ${String(reset?.msg)}`);
  const closed = await waitFor('the client to see its connection end', () => lineOf(mesh, 'shop', 'idle2', /idle (closed|error)/), 10_000);
  t.log(`client: ${closed}`);
});

test.serial('ztunnel killed hard: its connections are gone, new ones are served again soon after the replacement starts, never in plaintext', async (t) => {
  if (!mesh) return t.fail('no mesh (see the before hook)');
  const z = mesh.processes.get('ztunnel-node2')!;
  t.true(z.exitCode === null && z.signalCode === null, 'node2\'s ztunnel is running before the kill');
  const killedAt = Date.now();
  const exited = new Promise((r) => z.once('exit', r));
  z.kill('SIGKILL');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  await new Promise((r) => setTimeout(r, 2500));
  // Each tally covers the second before it: from 1.1 s after the kill on, only attempts made
  // with no ztunnel on node2.
  const down = tally(mesh, 'shop', 'opener', killedAt + 1100, Date.now());
  t.true(down.failed > 50, `the client kept trying (${down.failed} refused)`);
  t.is(down.ok, 0, 'no connection succeeded while node2 had no ztunnel (fail closed)');
  const startedAt = Date.now();
  await mesh.startProcess('ztunnel', 'node2');
  // The opener logs "recovered" at the first success after failures (it tries every 10 ms).
  const back = await waitFor('a new connection to succeed', () => {
    const l = podLog(mesh, 'shop', 'opener').find((x) => {
      const [ts, what] = x.split(' ');
      return what === 'recovered' && Number(ts) > startedAt;
    });
    return l ? Number(l.split(' ')[0]) : undefined;
  }, 30_000);
  const spawned = mesh.local.spawnedAt.get('ztunnel-node2')!;
  t.log(`replacement ztunnel spawned → first new connection served: ${back - spawned} ms (${back - startedAt} ms from the restart call, which writes the node token first)`);
  // Where the time went, from the new process's log.
  const fresh = mesh.processes.get('ztunnel-node2')!;
  for (const l of ztunnelLog(mesh, 'node2', fresh.pid!)) {
    if (typeof l.msg === 'string' && /modules loaded|serving pod|config stream connected|ztunnel ready|listening/.test(l.msg)) t.log(`  +${Date.parse(String(l.time)) - startedAt} ms ${l.msg}${l.uptimeMs ? ` (uptime ${String(l.uptimeMs)} ms)` : ''}`);
  }
  writeFileSync(stopFile(), '');
  await new Promise((r) => setTimeout(r, 3000));
  tshark!.kill('SIGTERM');
  await new Promise((r) => tshark!.once('exit', r));
  const wire = readFileSync(capFile);
  t.true(wire.length > 100_000, `the capture saw traffic (${wire.length} bytes)`);
  t.false(wire.includes(MARKER), 'no mesh client\'s plaintext crossed the wire, before, during or after the upgrades and the crash');
});

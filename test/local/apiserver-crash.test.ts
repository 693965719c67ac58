// Crash safety of the API server's storage: the server runs in a child process
// (src/local/apiserver/main.ts), a storm of creates, updates and deletes hits it, and it is killed
// with SIGKILL mid-write, then restarted on the same data directory — three times over. Every
// acknowledged write must be there after each restart, every acknowledged delete must stay
// deleted, and the server must start, serve parseable objects, keep its resourceVersions
// increasing and serve a watch from a new version.
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import type { ApiServer } from '../../src/local/apiserver/index.ts';
import { call, watchFor } from '../helpers/apiserver.ts';

interface Child {
  proc: ChildProcess;
  server: ApiServer;
}

async function startChild(dataDir: string, port = 0): Promise<Child> {
  const proc = fork(join(import.meta.dirname, '../../src/local/apiserver/main.ts'), ['--data-dir', dataDir, '--port', String(port)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const ready = await new Promise<{ url: string; port: number; caCertPem: string; adminToken: string }>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`API server exited with ${code} before it was ready`)));
    proc.on('message', (m: { type: string; url: string; port: number; caCertPem: string; adminToken: string }) => {
      if (m.type === 'ready') resolve(m);
    });
  });
  return { proc, server: ready as unknown as ApiServer };
}

async function kill(c: Child): Promise<void> {
  const gone = new Promise((r) => c.proc.once('exit', r));
  c.proc.kill('SIGKILL');
  await gone;
}

/** What the client knows of one pod: its acknowledged state, and the state an unanswered request may have left. */
interface Known {
  exists: boolean;
  seq: number;
  maybe?: { exists: boolean; seq: number };
}

const WORKERS = 12;
const PER_WORKER = 15; // each worker owns its pods, so the writes to one pod are never concurrent

test('kill -9 mid-write loses no acknowledged create, update or delete, and the store restarts clean', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-apiserver-crash-'));
  const dataDir = join(dir, 'data');
  let child: Child | undefined;
  t.teardown(async () => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) await kill(child);
    await rm(dir, { recursive: true, force: true });
  });
  child = await startChild(dataDir);
  t.is((await call(child.server, 'POST', '/api/v1/namespaces', { metadata: { name: 'storm' } })).status, 201);

  const known = new Map<string, Known>();
  for (let w = 0; w < WORKERS; w++) for (let i = 0; i < PER_WORKER; i++) known.set(`p-${w}-${i}`, { exists: false, seq: 0 });
  let highestAcked = 0;
  let acked = 0;
  let seq = 0;

  for (let round = 0; round < 3; round++) {
    const server = child.server;
    let stop = false;
    const worker = async (w: number) => {
      while (!stop) {
        const name = `p-${w}-${Math.floor(Math.random() * PER_WORKER)}`;
        const k = known.get(name)!;
        const next = ++seq;
        const op = !k.exists ? 'create' : Math.random() < 0.25 ? 'delete' : 'update';
        const after = op === 'delete' ? { exists: false, seq: 0 } : { exists: true, seq: next };
        k.maybe = after;
        let status: number;
        let body: { metadata?: { resourceVersion?: string; labels?: Record<string, string> } } | undefined;
        try {
          const path = `/api/v1/namespaces/storm/pods${op === 'create' ? '' : `/${name}`}`;
          const pod = { metadata: { name, labels: { seq: String(next) } }, spec: { containers: [{ name: 'c', image: 'busybox', command: ['sleep', String(next)] }] } };
          const r =
            op === 'create'
              ? await call(server, 'POST', path, pod)
              : op === 'update'
                ? await call(server, 'PATCH', path, { metadata: { labels: { seq: String(next) } }, spec: { activeDeadlineSeconds: next } }, { contentType: 'application/merge-patch+json' })
                : await call(server, 'DELETE', path);
          status = r.status;
          body = r.body;
        } catch {
          return; // the server died with this request unanswered: `maybe` stays
        }
        if (status < 200 || status > 299) throw new Error(`${op} ${name}: HTTP ${status}`);
        known.set(name, after);
        acked++;
        highestAcked = Math.max(highestAcked, Number(body?.metadata?.resourceVersion ?? 0));
      }
    };
    const storm = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    await new Promise((r) => setTimeout(r, 400 + Math.random() * 800));
    await kill(child);
    stop = true;
    await storm;

    child = await startChild(dataDir);
    const s = child.server;
    const list = await call(s, 'GET', '/api/v1/namespaces/storm/pods');
    t.is(list.status, 200);
    const live = new Map<string, { metadata: { labels: Record<string, string>; resourceVersion: string } }>(list.body.items.map((p: { metadata: { name: string } }) => [p.metadata.name, p]));
    for (const [name, k] of known) {
      const pod = live.get(name);
      const state = pod ? { exists: true, seq: Number(pod.metadata.labels.seq) } : { exists: false, seq: 0 };
      const ok = (e: { exists: boolean; seq: number }) => e.exists === state.exists && (!e.exists || e.seq === state.seq);
      t.true(ok(k) || (k.maybe !== undefined && ok(k.maybe)), `round ${round}: ${name} is ${JSON.stringify(state)}, acknowledged ${JSON.stringify({ exists: k.exists, seq: k.seq })}`);
      known.set(name, state); // what the server now holds is the truth the next round builds on
    }
    for (const p of live.values()) t.true(Number(p.metadata.resourceVersion) <= Number(list.body.metadata.resourceVersion));

    // Versions keep increasing, and a watch from the list's version sees the next change.
    const marker = `marker-${round}`;
    const watched = await watchFor(s, `/api/v1/namespaces/storm/pods?watch=true&resourceVersion=${list.body.metadata.resourceVersion}`, 300, async () => {
      const created = await call(s, 'POST', '/api/v1/namespaces/storm/pods', { metadata: { name: marker }, spec: { containers: [{ name: 'c', image: 'busybox' }] } });
      t.is(created.status, 201);
      t.true(Number(created.body.metadata.resourceVersion) > highestAcked, `new version ${created.body.metadata.resourceVersion} after ${highestAcked}`);
      highestAcked = Number(created.body.metadata.resourceVersion);
    });
    t.deepEqual(watched.events.map((e) => `${e.type} ${e.object.metadata.name}`), [`ADDED ${marker}`]);
    t.is((await call(s, 'DELETE', `/api/v1/namespaces/storm/pods/${marker}`)).status, 200);
  }
  t.true(acked > 100, `only ${acked} writes were acknowledged before the kills`);
  t.log(`${acked} acknowledged writes over 3 kills`);
});

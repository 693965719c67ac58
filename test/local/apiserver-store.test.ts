// The store's log, snapshot and recovery, driven in-process: a "crash" is a Store dropped without
// close(), which leaves the disk as a killed process would (every acknowledged write was
// fdatasync'ed before its put() resolved; nothing else is promised).
import { appendFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { Store } from '../../src/local/apiserver/store.ts';
import type { KubeObject } from '../../src/local/apiserver/types.ts';
import { Wal, readSegment, segments } from '../../src/local/apiserver/wal.ts';

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mesh-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Stores "crashed" by a test: kept reachable so that their open log is not closed by the GC mid-test. */
const crashed: Store[] = [];

const pod = (name: string, v: string): KubeObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels: { v } }, spec: { containers: [{ name: 'c', image: 'x' }] } });

test('store-recovers-after-a-torn-log-record: a crash mid-append loses only the unacknowledged record', async (t) => {
  const dataDir = await tempDir(t);
  const a = await Store.open({ dataDir, eventWindow: 100 });
  await Promise.all(Array.from({ length: 50 }, (_, i) => a.put('pods', pod(`p${i}`, 'one'))));
  await a.put('pods', pod('p7', 'two'));
  await a.remove('pods', a.get('pods', 'default', 'p9')!);
  const rvBefore = a.resourceVersion;
  crashed.push(a);
  // A batch cut short by the crash: a whole record that was never synced, then half of one.
  const seg = (await readdir(join(dataDir, 'store'))).filter((f) => f.startsWith('wal-')).sort().at(-1)!;
  await appendFile(join(dataDir, 'store', seg), '00000000 {"v":999,"r":"pods","d":"default/p1"}\n1234abcd {"v":1000,"r":"po');

  const b = await Store.open({ dataDir, eventWindow: 100 });
  t.is(b.list('pods').length, 49);
  t.is(b.get('pods', 'default', 'p7')?.metadata.labels?.v, 'two');
  t.is(b.get('pods', 'default', 'p1')?.metadata.labels?.v, 'one', 'the record with a bad checksum is not applied');
  t.is(b.get('pods', 'default', 'p9'), undefined);
  const next = await b.put('pods', pod('p100', 'three'));
  t.true(Number(next.metadata.resourceVersion) > rvBefore);
  await b.close();
});

test('store-compacts-into-a-snapshot: the log is dropped and a crash after compaction keeps every write', async (t) => {
  const dataDir = await tempDir(t);
  const a = await Store.open({ dataDir, eventWindow: 100, compactAfterBytes: 8 * 1024 });
  for (let round = 0; round < 5; round++) {
    await Promise.all(Array.from({ length: 40 }, (_, i) => a.put('pods', pod(`p${i}`, `r${round}`))));
  }
  for (let i = 0; i < 10; i++) await a.remove('pods', a.get('pods', 'default', `p${i}`)!);
  await a.put('pods', pod('p0', 'back'));
  crashed.push(a);
  // Compaction runs in the background once the log passes 8 KiB; wait for it to finish.
  let files: string[] = [];
  for (let i = 0; i < 100; i++) {
    files = await readdir(join(dataDir, 'store'));
    if (files.includes('snapshot.jsonl') && files.filter((f) => f.startsWith('wal-')).length <= 2) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.true(files.includes('snapshot.jsonl'));
  t.true(files.filter((f) => f.startsWith('wal-')).length <= 2, `old segments are dropped: ${files.join(' ')}`);

  const b = await Store.open({ dataDir, eventWindow: 100, compactAfterBytes: 8 * 1024 }); // a never closed: a crash
  t.is(b.list('pods').length, 31);
  t.is(b.get('pods', 'default', 'p0')?.metadata.labels?.v, 'back');
  t.is(b.get('pods', 'default', 'p5'), undefined);
  t.is(b.get('pods', 'default', 'p39')?.metadata.labels?.v, 'r4');
  await b.close();
  const c = await Store.open({ dataDir, eventWindow: 100 });
  t.is(c.list('pods').length, 31);
  t.is(c.get('pods', 'default', 'p0')?.metadata.labels?.v, 'back');
  await c.close();
});

test('store-watches-see-only-durable-changes-in-order: events are published in resourceVersion order after the write resolves', async (t) => {
  const dataDir = await tempDir(t);
  const s = await Store.open({ dataDir, eventWindow: 1000 });
  const seen: number[] = [];
  const settled = new Set<string>();
  s.subscribe((ev) => {
    seen.push(ev.rv);
    t.true(s.publishedResourceVersion >= ev.rv);
    settled.add(ev.object.metadata.name!);
  });
  const writes = Array.from({ length: 200 }, (_, i) => s.put('pods', pod(`p${i}`, 'x')));
  t.is(seen.length, 0, 'nothing is published before it is on disk');
  await Promise.all(writes);
  t.is(seen.length, 200);
  t.deepEqual(seen, [...seen].sort((x, y) => x - y));
  await s.close();
});

test('store-migrates-per-object-files: a data dir from before the log is loaded, then compacted', async (t) => {
  const dataDir = await tempDir(t);
  await mkdir(join(dataDir, 'objects', 'pods', 'default'), { recursive: true });
  await mkdir(join(dataDir, 'objects', 'namespaces', '_cluster'), { recursive: true });
  await writeFile(join(dataDir, 'objects', 'pods', 'default', 'web.json'), JSON.stringify({ ...pod('web', 'old'), metadata: { ...pod('web', 'old').metadata, resourceVersion: '41' } }));
  await writeFile(join(dataDir, 'objects', 'namespaces', '_cluster', 'default.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default', resourceVersion: '3' } }));
  await writeFile(join(dataDir, 'state.json'), JSON.stringify({ resourceVersion: 57 }));

  const s = await Store.open({ dataDir, eventWindow: 100 });
  t.is(s.get('pods', 'default', 'web')?.metadata.labels?.v, 'old');
  t.truthy(s.get('namespaces', '', 'default'));
  t.is(s.resourceVersion, 57);
  t.false((await readdir(dataDir)).includes('objects'));
  await s.close();
  const again = await Store.open({ dataDir, eventWindow: 100 });
  t.is(again.list('pods').length, 1);
  t.true(again.resourceVersion >= 57);
  await again.close();
});

test('wal-appends-issued-as-the-last-one-resolves-are-written: sequential appends and a rotation never wait forever', async (t) => {
  const dir = await tempDir(t);
  const wal = await Wal.create(dir, 0);
  t.timeout(5000, 'a record or rotation was stranded in the queue');
  // Each call is made in the very turn in which the previous one's promise resumes this test.
  for (let i = 0; i < 20; i++) await wal.append(JSON.stringify({ i }));
  t.is(await wal.rotate(), 1);
  await wal.append(JSON.stringify({ i: 20 }));
  await wal.close();
  t.deepEqual(await segments(dir), [1, 2]);
  t.is((await readSegment(dir, 1, () => t.fail('torn'))).length, 20);
  t.deepEqual(await readSegment(dir, 2, () => t.fail('torn')), ['{"i":20}']);
});

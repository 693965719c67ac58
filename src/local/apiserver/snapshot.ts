// The store's snapshot: every object at one moment, in one file (snapshot.jsonl), written by
// compaction so that the write-ahead log can be dropped. Line one is the header, each further line
// one object; every line is framed with a CRC-32 as log records are (wal.ts). The file is written
// beside its final name, fsync'ed, renamed over it and its directory fsync'ed, so a crash leaves
// either the old snapshot or the new one.
//
// Also here: reading the per-object files (objects/<resource>/<namespace>/<name>.json and
// state.json) that data directories made before the log hold; the store loads them once and
// compacts them into a snapshot.
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { logger } from '../../common/log.ts';
import { StorageError } from './errors.ts';
import { isTempFile, syncDir } from './files.ts';
import type { KubeObject } from './types.ts';
import { frame } from './wal.ts';

const log = logger('apiserver');
const FILE = 'snapshot.jsonl';
const FORMAT = 'mesh-apiserver-snapshot/1';

export interface SnapshotHeader {
  /** The resourceVersion counter when the snapshot was taken: a floor for the next one. */
  resourceVersion: number;
  /** Log segments up to this one are in the snapshot; later ones are replayed over it. */
  walSegment: number;
  /** Written by a clean shutdown: nothing can have been handed out past resourceVersion. */
  clean: boolean;
}

export interface Entry {
  resource: string;
  object: KubeObject;
}

/** Writes the snapshot, yielding to the event loop between chunks of objects. */
export async function writeSnapshot(dir: string, header: SnapshotHeader, entries: Entry[]): Promise<number> {
  const path = join(dir, FILE);
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const fh = await open(tmp, 'w', 0o600);
  let bytes = 0;
  try {
    const put = async (text: string) => {
      const buf = Buffer.from(text);
      for (let off = 0; off < buf.length; ) off += (await fh.write(buf, off)).bytesWritten;
      bytes += buf.length;
    };
    await put(frame(JSON.stringify({ format: FORMAT, ...header, objects: entries.length })));
    const CHUNK = 500;
    for (let i = 0; i < entries.length; i += CHUNK) {
      await put(entries.slice(i, i + CHUNK).map((e) => frame(JSON.stringify({ r: e.resource, o: e.object }))).join(''));
    }
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
  await syncDir(dir);
  return bytes;
}

/** The snapshot, or undefined when there is none; a damaged one is an error, not an empty store. */
export async function readSnapshot(dir: string): Promise<{ header: SnapshotHeader; entries: Entry[] } | undefined> {
  const path = join(dir, FILE);
  for (const name of await readdir(dir)) if (name.startsWith(`${FILE}.tmp-`)) await unlink(join(dir, name)).catch(() => {});
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (text === undefined) return undefined;
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const parsed = lines.map((line, i) => {
    const json = line.slice(9);
    if (line[8] !== ' ' || frame(json) !== `${line}\n`) throw new StorageError(path, new Error(`line ${i + 1} fails its checksum; restore the data directory from a backup`));
    return JSON.parse(json) as Record<string, unknown>;
  });
  const head = parsed.shift() as (SnapshotHeader & { format?: string; objects?: number }) | undefined;
  if (head?.format !== FORMAT || head.objects !== parsed.length) {
    throw new StorageError(path, new Error(`not a ${FORMAT} file with ${String(head?.objects)} objects (found ${parsed.length})`));
  }
  return {
    header: { resourceVersion: head.resourceVersion, walSegment: head.walSegment, clean: head.clean === true },
    entries: parsed.map((p) => ({ resource: p.r as string, object: p.o as KubeObject })),
  };
}

/** Objects from a data directory written before the log (one file per object), if any. */
export async function readLegacyObjects(dataDir: string): Promise<{ entries: Entry[]; resourceVersion: number } | undefined> {
  const root = join(dataDir, 'objects');
  const resources = await readdir(root).catch(() => undefined);
  if (!resources) return undefined;
  const state = await readFile(join(dataDir, 'state.json'), 'utf8').catch(() => undefined);
  let rv = state ? Number((JSON.parse(state) as { resourceVersion?: number }).resourceVersion ?? 0) : 0;
  const entries: Entry[] = [];
  for (const resource of resources) {
    for (const ns of await readdir(join(root, resource))) {
      for (const name of await readdir(join(root, resource, ns))) {
        if (isTempFile(name) || !name.endsWith('.json')) continue; // a write cut short by a crash
        const path = join(root, resource, ns, name);
        try {
          const object = JSON.parse(await readFile(path, 'utf8')) as KubeObject;
          entries.push({ resource, object });
          rv = Math.max(rv, Number(object.metadata.resourceVersion ?? 0));
        } catch (err) {
          log.error({ path, err }, 'skipping an unreadable object file; restore it from a backup or delete it');
        }
      }
    }
  }
  return { entries, resourceVersion: rv };
}

/** Removes the per-object files once a snapshot holds them. */
export async function removeLegacyObjects(dataDir: string): Promise<void> {
  await rm(join(dataDir, 'objects'), { recursive: true, force: true });
  await rm(join(dataDir, 'state.json'), { force: true });
  await syncDir(dataDir);
}

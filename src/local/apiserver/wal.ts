// The write-ahead log: numbered segment files (wal-00000001.log, …) of framed records, appended
// with group commit. Every record queued while one batch is being written and fdatasync'ed joins
// the next batch, so concurrent writes share one write() and one fdatasync() — the disk cost of a
// burst of creates is per batch, not per object — and no caller waits on a timer.
//
// A record is one line: 8 hex digits of CRC-32 (zlib) over the JSON text, a space, the JSON, "\n".
// A crash can only tear the batch being written (batches are written one after the other, each
// synced before the next starts), so on replay the first record that is cut short or fails its
// checksum ends that segment: what follows it was never acknowledged.
//
// After a failed write or sync the file's state is unknown (the kernel may have dropped the dirty
// pages: "fsyncgate", PostgreSQL 2018), so the log refuses every later append until a restart
// replays what did reach the disk.
import { channel } from 'node:diagnostics_channel';
import { crc32 } from 'node:zlib';
import { type FileHandle, open, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { logger } from '../../common/log.ts';
import { syncDir } from './files.ts';

const log = logger('apiserver');
const SLOW_SYNC_MS = 100;

/**
 * Every batch's write + fdatasync, for whoever listens (bench/propagation.ts, through main.ts, to
 * tell this disk's stalls apart from the rest of a write's path): {at (ms since the epoch, when the
 * write began), ms (write + fdatasync), records, bytes}. Nothing is built when no one listens.
 */
export const walSyncChannel = channel('mesh:apiserver:wal-sync');

export interface WalSync {
  at: number;
  ms: number;
  records: number;
  bytes: number;
}

interface Pending {
  line: string;
  /** Not a record: the point where the log moves to a new segment (see rotate()). */
  rotate?: true;
  /** Runs in log order once the record is durable, before the append's promise resolves. */
  durable?: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const SEGMENT = /^wal-(\d{8})\.log$/;
const segmentName = (n: number): string => `wal-${String(n).padStart(8, '0')}.log`;

export function frame(json: string): string {
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
}

/** The segments in `dir`, oldest first. */
export async function segments(dir: string): Promise<number[]> {
  return (await readdir(dir))
    .map((f) => SEGMENT.exec(f)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

/** The records of one segment, in order, up to the first torn or corrupt one (reported by `onTorn`). */
export async function readSegment(dir: string, n: number, onTorn: (at: number, why: string) => void): Promise<string[]> {
  const text = await readFile(join(dir, segmentName(n)), 'utf8');
  const out: string[] = [];
  let at = 0;
  while (at < text.length) {
    const nl = text.indexOf('\n', at);
    if (nl < 0) {
      onTorn(at, 'record without its newline');
      break;
    }
    const json = text.slice(at + 9, nl);
    if (text[at + 8] !== ' ' || crc32(json).toString(16).padStart(8, '0') !== text.slice(at, at + 8)) {
      onTorn(at, 'checksum mismatch');
      break;
    }
    out.push(json);
    at = nl + 1;
  }
  return out;
}

export class Wal {
  private queue: Pending[] = [];
  private draining = false;
  private running: Promise<void> = Promise.resolve();
  private fh: FileHandle | undefined;
  private failed: unknown;
  /** Bytes appended to the current segment. */
  bytes = 0;

  private readonly dir: string;
  private current: number;

  private constructor(dir: string, current: number) {
    this.dir = dir;
    this.current = current;
  }

  /** Opens a fresh segment after `last` (appends never go to a segment written before a restart). */
  static async create(dir: string, last: number): Promise<Wal> {
    const w = new Wal(dir, last + 1);
    w.fh = await open(join(dir, segmentName(w.current)), 'a');
    await syncDir(dir);
    return w;
  }

  get segment(): number {
    return this.current;
  }

  /** Queues one JSON record; resolves once it is on disk (fdatasync'ed). */
  append(json: string, durable?: () => void): Promise<void> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.queue.push({ line: frame(json), durable, resolve, reject });
      this.kick();
    });
  }

  /**
   * Starts a new segment: records appended from now on go to it. Resolves with the number of the
   * last segment that is complete (every record appended before the call is in it or earlier and
   * durable), which a snapshot taken now makes redundant.
   */
  rotate(): Promise<number> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    // Queued like a record, so that it runs between two batches, never during one.
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ line: '', rotate: true, resolve, reject });
      this.kick();
    }).then(() => this.current - 1);
  }

  /** Deletes segments up to and including `n` (a durable snapshot holds their effect). */
  async drop(n: number): Promise<void> {
    for (const s of await segments(this.dir)) if (s <= n) await unlink(join(this.dir, segmentName(s)));
    await syncDir(this.dir);
  }

  /** Resolves when every record queued so far is durable (or failed). */
  async flushed(): Promise<void> {
    while (this.draining) await this.running;
  }

  async close(): Promise<void> {
    await this.flushed();
    await this.fh?.close();
    this.fh = undefined;
  }

  /** Starts the writer unless it is running; it runs until the queue is empty. */
  private kick(): void {
    if (this.draining) return;
    this.draining = true;
    this.running = this.drain();
  }

  private async drain(): Promise<void> {
    for (;;) {
      if (this.queue.length === 0) {
        // Cleared in the very turn that finds the queue empty, so a record queued after it always
        // starts a new writer, never waits on one that has already decided to stop.
        this.draining = false;
        return;
      }
      if (this.queue[0]!.rotate) {
        const r = this.queue.shift()!;
        try {
          if (this.failed !== undefined) throw this.failed;
          await this.nextSegment();
          r.resolve();
        } catch (err) {
          this.failed ??= err;
          r.reject(err);
        }
        continue;
      }
      const cut = this.queue.findIndex((p) => p.rotate);
      const batch = cut < 0 ? this.queue : this.queue.slice(0, cut);
      this.queue = cut < 0 ? [] : this.queue.slice(cut);
      try {
        if (this.failed !== undefined) throw this.failed;
        const buf = Buffer.from(batch.map((p) => p.line).join(''));
        const writeStart = performance.now();
        for (let off = 0; off < buf.length; ) off += (await this.fh!.write(buf, off)).bytesWritten;
        const syncStart = performance.now();
        await this.fh!.datasync();
        const ms = performance.now() - syncStart;
        if (walSyncChannel.hasSubscribers) {
          walSyncChannel.publish({ at: performance.timeOrigin + writeStart, ms: performance.now() - writeStart, records: batch.length, bytes: buf.length } satisfies WalSync);
        }
        if (ms >= SLOW_SYNC_MS) log.warn({ ms: Math.round(ms), records: batch.length, bytes: buf.length }, 'a log fdatasync was slow; every write in the batch waited for it — is the disk busy or throttled?');
        this.bytes += buf.length;
      } catch (err) {
        this.failed ??= err;
        for (const p of batch) p.reject(err);
        continue;
      }
      for (const p of batch) {
        try {
          p.durable?.();
        } catch (err) {
          log.error({ err }, 'a callback after a durable log write failed');
        }
        p.resolve();
      }
    }
  }

  private async nextSegment(): Promise<void> {
    const fh = await open(join(this.dir, segmentName(this.current + 1)), 'a');
    await syncDir(this.dir);
    const old = this.fh;
    this.fh = fh;
    this.current += 1;
    this.bytes = 0;
    await old?.close();
  }

  /** Whether a write or sync has failed (the log then refuses appends until a restart). */
  get broken(): boolean {
    return this.failed !== undefined;
  }
}

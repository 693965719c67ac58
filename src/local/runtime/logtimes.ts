// When each part of a container's log file was written. The container writes its output straight
// into the file (no pipe through the kubelet, so its output never waits on us); an inotify watch
// on the file notes, at each write, how long the file has become. A line's time is the first
// note that covers its end — within a few milliseconds of the write, which is what `kubectl logs
// --timestamps` and `--since` need (the CRI's log format stamps each line as it is read from the
// pipe, no closer). Notes from before the kubelet started are not known: those lines take the
// file's first note.
import { type FSWatcher, statSync, watch } from 'node:fs';

// Past this many notes, every second one is dropped: older lines then get a slightly later time.
const MAX_NOTES = 65_536;

export class LogTimes {
  private readonly offsets: number[] = [];
  private readonly times: number[] = [];
  private watcher: FSWatcher | undefined;

  /** Bytes up to `offset` existed at `time`. */
  note(offset: number, time = Date.now()): void {
    const last = this.offsets.at(-1) ?? -1;
    if (offset <= last) return;
    this.offsets.push(offset);
    this.times.push(time);
    if (this.offsets.length > MAX_NOTES) {
      for (const a of [this.offsets, this.times]) {
        const kept = a.filter((_, i) => i % 2 === 1);
        a.length = 0;
        a.push(...kept);
      }
    }
  }

  /** When the byte just before `end` was written (ms since the epoch). */
  timeOf(end: number): number {
    let lo = 0;
    let hi = this.offsets.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.offsets[mid]! >= end) hi = mid;
      else lo = mid + 1;
    }
    return lo < this.times.length ? this.times[lo]! : Date.now();
  }

  /** Follows writes to `path` until close(). */
  watch(path: string): void {
    if (this.watcher) return;
    const look = () => {
      try {
        this.note(statSync(path).size);
      } catch {
        // the file is being replaced or removed
      }
    };
    try {
      this.watcher = watch(path, { persistent: false }, look);
      this.watcher.on('error', () => this.close());
    } catch {
      // no inotify: lines get the time they are read
    }
    look();
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}

/** RFC 3339 with nanoseconds, as kubectl logs --timestamps prints. */
export function rfc3339Nano(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
}

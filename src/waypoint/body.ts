// A request body that can be sent more than once: retries replay it, a mirror gets a copy. The
// bytes are kept as they stream through, up to a limit; past it the body streams on to the
// readers already open and can no longer be replayed (no more retries), as Envoy's
// per_request_buffer_limit_bytes works. Nothing waits for the whole body before the first attempt
// starts, so streaming and bidirectional gRPC calls pass through unchanged.
import { PassThrough, type Readable } from 'node:stream';

/** Kept for replay per request: enough for API payloads, bounded so a waypoint's memory is. */
export const REPLAY_LIMIT = 1024 * 1024;

interface Reader {
  out: PassThrough;
  /** A mirror's copy: never slows the client down, and is cut off when the body outgrows the limit. */
  lossy: boolean;
}

export class RequestBody {
  private kept: Buffer[] = [];
  private keptBytes = 0;
  private overflowed = false;
  private ended = false;
  private failure: Error | undefined;
  private started = false;
  private readonly readers = new Set<Reader>();
  /** Bytes received from the client so far. */
  bytes = 0;

  private readonly src: Readable;
  private readonly limit: number;

  /** The request has no body at all: nothing to read, keep or send. */
  readonly empty: boolean;

  constructor(src: Readable, limit = REPLAY_LIMIT, empty = false) {
    this.src = src;
    this.limit = limit;
    this.empty = empty;
  }

  /** Whether another reader can still start from the first byte. */
  get replayable(): boolean {
    return !this.overflowed && this.failure === undefined;
  }

  /**
   * A stream of the whole body from its first byte; null once that is no longer possible.
   * Callers check `empty` first: an empty body needs no stream.
   */
  open(lossy = false): Readable | null {
    if (!this.replayable) return null;
    const r: Reader = { out: new PassThrough(), lossy };
    for (const c of this.kept) r.out.write(c);
    if (this.ended) {
      r.out.end();
      return r.out;
    }
    this.readers.add(r);
    r.out.once('close', () => {
      this.readers.delete(r);
      this.resumeIfDrained();
    });
    r.out.on('drain', () => this.resumeIfDrained());
    this.start();
    return r.out;
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.src.on('data', (chunk: Buffer) => this.onData(chunk));
    this.src.once('end', () => {
      this.ended = true;
      for (const r of this.readers) r.out.end();
    });
    this.src.once('close', () => {
      if (!this.ended) this.fail(new Error('the client closed the request before its body ended'));
    });
    this.src.once('error', (err) => this.fail(err));
  }

  private onData(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (!this.overflowed) {
      if (this.keptBytes + chunk.length > this.limit) {
        this.overflowed = true;
        this.kept = [];
        for (const r of this.readers) if (r.lossy) r.out.destroy();
      } else {
        this.kept.push(chunk);
        this.keptBytes += chunk.length;
      }
    }
    let full = false;
    for (const r of this.readers) {
      if (!r.out.write(chunk) && !r.lossy) full = true;
    }
    if (full) this.src.pause();
  }

  private resumeIfDrained(): void {
    if (this.ended || !this.started) return;
    for (const r of this.readers) if (!r.lossy && r.out.writableNeedDrain) return;
    this.src.resume();
  }

  private fail(err: Error): void {
    this.failure = err;
    for (const r of this.readers) r.out.destroy(err);
  }
}

// Joins two byte streams both ways — a tunnel's HTTP/2 stream and a TCP socket, typically — with
// backpressure (pipe() pauses the faster side) and TCP's half-close carried across: one side's
// end (FIN, or END_STREAM) ends the other's writable side and nothing more, so the opposite
// direction keeps flowing until it ends too. An abnormal end of either side aborts the other the
// way RFC 9113 §8.5 asks of a CONNECT proxy: RST_STREAM(CONNECT_ERROR) towards HTTP/2, a TCP RST
// towards a socket.
import { constants as h2 } from 'node:http2';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface SpliceResult {
  /** Bytes read from `a` and written to `b`. */
  readonly aToB: number;
  /** Bytes read from `b` and written to `a`. */
  readonly bToA: number;
  /** The first failure, when the tunnel did not end by both sides closing cleanly. */
  readonly error?: Error;
}

/** Told of every chunk as it is copied (metrics that a scrape mid-transfer must see). */
export interface SpliceCounter {
  aToB(n: number): void;
  bToA(n: number): void;
}

/** Chunks this large are part of a bulk transfer (a TLS record carries up to 16 KiB). */
const BULK_CHUNK = 8 * 1024;

interface H2StreamLike extends Duplex {
  close(code?: number): void;
  rstCode?: number;
}

function isH2Stream(d: Duplex): d is H2StreamLike {
  return typeof (d as Partial<H2StreamLike>).close === 'function' && 'rstCode' in d;
}

function abort(d: Duplex): void {
  if (d.destroyed) return;
  if (isH2Stream(d)) d.close(h2.NGHTTP2_CONNECT_ERROR);
  // resetAndDestroy() after end() fails inside libuv (uv_tcp_close_reset → EINVAL while a
  // shutdown is pending or done) and Node then never closes the handle: a plain close it is.
  else if (d instanceof Socket && !d.connecting && !d.writableEnded) d.resetAndDestroy();
  else d.destroy();
}

/**
 * Copies a→b and b→a until both sides have closed. Resolves (never rejects) with the byte counts
 * and the first error. `count`, when given, hears of every chunk as it is copied. A socket given
 * here has allowHalfOpen turned on, or its peer's FIN would end our side too.
 *
 * Not pipe(): pipe() registers eight listeners per direction and counting took another 'data'
 * listener on top (two, with the connection manager's); one 'data' handler per direction that
 * counts and writes, and one 'drain' when the writer is full, is all a byte pump needs. This is
 * on every connection's path (ztunnel under connection churn: issue 16).
 */
export function splice(a: Duplex, b: Duplex, count?: SpliceCounter): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let aToB = 0;
    let bToA = 0;
    let error: Error | undefined;
    let open = 2;
    const fail = (err: Error): void => {
      error ??= err;
      abort(a);
      abort(b);
    };
    // One side: its data into the other, pausing it while the other is full; its end ends the
    // other's writable side (a FIN or END_STREAM crosses over) and nothing more. One listener
    // per event: a second 'end' listener per stream made Node copy the listener array on every
    // add (ensureMutableListenerArray, ~9% of a churn profile). 'end', 'finish' and 'close' come
    // once each: on(), not once(), which wraps every handler and unhooks it as it fires.
    const side = (src: Duplex, dst: Duplex, name: string, add: (n: number) => void): void => {
      let ended = false;
      let finished = false;
      let waiting = false;
      let corked = false;
      if (src instanceof Socket) src.allowHalfOpen = true;
      const resume = (): void => {
        waiting = false;
        src.resume();
      };
      const uncork = (): void => {
        corked = false;
        dst.uncork();
      };
      src.on('data', (chunk: Buffer) => {
        add(chunk.length);
        if (dst.destroyed) return; // fail() is aborting src as well
        // A bulk transfer arrives as several chunks per turn of the event loop (a 64 KiB TCP
        // read is four TLS records, four DATA chunks, each its own callback from native code,
        // each followed by a run of the nextTick queue): corked until the loop has run this
        // turn's I/O callbacks, they leave in one writev instead of a syscall (and a loopback
        // segment) each. Small chunks (requests) go straight out.
        if (!corked && chunk.length >= BULK_CHUNK) {
          corked = true;
          dst.cork();
          setImmediate(uncork);
        }
        if (!dst.write(chunk) && !waiting) {
          waiting = true;
          src.pause();
          dst.once('drain', resume);
        }
      });
      src.on('end', () => {
        ended = true;
        if (!dst.destroyed) dst.end();
      });
      src.on('finish', () => (finished = true));
      src.on('error', fail);
      src.on('close', () => {
        if (!(ended && finished)) fail(error ?? new Error(`${name} closed before both directions ended`));
        if (--open === 0) resolve(error ? { aToB, bToA, error } : { aToB, bToA });
      });
    };
    side(a, b, 'a', count ? (n) => ((aToB += n), count.aToB(n)) : (n) => (aToB += n));
    side(b, a, 'b', count ? (n) => ((bToA += n), count.bToA(n)) : (n) => (bToA += n));
  });
}

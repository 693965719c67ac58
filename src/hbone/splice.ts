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
 * and the first error. A socket given here has allowHalfOpen turned on, or its peer's FIN would
 * end our side too.
 */
export function splice(a: Duplex, b: Duplex): Promise<SpliceResult> {
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
    const watch = (d: Duplex, name: string, count: (n: number) => void): void => {
      let ended = false;
      let finished = false;
      if (d instanceof Socket) d.allowHalfOpen = true;
      d.on('data', (chunk: Buffer) => count(chunk.length));
      d.once('end', () => (ended = true));
      d.once('finish', () => (finished = true));
      d.on('error', fail);
      d.once('close', () => {
        if (!(ended && finished)) fail(error ?? new Error(`${name} closed before both directions ended`));
        if (--open === 0) resolve(error ? { aToB, bToA, error } : { aToB, bToA });
      });
    };
    watch(a, 'a', (n) => (aToB += n));
    watch(b, 'b', (n) => (bToA += n));
    a.pipe(b);
    b.pipe(a);
  });
}

// Which protocol a tunnelled stream speaks, from its first bytes: the HTTP/2 connection preface
// (h2c with prior knowledge, RFC 9113 §3.4 — gRPC included), an HTTP/1.x request line, or
// anything else (TCP, policed at L4 only). Istio's waypoint sniffs the same way; we name HTTP/1 by
// its method token so a text protocol that happens to start with a capitalised word followed by a
// space is not parsed as HTTP.
import type { Duplex } from 'node:stream';

export type Detected = 'http1' | 'http2' | 'tcp';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
// RFC 9110 §9.3 and PATCH (RFC 5789); the methods real HTTP clients send.
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'].map((m) => Buffer.from(`${m} `, 'latin1'));

/** The protocol of `head`, or undefined while more bytes could still change the answer. */
export function classify(head: Buffer): Detected | undefined {
  const n = Math.min(head.length, PREFACE.length);
  if (head.subarray(0, n).equals(PREFACE.subarray(0, n))) return head.length >= PREFACE.length ? 'http2' : undefined;
  let undecided = false;
  for (const m of METHODS) {
    const k = Math.min(head.length, m.length);
    if (!head.subarray(0, k).equals(m.subarray(0, k))) continue;
    if (head.length >= m.length) return 'http1';
    undecided = true;
  }
  return undecided ? undefined : 'tcp';
}

/**
 * Reads until the protocol is known and puts the bytes back (unshift), so the parser that takes
 * the stream sees them. A client that says nothing for `timeoutMs` (a server-first protocol) is
 * TCP. `head` is returned only when the stream ended before a decision and could not take the
 * bytes back: the caller forwards them itself.
 */
export function detect(stream: Duplex, timeoutMs: number): Promise<{ protocol: Detected; head: Buffer | undefined }> {
  return new Promise((resolve) => {
    let head = Buffer.alloc(0);
    const finish = (protocol: Detected, unread: boolean): void => {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      if (unread && head.length > 0) stream.unshift(head);
      resolve({ protocol, head: unread ? undefined : head });
    };
    const onReadable = (): void => {
      // Stop at the decision: reading on to EOF would schedule 'end', after which no unshift.
      for (let chunk: Buffer | null; (chunk = stream.read() as Buffer | null) !== null; ) {
        head = Buffer.concat([head, chunk]);
        const p = classify(head);
        if (p) return finish(p, true);
      }
    };
    const onEnd = (): void => finish('tcp', false);
    const timer = setTimeout(() => finish('tcp', true), timeoutMs);
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
  });
}
